"""The multiview DiT of `2B/auto/multiview` (the reference's `MultiViewDiT`): the base DiT over several cameras.

The views' latents are concatenated along time, (B, 16, V * state_t, H, W), and run as one sequence with joint
self-attention. What differs from `MiniTrainDiT` (official `cosmos_predict2/_src/predict2_multiview/networks/
multiview_dit.py` at 7e5ffc83 of the 1.5.0 tree, the same net as at the first release 6b54ba6):

- a view embedding, `view_embeddings = nn.Embedding(n_cameras_emb, view_condition_dim)`, broadcast over its
  view's frames and pixels, enters as `view_condition_dim` more input channels after the condition and padding
  masks (patch-embedding input: 16 latent + 1 condition mask + 1 padding mask + 7 view = 25 channels);
- every view gets the same 3D RoPE (positions 0..state_t-1 in time), one table per view count
  (`pos_embedder_options.n_cameras_{1..n_cameras_emb}`, identical buffers; the net uses the one of V views);
- cross-attention splits the tokens into as many equal parts as the text context has 512-token blocks (one
  Reason1 embedding per view, or one for all), each part attending to its own block (`MultiviewCrossAttention`).

Everything else (blocks, AdaLN-LoRA, the fp32 modulation plan, the final layer) is the base DiT's, as in the
reference, where `MultiViewDiT` subclasses `MinimalV1LVGDiT`. Context parallelism (`cosmos_ray.parallel.ParallelDiT`)
may cut the sequence between any two latent frames, inside views too (`MultiviewDiTInputs.select_frames`).
Parameter and buffer names are the reference's: the released
`auto/multiview/524af350-2e43-496c-8590-3646ae1325da_ema_bf16.pt` loads strictly (`load_dit(..., net=MultiviewDiT)`).
diffusers (0.42.1) has no multiview Cosmos model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from cosmos_ray.models.attention import AttentionFn
from cosmos_ray.models.dit import Attention, Block, DiTConfig, DiTInputs, MiniTrainDiT, build_rope
from cosmos_ray.models.rope import Rope, VideoRope3D

# Tokens of one view's text context: the reference's cross-attention counts its context blocks as
# `context.shape[1] // 512` (`MultiViewCrossAttention.forward`), Reason1's padded prompt length.
CONTEXT_TOKENS_PER_VIEW = 512
MULTIVIEW_DIT_PRESETS = ("2B", "tiny")


@dataclass(frozen=True)
class MultiviewDiTConfig(DiTConfig):
    """The multiview net: `DiTConfig` plus its views. Defaults are the released 2B net, as the official
    configuration composes it for the checkpoint's experiment
    (`buttercup_predict2p5_2b_7views_res720p_fps30_t8_joint_alpamayo1capviewprefix_allcapsviewprefix_29frames_
    nofps_uniform_dropoutt0`, `predict2_multiview/configs/vid2vid/experiment/buttercup2p5_rectified_flow.py` over
    `cosmos_v1_2B_multiview` in `.../defaults/net.py`, 7e5ffc83): 2048 channels, 28 blocks, 16 heads,
    timestep_scale 0.001, RoPE extrapolation h/w 3.0 and t 8/24, no fps modulation, the fp32 modulation plan."""

    rope_t_extrapolation_ratio: float = 8 / 24  # state_t / 24 in the experiment
    state_t: int = 8  # latent frames per view (29 pixel frames)
    n_cameras_emb: int = 7  # rows of the view embedding; the net takes 1..n_cameras_emb views
    view_condition_dim: int = 7  # view-embedding channels of the patch-embedding input

    @classmethod
    def preset(cls, name: str) -> MultiviewDiTConfig:
        """`2B`: the released net; `tiny`: its structure (views, state_t) with the base tiny preset's widths."""
        if name == "2B":
            return cls()
        if name == "tiny":
            return dataclasses.replace(cls(), **_tiny_changes())
        raise ValueError(f"unknown multiview DiT preset {name!r}; expected one of {', '.join(MULTIVIEW_DIT_PRESETS)}")

    def describe(self) -> str:
        return f"multiview {super().describe()}, up to {self.n_cameras_emb} views of {self.state_t} latent frames"

    @property
    def patch_in_features(self) -> int:
        return super().patch_in_features + self.view_condition_dim * self.patch_temporal * self.patch_spatial**2


def _tiny_changes() -> dict:
    """The fields in which the base tiny preset differs from the base 2B net (its widths)."""
    tiny, released = DiTConfig.preset("tiny"), DiTConfig.preset("2B")
    names = (field.name for field in dataclasses.fields(DiTConfig))
    return {name: getattr(tiny, name) for name in names if getattr(tiny, name) != getattr(released, name)}


class MultiviewCrossAttention(Attention):
    """Cross-attention of each view's tokens to that view's text context."""

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, rope: Rope | None, attention_fn: AttentionFn
    ) -> torch.Tensor:
        """x (B, K * L, D), context (B, K, N, Dc): part k of x attends to context block k -> (B, K * L, D).

        The parts are batched view-major, (K B), as the reference batches them.
        """
        b, k = context.shape[:2]
        x = x.unflatten(1, (k, -1)).transpose(0, 1).flatten(0, 1)  # (K B, L, D)
        out = super().forward(x, context.transpose(0, 1).flatten(0, 1), rope, attention_fn)  # (K B, L, D)
        return out.unflatten(0, (k, b)).transpose(0, 1).flatten(1, 2)


class MultiviewBlock(Block):
    cross_attention_type = MultiviewCrossAttention


class MultiviewDiT(MiniTrainDiT):
    """The multiview DiT. Call it like `MiniTrainDiT`, with the views along time and `view_indices`."""

    cfg: MultiviewDiTConfig
    block_type = MultiviewBlock
    config_type = MultiviewDiTConfig

    def __init__(self, cfg: MultiviewDiTConfig, attention_backend: str = "auto"):
        super().__init__(cfg, attention_backend)
        del self.pos_embedder  # the reference keeps one table per view count instead
        self.pos_embedder_options = nn.ModuleDict(
            {f"n_cameras_{n}": build_rope(cfg) for n in range(1, cfg.n_cameras_emb + 1)}
        )
        self.view_embeddings = nn.Embedding(cfg.n_cameras_emb, cfg.view_condition_dim)

    def prepare(  # type: ignore[override]  # view_indices in the place of the base's extra seams
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        crossattn_emb: torch.Tensor,
        fps: float | None = None,
        padding_mask: torch.Tensor | None = None,
        condition_mask: torch.Tensor | None = None,
        view_indices: torch.Tensor | None = None,
    ) -> DiTInputs:
        """The base DiT's inputs with the view channels (computed here, in the place of the base's
        `extra_channels`), the per-view RoPE and the context as (B, K, 512, Dc); the net is called as `MiniTrainDiT`
        (latents (B, 16, V * state_t, H, W), the views one after another) with `view_indices=`.

        crossattn_emb: (B, K * 512, crossattn_proj_in_channels), K = V (one embedding per view, in view order) or
          1 (one for all). view_indices: (B, V), each view's row of the view embedding (the official camera order
          front_wide, cross_right, rear_right, rear, rear_left, cross_left, front_tele is 0..6); None means 0..V-1.
        """
        views = self.num_views(x)
        if crossattn_emb.ndim != 3 or crossattn_emb.shape[1] % CONTEXT_TOKENS_PER_VIEW:
            raise ValueError(
                f"crossattn_emb: expected (B, K * {CONTEXT_TOKENS_PER_VIEW}, D), text embeddings of "
                f"{CONTEXT_TOKENS_PER_VIEW} tokens each, got {tuple(crossattn_emb.shape)}"
            )
        inputs = super().prepare(
            x, timesteps, crossattn_emb, fps, padding_mask, condition_mask, self.view_channels(x, view_indices)
        )
        context = inputs.context.unflatten(1, (-1, CONTEXT_TOKENS_PER_VIEW))  # (B, K, 512, Dc)
        if context.shape[1] not in (1, views):
            raise ValueError(
                f"crossattn_emb: {context.shape[1]} context blocks of {CONTEXT_TOKENS_PER_VIEW} tokens for {views} "
                f"views; pass one block per view (in view order) or one for all"
            )
        return MultiviewDiTInputs(**{**vars(inputs), "context": context})

    def num_views(self, x: torch.Tensor) -> int:
        """V of latents (B, C, V * state_t, H, W)."""
        frames, state_t = x.shape[2], self.cfg.state_t
        views = frames // state_t
        if frames % state_t or not 1 <= views <= self.cfg.n_cameras_emb:
            raise ValueError(
                f"x: {frames} latent frames are not 1 to {self.cfg.n_cameras_emb} views of {state_t} frames "
                f"(the views' latents concatenated along time)"
            )
        return views

    def view_channels(self, x: torch.Tensor, view_indices: torch.Tensor | None) -> torch.Tensor:
        """The view embedding of each view's frames as input channels: (B, view_condition_dim, V * state_t, H, W)."""
        b, _, t, h, w = x.shape
        views = t // self.cfg.state_t
        if view_indices is None:
            view_indices = torch.arange(views, device=x.device).expand(b, views)
        elif view_indices.shape != (b, views):
            raise ValueError(
                f"view_indices: expected ({b}, {views}) for {views} views, got {tuple(view_indices.shape)}"
            )
        elif view_indices.min() < 0 or view_indices.max() >= self.cfg.n_cameras_emb:
            raise ValueError(f"view_indices: rows of the view embedding are 0..{self.cfg.n_cameras_emb - 1}")
        embedding = self.view_embeddings(view_indices.to(x.device).long())  # (B, V, E)
        embedding = embedding.permute(0, 2, 1)[:, :, :, None, None, None]  # (B, E, V, 1, 1, 1)
        return embedding.expand(-1, -1, -1, self.cfg.state_t, h, w).flatten(2, 3)  # (B, E, V * state_t, H, W)

    def position_embedding(self, grid: tuple[int, int, int], fps: float | None) -> Rope:
        """The RoPE of one view's grid, repeated for each view: (V * T * H * W, 1, head_dim)."""
        t, h, w = grid
        views = t * self.cfg.patch_temporal // self.cfg.state_t
        rope = cast(VideoRope3D, self.pos_embedder_options[f"n_cameras_{views}"])
        cos, sin = rope(t // views, h, w, fps=fps)
        return cos.repeat(views, 1, 1), sin.repeat(views, 1, 1)

    @staticmethod
    def rope_tables(cfg: DiTConfig) -> dict[str, torch.Tensor]:
        tables = build_rope(cfg).state_dict()
        views = range(1, cast(MultiviewDiTConfig, cfg).n_cameras_emb + 1)
        return {f"pos_embedder_options.n_cameras_{n}.{k}": v.clone() for n in views for k, v in tables.items()}


@dataclass
class MultiviewDiTInputs(DiTInputs):
    """`DiTInputs` whose context is (B, K, 512, Dc): one block per view (or one for all), one block per frame after
    `select_frames`."""

    def select_frames(self, start: int, stop: int) -> DiTInputs:
        """The inputs of latent frames [start, stop) (a context-parallel shard along time), which may begin and end
        inside views. The RoPE, view channels and timestep embeddings are per token or per frame already; the
        cross-attention, which gives each of the context's K blocks an equal part of the tokens, gets one block per
        frame here: the block of the frame's view, so every token still attends to its own view's context."""
        local = super().select_frames(start, stop)
        blocks = self.context.shape[1]
        if blocks == 1 or (start, stop) == (0, self.grid[0]):
            return local  # one block for all tokens, or one per view of the whole sequence: as the reference runs
        frames_per_view = self.grid[0] // blocks
        views = [frame // frames_per_view for frame in range(start, stop)]
        return dataclasses.replace(local, context=self.context[:, views])  # (B, stop - start, 512, Dc)
