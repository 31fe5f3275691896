"""The action-conditioned DiT of `2B/robot/action-cond` (the reference's `ActionChunkConditionedMinimalV1LVGDiT`).

The base DiT conditioned on a chunk of robot actions as well as on its first latent frame (the Bridge checkpoint:
13 frames at 256x320, 4 latent frames, 12 actions of 7 values). What differs from `MiniTrainDiT` (official
`cosmos_predict2/_src/predict2/action/networks/action_conditioned_minimal_v1_lvg_dit.py` at 7e5ffc83 of the 1.5.0
tree, lines 189-352):

- the actions (B, A, action_dim) are grouped by latent frame, `temporal_compression_ratio` (4) actions per frame:
  (B, A / 4, 4 * action_dim), (B, 3, 28) for the Bridge model (lines 262-265);
- two MLPs of that (`action_embedder_B_D`, `action_embedder_B_3D`: Linear 28 -> 4 x model_channels with bias,
  GELU (tanh approximation), Linear -> model_channels, resp. 3 x model_channels; lines 220-233) run in the
  model dtype, outside the fp32 plan (the reference's inference passes the actions in bf16);
- a zero row is put in front for the first latent frame, which has no action before it (lines 269-273), and the
  rows of conditional frames (condition mask 1) are zeroed (lines 276-279), so the net takes 1 + A / 4 latent
  frames;
- the first MLP's output is added to the sinusoidal timestep features before their RMSNorm, the second's to the
  AdaLN-LoRA term (lines 306-311), in float32 under the fp32 plan.

Everything else (patch embedding with condition and padding masks, blocks, final layer) is the base DiT's, as in
the reference, where the class subclasses `MiniTrainDIT`. Parameter names are the reference's: the released
`robot/action-cond/38c6c645-7d41-4560-8eeb-6f4ddc0e6574_ema_bf16.pt` loads strictly
(`load_dit(..., net=ActionDiT)`). diffusers (0.42.1) has no action-conditioned Cosmos model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from cosmos_ray.models.dit import DiTConfig, DiTInputs, MiniTrainDiT

ACTION_DIT_PRESETS = ("2B", "tiny")


@dataclass(frozen=True)
class ActionDiTConfig(DiTConfig):
    """The action-conditioned net: `DiTConfig` plus its action embedding. Defaults are the released Bridge net as
    the official configuration composes its experiment
    (`cosmos_predict2p5_2B_reason_embeddings_action_conditioned_rectified_flow_bridge_13frame_256x320` in
    `predict2/action/configs/action_conditioned/experiment/exp_2B_action_conditioned_rectify_flow.py` over
    `cosmos_v1_2B_action_chunk_conditioned` in `.../action_conditioned/net.py`, 7e5ffc83): the base 2B net's
    shapes and settings (2048 channels, 28 blocks, 16 heads, timestep_scale 0.001, RoPE extrapolation h/w 3.0 and
    t 1.0, no fps modulation, the fp32 plan), action_dim 7, 4 actions per latent frame, 4 latent frames
    (`state_t = 1 + 12 // 4`) of 256x320 video."""

    action_dim: int = 7  # values per action (Bridge: relative xyz, relative Euler angles, gripper)
    temporal_compression_ratio: int = 4  # actions per latent frame (the VAE's temporal compression)
    hidden_dim_in_action_embedder: int | None = None  # the action MLPs' hidden width; None: 4 x model_channels
    state_t: int = 4  # latent frames the checkpoint was trained on: the conditional frame and one per 4 actions
    video_size: tuple[int, int] = (256, 320)  # (H, W) of the training video (the Bridge dataset's video_size)

    @classmethod
    def preset(cls, name: str) -> ActionDiTConfig:
        """`2B`: the released net; `tiny`: its structure (actions, state_t) with the base tiny preset's widths."""
        if name == "2B":
            return cls()
        if name == "tiny":
            return dataclasses.replace(cls(), **_tiny_changes())
        raise ValueError(
            f"unknown action-conditioned DiT preset {name!r}; expected one of {', '.join(ACTION_DIT_PRESETS)}"
        )

    def describe(self) -> str:
        return f"action-conditioned {super().describe()}, {self.num_actions} actions of {self.action_dim} values"

    @property
    def action_chunk_features(self) -> int:
        """Inputs of the action MLPs: the actions of one latent frame, concatenated (28)."""
        return self.action_dim * self.temporal_compression_ratio

    @property
    def action_hidden_features(self) -> int:
        return self.hidden_dim_in_action_embedder or 4 * self.model_channels

    @property
    def num_actions(self) -> int:
        """Actions per rollout chunk: one per pixel frame after the conditional one (12)."""
        return (self.state_t - 1) * self.temporal_compression_ratio


def _tiny_changes() -> dict:
    """The fields in which the base tiny preset differs from the base 2B net (its widths)."""
    tiny, released = DiTConfig.preset("tiny"), DiTConfig.preset("2B")
    names = (field.name for field in dataclasses.fields(DiTConfig))
    return {name: getattr(tiny, name) for name in names if getattr(tiny, name) != getattr(released, name)}


class ActionMlp(nn.Module):
    """Linear (with bias) -> GELU (tanh approximation) -> Linear (with bias)."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.activation = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(x)))


class ActionDiT(MiniTrainDiT):
    """The action-conditioned DiT. Call it like `MiniTrainDiT`, with `actions`."""

    cfg: ActionDiTConfig
    config_type = ActionDiTConfig

    def __init__(self, cfg: ActionDiTConfig, attention_backend: str = "auto"):
        super().__init__(cfg, attention_backend)
        dim, features, hidden = cfg.model_channels, cfg.action_chunk_features, cfg.action_hidden_features
        self.action_embedder_B_D = ActionMlp(features, hidden, dim)
        self.action_embedder_B_3D = ActionMlp(features, hidden, 3 * dim)

    def prepare(  # type: ignore[override]  # actions in the place of the base's extra seams
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        crossattn_emb: torch.Tensor,
        fps: float | None = None,
        padding_mask: torch.Tensor | None = None,
        condition_mask: torch.Tensor | None = None,
        actions: torch.Tensor | None = None,
    ) -> DiTInputs:
        """The base DiT's inputs with the action embedding added to the timestep embedding and AdaLN-LoRA term; the
        net is called as `MiniTrainDiT` (latents whose first frame is the conditional one) with `actions=`.

        actions: (B, (T - 1) * temporal_compression_ratio, action_dim), the robot's actions after the first frame
          ((B, 12, 7) for the Bridge model's 4 latent frames), required.
        """
        self.check_inputs(x, timesteps, crossattn_emb, condition_mask)
        offsets = self.action_embedding(self.check_actions(actions, x), condition_mask)
        return super().prepare(x, timesteps, crossattn_emb, fps, padding_mask, condition_mask, timestep_offsets=offsets)

    def check_actions(self, actions: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        b, t = x.shape[0], x.shape[2]
        expected = (b, (t - 1) * cfg.temporal_compression_ratio, cfg.action_dim)
        if actions is None or actions.shape != expected:
            got = "none" if actions is None else tuple(actions.shape)
            raise ValueError(
                f"actions: expected {expected} ({cfg.temporal_compression_ratio} actions of {cfg.action_dim} values "
                f"for each of the {t - 1} latent frames after the conditional one), got {got}"
            )
        return actions

    def action_embedding(
        self, actions: torch.Tensor, condition_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, A, action_dim) actions -> the timestep-feature term (B, T, D) and the AdaLN-LoRA term (B, T, 3D), in
        the action MLPs' dtype: zero for the first latent frame and for conditional frames."""
        b, a, _ = actions.shape
        chunks = actions.reshape(b, a // self.cfg.temporal_compression_ratio, -1)  # (B, T-1, 4 * action_dim)
        chunks = chunks.to(self.action_embedder_B_D.fc1.weight.dtype)
        offsets = []
        for embedder in (self.action_embedder_B_D, self.action_embedder_B_3D):
            embedding = embedder(chunks)  # (B, T-1, D or 3D)
            embedding = torch.cat([torch.zeros_like(embedding[:, :1]), embedding], dim=1)  # (B, T, D or 3D)
            if condition_mask is not None:
                embedding = embedding * (1 - condition_mask[:, 0, :, 0, 0]).unsqueeze(-1).to(embedding.dtype)
            offsets.append(embedding)
        return offsets[0], offsets[1]
