"""The Cosmos-Predict2.5 diffusion transformer (the reference's `MiniTrainDIT` / `MinimalV1LVGDiT`).

Latents (B, 16, T, H, W), a condition-mask channel (1 on conditional frames) and a padding-mask channel
are concatenated (18 channels) and cut into 1x2x2 patches. Each of the `num_blocks` blocks runs
self-attention (RMS q/k norm, 3D RoPE), cross-attention over the projected Reason1 text embedding and
a GELU MLP, each behind an AdaLN-LoRA modulation (shift, scale, gate per latent frame) computed from the
timestep embedding. A modulated final layer and the inverse of the patching give the velocity.

Parameter and buffer names are the reference's (an official state dict loads strictly after its `net.`
prefix is removed); `official_to_diffusers_key` maps them to diffusers' `CosmosTransformer3DModel`.

Precision follows the reference's bf16 inference (`use_wan_fp32_strategy=True` in the 2B and 14B base
configs): the timestep embedding, every AdaLN modulation and the final layer run in float32
(`MiniTrainDiT.cast` keeps those weights in float32), q and k are rotated in float32, everything else runs
in the model dtype. The distilled 2B net has the strategy off (`fp32_modulation=False`, see
`cosmos_ray.core.registry`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self, cast

import torch
import torch.nn.functional as F
from torch import nn

from cosmos_ray.core.registry import OfficialModel
from cosmos_ray.models.attention import AttentionFn, attention
from cosmos_ray.models.attention_8bit import QuantizedSelfAttention
from cosmos_ray.models.rope import Rope, VideoRope3D, apply_rope
from cosmos_ray.models.weights import drop_training_entries, load_into, read_state_dict, rename_keys, select_prefix

DIT_PRESETS = ("2B", "14B", "tiny")


@dataclass(frozen=True)
class DiTConfig:
    """Architecture of the DiT. Field names follow the reference's net config where one exists."""

    in_channels: int = 16  # latent channels; +1 condition mask +1 padding mask enter the patch embedding
    out_channels: int = 16
    model_channels: int = 2048
    num_blocks: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0
    patch_spatial: int = 2
    patch_temporal: int = 1
    adaln_lora_dim: int = 256
    crossattn_proj_in_channels: int = 100352  # Reason1: 28 hidden layers x 3584, concatenated
    crossattn_emb_channels: int = 1024  # cross-attention context width after `crossattn_proj`
    max_img_h: int = 240  # latent size limits; they size the RoPE tables
    max_img_w: int = 240
    max_frames: int = 128
    rope_h_extrapolation_ratio: float = 3.0
    rope_w_extrapolation_ratio: float = 3.0
    rope_t_extrapolation_ratio: float = 1.0
    rope_enable_fps_modulation: bool = False
    timestep_scale: float = 0.001  # the net multiplies its timestep input by this (1.0 in the distilled net)
    fp32_modulation: bool = True  # reference: use_wan_fp32_strategy

    @classmethod
    def preset(cls, name: str) -> DiTConfig:
        """Shapes of a net: `2B` and `14B` are the official Cosmos-Predict2.5 nets (the reference's
        `cosmos_v1_2B` / `cosmos_v1_14B` with the Reason1 rectified-flow experiment overrides, which are
        the same for both sizes); `tiny` has the same structure with small widths, for tests."""
        if name == "2B":
            return cls()
        if name == "14B":
            return cls(model_channels=5120, num_heads=40, num_blocks=36)
        if name == "tiny":
            return cls(
                model_channels=128,
                num_blocks=2,
                num_heads=4,
                adaln_lora_dim=32,
                crossattn_proj_in_channels=96,
                crossattn_emb_channels=64,
            )
        raise ValueError(f"unknown DiT preset {name!r}; expected one of {', '.join(DIT_PRESETS)}")

    @classmethod
    def of_model(cls, model: OfficialModel, shapes: str | None = None) -> DiTConfig:
        """The net of official `model`'s checkpoint: the released shapes (its size), or those of preset
        `shapes` (e.g. "tiny"), with the checkpoint's timestep scale and precision."""
        return dataclasses.replace(
            cls.preset(shapes or model.size),
            timestep_scale=model.timestep_scale,
            fp32_modulation=model.fp32_modulation,
        )

    def describe(self) -> str:
        """The net's size in words, for messages: "DiT 2048 wide, 28 blocks"."""
        return f"DiT {self.model_channels} wide, {self.num_blocks} blocks"

    @property
    def head_dim(self) -> int:
        return self.model_channels // self.num_heads

    @property
    def patch_in_features(self) -> int:
        return (self.in_channels + 2) * self.patch_temporal * self.patch_spatial**2


# ----------------------------------------------------------------------------------------------------
# Embeddings


class Patchify(nn.Module):
    """(B, C, T*r, H*m, W*m) -> (B, T, H*W, C*r*m*m): one row per patch, channel-major inside a patch."""

    def __init__(self, temporal: int, spatial: int):
        super().__init__()
        self.temporal, self.spatial = temporal, spatial

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        r, m = self.temporal, self.spatial
        x = x.reshape(b, c, t // r, r, h // m, m, w // m, m)
        x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)  # (B, T, H, W, C, r, m, n)
        return x.reshape(b, t // r, (h // m) * (w // m), c * r * m * m)


class PatchEmbed(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.proj = nn.Sequential(
            Patchify(cfg.patch_temporal, cfg.patch_spatial),
            nn.Linear(cfg.patch_in_features, cfg.model_channels, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C+2, T, H, W) -> (B, T', H'W', D), computed in the weight's dtype."""
        return self.proj(x.to(cast(nn.Linear, self.proj[1]).weight.dtype))


def build_rope(cfg: DiTConfig) -> VideoRope3D:
    return VideoRope3D(
        cfg.head_dim,
        cfg.max_frames // cfg.patch_temporal,
        cfg.max_img_h // cfg.patch_spatial,
        cfg.max_img_w // cfg.patch_spatial,
        cfg.rope_h_extrapolation_ratio,
        cfg.rope_w_extrapolation_ratio,
        cfg.rope_t_extrapolation_ratio,
        cfg.rope_enable_fps_modulation,
    )


class SinusoidalTimesteps(nn.Module):
    """(B, T) timesteps -> (B, T, dim) [cos | sin] features in float32."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
        angles = timesteps.float()[..., None] * torch.exp(exponent)
        return torch.cat([angles.cos(), angles.sin()], dim=-1)


class TimestepEmbedding(nn.Module):
    """Sinusoidal features -> the AdaLN-LoRA term (B, T, 3D) shared by every modulation."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(dim, dim, bias=False)
        self.activation = nn.SiLU()
        self.linear_2 = nn.Linear(dim, 3 * dim, bias=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.activation(self.linear_1(features)))


class RMSNorm(nn.RMSNorm):
    """RMSNorm as the reference's Transformer Engine kernel computes it: in float32, the weight applied in
    float32, one rounding to the input dtype (nn.RMSNorm rounds the normalized value, then the product)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normalized = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + cast(float, self.eps))
        return (normalized * cast(torch.Tensor, self.weight).float()).to(x.dtype)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x * (1 + scale) + shift, rounded after each operation as the reference computes it."""
    return x * (1 + scale) + shift


def adaln_lora_layers(dim: int, lora_dim: int, chunks: int) -> nn.Sequential:
    """SiLU -> down to `lora_dim` -> up to `chunks` x dim (shift, scale[, gate])."""
    return nn.Sequential(nn.SiLU(), nn.Linear(dim, lora_dim, bias=False), nn.Linear(lora_dim, chunks * dim, bias=False))


# ----------------------------------------------------------------------------------------------------
# Transformer block


class Attention(nn.Module):
    """Multi-head attention with RMS-normalized q and k; RoPE on q and k when given (self-attention)."""

    def __init__(self, dim: int, context_dim: int, num_heads: int):
        super().__init__()
        head_dim = dim // num_heads
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(context_dim, dim, bias=False)
        self.v_proj = nn.Linear(context_dim, dim, bias=False)
        self.q_norm = RMSNorm(head_dim, eps=1e-6)
        self.k_norm = RMSNorm(head_dim, eps=1e-6)
        self.output_proj = nn.Linear(dim, dim, bias=False)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, rope: Rope | None, attention_fn: AttentionFn
    ) -> torch.Tensor:
        """x (B, S, D), context (B, N, Dc) -> (B, S, D)."""
        q = self.q_norm(self.q_proj(x).unflatten(-1, (self.num_heads, -1)))  # (B, S, H, Dh)
        k = self.k_norm(self.k_proj(context).unflatten(-1, (self.num_heads, -1)))  # (B, N, H, Dh)
        v = self.v_proj(context).unflatten(-1, (self.num_heads, -1))
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        return self.output_proj(attention_fn(q, k, v).flatten(-2))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.layer1 = nn.Linear(dim, hidden_dim, bias=False)
        self.activation = nn.GELU()
        self.layer2 = nn.Linear(hidden_dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(self.activation(self.layer1(x)))


def shift_scale_gate(
    adaln: nn.Sequential, emb: torch.Tensor, adaln_lora: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, ...]:
    """shift, scale, gate: 3 x (B, T, 1, D), computed in emb's dtype (float32 with fp32_modulation)."""
    return (adaln(emb) + adaln_lora).to(dtype).unsqueeze(2).chunk(3, dim=-1)


class Block(nn.Module):
    """Self-attention, cross-attention and MLP, each as x + gate * f(norm(x) * (1 + scale) + shift)."""

    cross_attention_type: type[Attention] = Attention  # a subclass may attend otherwise (one context per view)

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        dim = cfg.model_channels
        self.layer_norm_self_attn = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.self_attn = Attention(dim, dim, cfg.num_heads)
        self.layer_norm_cross_attn = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.cross_attn = self.cross_attention_type(dim, cfg.crossattn_emb_channels, cfg.num_heads)
        self.layer_norm_mlp = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = FeedForward(dim, int(dim * cfg.mlp_ratio))
        self.adaln_modulation_self_attn = adaln_lora_layers(dim, cfg.adaln_lora_dim, 3)
        self.adaln_modulation_cross_attn = adaln_lora_layers(dim, cfg.adaln_lora_dim, 3)
        self.adaln_modulation_mlp = adaln_lora_layers(dim, cfg.adaln_lora_dim, 3)

    def forward(
        self,
        x: torch.Tensor,
        emb: torch.Tensor,
        adaln_lora: torch.Tensor,
        context: torch.Tensor,
        rope: Rope,
        attention_fn: AttentionFn = attention,
        cross_attention_fn: AttentionFn = attention,
        **conditioning: torch.Tensor,
    ) -> torch.Tensor:
        """x (B, T, HW, D) tokens; emb (B, T, D); adaln_lora (B, T, 3D); context (B, N, Dc), or what
        `cross_attention_type` takes; `conditioning`: what `self_attention_input` takes (a subclass's, e.g. the
        camera net's rays; `DiTInputs.block_conditioning`).

        `attention_fn` computes self-attention (a context-parallel wrapper goes here); cross-attention
        uses `cross_attention_fn` because its context is never sharded.
        """
        b, t, hw, d = x.shape
        shift, scale, gate = shift_scale_gate(self.adaln_modulation_self_attn, emb, adaln_lora, x.dtype)
        h = modulate(self.layer_norm_self_attn(x), shift, scale)
        h = self.self_attention_input(h, **conditioning).view(b, t * hw, d)
        x = x + gate * self.self_attn(h, h, rope, attention_fn).view(b, t, hw, d)

        shift, scale, gate = shift_scale_gate(self.adaln_modulation_cross_attn, emb, adaln_lora, x.dtype)
        h = modulate(self.layer_norm_cross_attn(x), shift, scale).view(b, t * hw, d)
        x = x + gate * self.cross_attn(h, context, None, cross_attention_fn).view(b, t, hw, d)

        shift, scale, gate = shift_scale_gate(self.adaln_modulation_mlp, emb, adaln_lora, x.dtype)
        h = modulate(self.layer_norm_mlp(x), shift, scale)
        return x + gate * self.mlp(h)

    def self_attention_input(self, h: torch.Tensor) -> torch.Tensor:
        """What self-attention attends over, (B, T, HW, D), from the modulated normalized tokens h: h itself (a
        subclass adds its per-token conditioning here, e.g. the camera net's ray embedding)."""
        return h


class FinalLayer(nn.Module):
    """Modulated LayerNorm and a linear map from tokens to patches of output channels."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        dim = cfg.model_channels
        self.layer_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, cfg.patch_spatial**2 * cfg.patch_temporal * cfg.out_channels, bias=False)
        self.adaln_modulation = adaln_lora_layers(dim, cfg.adaln_lora_dim, 2)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, adaln_lora: torch.Tensor) -> torch.Tensor:
        """x (B, T, HW, D) -> (B, T, HW, p*p*pt*C_out), in emb's dtype."""
        dim = x.shape[-1]
        shift, scale = (self.adaln_modulation(emb) + adaln_lora[..., : 2 * dim]).unsqueeze(2).chunk(2, dim=-1)
        x = modulate(self.layer_norm(x.to(emb.dtype)), shift, scale)
        return self.linear(x)


# ----------------------------------------------------------------------------------------------------
# The network


@dataclass
class DiTInputs:
    """What the blocks and the final layer need, computed once per forward by `MiniTrainDiT.prepare`."""

    x: torch.Tensor  # (B, T, H*W, D) patch tokens, frame-major
    emb: torch.Tensor  # (B, T, D) RMS-normalized timestep features
    adaln_lora: torch.Tensor  # (B, T, 3D)
    context: torch.Tensor  # (B, N, crossattn_emb_channels) projected text embedding (a subclass's own layout)
    rope: Rope  # cos, sin: (T*H*W, 1, head_dim) float32
    grid: tuple[int, int, int]  # (T, H, W) of the full patch grid

    def block_conditioning(self) -> dict[str, torch.Tensor]:
        """The keyword arguments every block gets besides the base ones (a subclass's, e.g. the camera rays)."""
        return {}

    def select_frames(self, start: int, stop: int) -> DiTInputs:
        """The inputs of latent frames [start, stop) (a context-parallel shard along time)."""
        tokens_per_frame = self.grid[1] * self.grid[2]
        rows = slice(start * tokens_per_frame, stop * tokens_per_frame)
        return dataclasses.replace(
            self,
            x=self.x[:, start:stop],
            emb=self.emb[:, start:stop],
            adaln_lora=self.adaln_lora[:, start:stop],
            rope=(self.rope[0][rows], self.rope[1][rows]),
        )


class MiniTrainDiT(nn.Module):
    """The DiT. Call it for a velocity; or run `prepare`, the `blocks` and `finalize` yourself to change
    how self-attention is computed (context parallelism)."""

    block_type: type[Block] = Block
    config_type: ClassVar[type[DiTConfig]] = DiTConfig  # the config class of this net (a subclass's own)

    def __init__(self, cfg: DiTConfig, attention_backend: str = "auto"):
        super().__init__()
        self.cfg = cfg
        self.attention_backend = attention_backend
        self.quantized_attention = QuantizedSelfAttention()  # bf16 everywhere unless the loader sets a kernel
        dim = cfg.model_channels
        self.x_embedder = PatchEmbed(cfg)
        self.pos_embedder = build_rope(cfg)
        self.t_embedder = nn.Sequential(SinusoidalTimesteps(dim), TimestepEmbedding(dim))
        self.t_embedding_norm = RMSNorm(dim, eps=1e-6)
        self.crossattn_proj = nn.Sequential(
            nn.Linear(cfg.crossattn_proj_in_channels, cfg.crossattn_emb_channels), nn.GELU()
        )
        self.blocks = nn.ModuleList(self.block_type(cfg) for _ in range(cfg.num_blocks))
        self.final_layer = FinalLayer(cfg)

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        crossattn_emb: torch.Tensor,
        fps: float | None = None,
        padding_mask: torch.Tensor | None = None,
        condition_mask: torch.Tensor | None = None,
        **net_inputs: torch.Tensor,
    ) -> torch.Tensor:
        """Velocity (B, out_channels, T, H, W) for latents x (B, in_channels, T, H, W).

        timesteps: (B,) or (B, T), in the units the reference sampler passes (flow time x 1000; the net
          multiplies them by `timestep_scale`). crossattn_emb: (B, N, crossattn_proj_in_channels).
        fps: used only with `rope_enable_fps_modulation` (off for 2B).
        padding_mask: (B or 1, 1, H', W'), resized (nearest) to (H, W); None means no padding.
        condition_mask: (B, 1, T, H, W), 1 on conditional frames; None means none.
        net_inputs: a family's net's own inputs, which its `prepare` takes (the multiview net's `view_indices`, the
          action net's `actions`, the camera net's `camera`).
        """
        prepare: Callable[..., DiTInputs] = self.prepare  # a subclass's, with its own keywords
        return self.forward_prepared(
            prepare(x, timesteps, crossattn_emb, fps, padding_mask, condition_mask, **net_inputs)
        )

    def forward_prepared(self, inputs: DiTInputs) -> torch.Tensor:
        """The blocks and `finalize` on what `prepare` made: the velocity (B, out_channels, T, H, W)."""
        tokens = inputs.x
        for index, block in enumerate(self.blocks):
            tokens = block(
                tokens,
                inputs.emb,
                inputs.adaln_lora,
                inputs.context,
                inputs.rope,
                self.self_attention_fn(index),
                self.attention_fn,
                **inputs.block_conditioning(),
            )
        return self.finalize(tokens, inputs)

    def attention_fn(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """`attention` with this model's backend, in the model's dtype (cross-attention always)."""
        return attention(q, k, v, backend=self.attention_backend)

    def self_attention_fn(self, block: int) -> AttentionFn:
        """The self-attention of block `block` in the current evaluation: 8-bit where `quantized_attention`
        says so, else `attention_fn`."""
        return self.quantized_attention.for_block(block, self.attention_fn)

    def prepare(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        crossattn_emb: torch.Tensor,
        fps: float | None = None,
        padding_mask: torch.Tensor | None = None,
        condition_mask: torch.Tensor | None = None,
        extra_channels: torch.Tensor | None = None,
        timestep_offsets: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> DiTInputs:
        """Patch tokens, timestep embedding, text context and RoPE (see `forward` for the arguments).

        extra_channels: (B, E, T, H, W) input channels after the two masks (a subclass's conditioning, e.g.
          the multiview net's view embedding); `cfg.patch_in_features` must count them.
        timestep_offsets: (B, T', D) and (B, T', 3D) per-frame terms (a subclass's conditioning, e.g. the
          action-conditioned net's action embedding): the first is added to the sinusoidal timestep features
          before their RMSNorm, the second to the AdaLN-LoRA term.
        """
        self.check_inputs(x, timesteps, crossattn_emb, condition_mask)
        b, _, t, h, w = x.shape
        if condition_mask is None:
            condition_mask = x.new_zeros(b, 1, t, h, w)
        if padding_mask is None:
            padding_mask = x.new_zeros(b, 1, h, w)
        elif padding_mask.shape[-2:] != (h, w):
            padding_mask = F.interpolate(padding_mask, size=(h, w), mode="nearest")
        padding_mask = padding_mask.unsqueeze(2).expand(b, 1, t, h, w)
        channels = [x, condition_mask.to(x.dtype), padding_mask.to(x.dtype)]
        if extra_channels is not None:
            channels.append(extra_channels.to(x.dtype))
        x = torch.cat(channels, dim=1)  # (B, C+2(+E), T, H, W)
        tokens = self.x_embedder(x)  # (B, T', H'W', D)
        grid = (t // self.cfg.patch_temporal, h // self.cfg.patch_spatial, w // self.cfg.patch_spatial)

        timesteps = timesteps.reshape(b, -1).float() * self.cfg.timestep_scale  # (B, T) or (B, 1)
        features = self.t_embedder[0](timesteps)
        features = features.to(cast(TimestepEmbedding, self.t_embedder[1]).linear_1.weight.dtype)
        adaln_lora = self.t_embedder[1](features)  # (B, T' or 1, 3D)
        if timestep_offsets is not None:
            features, adaln_lora = features + timestep_offsets[0], adaln_lora + timestep_offsets[1]
        adaln_lora = adaln_lora.expand(b, grid[0], -1)  # (B, T', 3D)
        emb = self.t_embedding_norm(features).expand(b, grid[0], -1)  # (B, T', D)

        context = self.crossattn_proj(crossattn_emb.to(cast(nn.Linear, self.crossattn_proj[0]).weight.dtype))
        return DiTInputs(tokens, emb, adaln_lora, context, self.position_embedding(grid, fps), grid)

    def position_embedding(self, grid: tuple[int, int, int], fps: float | None) -> Rope:
        """The RoPE of the patch grid (T, H, W)."""
        return self.pos_embedder(*grid, fps=fps)

    @staticmethod
    def rope_tables(cfg: DiTConfig) -> dict[str, torch.Tensor]:
        """The RoPE buffers of a net of `cfg` under their state-dict names (functions of the config)."""
        return {f"pos_embedder.{k}": v for k, v in build_rope(cfg).state_dict().items()}

    def finalize(self, tokens: torch.Tensor, inputs: DiTInputs) -> torch.Tensor:
        """Final layer and unpatchify: (B, T', H'W', D) -> (B, out_channels, T, H, W).

        Works on a time shard too (`inputs.select_frames`): T' is taken from `tokens`.
        """
        cfg = self.cfg
        out = self.final_layer(tokens, inputs.emb, inputs.adaln_lora)
        b, t, _, _ = out.shape
        _, h, w = inputs.grid
        p, r = cfg.patch_spatial, cfg.patch_temporal
        out = out.view(b, t, h, w, p, p, r, cfg.out_channels)  # the reference orders a patch as (p1 p2 t C)
        out = out.permute(0, 7, 1, 6, 2, 4, 3, 5)  # (B, C, T', r, H', p1, W', p2)
        return out.reshape(b, cfg.out_channels, t * r, h * p, w * p)

    def check_inputs(
        self, x: torch.Tensor, timesteps: torch.Tensor, crossattn_emb: torch.Tensor, condition_mask: torch.Tensor | None
    ) -> None:
        cfg = self.cfg
        if x.ndim != 5 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"x: expected (B, {cfg.in_channels}, T, H, W) latents, got {tuple(x.shape)}")
        b, _, t, h, w = x.shape
        if h % cfg.patch_spatial or w % cfg.patch_spatial or t % cfg.patch_temporal:
            raise ValueError(
                f"x: latent size (T={t}, H={h}, W={w}) is not divisible by the patch size "
                f"(t={cfg.patch_temporal}, h=w={cfg.patch_spatial})"
            )
        if timesteps.shape not in ((b,), (b, 1), (b, t)):
            raise ValueError(f"timesteps: expected shape ({b},), ({b}, 1) or ({b}, {t}), got {tuple(timesteps.shape)}")
        width = cfg.crossattn_proj_in_channels
        if crossattn_emb.ndim != 3 or crossattn_emb.shape[0] != b or crossattn_emb.shape[2] != width:
            raise ValueError(f"crossattn_emb: expected ({b}, N, {width}), got {tuple(crossattn_emb.shape)}")
        if condition_mask is not None and condition_mask.shape != (b, 1, t, h, w):
            raise ValueError(f"condition_mask: expected {(b, 1, t, h, w)}, got {tuple(condition_mask.shape)}")

    def fp32_modules(self) -> list[nn.Module]:
        """The modules the reference runs in float32 under `use_wan_fp32_strategy`."""
        modules: list[nn.Module] = [self.t_embedder, self.t_embedding_norm, self.final_layer]
        for block in cast(list[Block], self.blocks):
            modules += [block.adaln_modulation_self_attn, block.adaln_modulation_cross_attn, block.adaln_modulation_mlp]
        return modules

    def cast(self, dtype: torch.dtype) -> Self:
        """Casts to `dtype`, keeping `fp32_modules` in float32 when `cfg.fp32_modulation` is set."""
        self.to(dtype)
        if self.cfg.fp32_modulation:
            for module in self.fp32_modules():
                module.float()
        return self

    def compile_blocks(self, **compile_kwargs: Any) -> Self:
        """torch.compile each block in place (all blocks share one compiled graph)."""
        for block in self.blocks:
            block.compile(**compile_kwargs)
        return self


# ----------------------------------------------------------------------------------------------------
# Checkpoints

# Official name fragment <-> diffusers `CosmosTransformer3DModel` name fragment. Applied in order, at
# most once each; the RoPE buffers (`pos_embedder.*`) have no diffusers counterpart.
OFFICIAL_TO_DIFFUSERS: tuple[tuple[str, str], ...] = (
    ("x_embedder.proj.1.", "patch_embed.proj."),
    ("t_embedder.1.", "time_embed.t_embedder."),
    ("t_embedding_norm.", "time_embed.norm."),
    ("final_layer.adaln_modulation.1.", "norm_out.linear_1."),
    ("final_layer.adaln_modulation.2.", "norm_out.linear_2."),
    ("final_layer.linear.", "proj_out."),
    ("blocks.", "transformer_blocks."),
    (".adaln_modulation_self_attn.1.", ".norm1.linear_1."),
    (".adaln_modulation_self_attn.2.", ".norm1.linear_2."),
    (".adaln_modulation_cross_attn.1.", ".norm2.linear_1."),
    (".adaln_modulation_cross_attn.2.", ".norm2.linear_2."),
    (".adaln_modulation_mlp.1.", ".norm3.linear_1."),
    (".adaln_modulation_mlp.2.", ".norm3.linear_2."),
    (".self_attn.", ".attn1."),
    (".cross_attn.", ".attn2."),
    (".q_proj.", ".to_q."),
    (".k_proj.", ".to_k."),
    (".v_proj.", ".to_v."),
    (".output_proj.", ".to_out.0."),
    (".q_norm.", ".norm_q."),
    (".k_norm.", ".norm_k."),
    (".mlp.layer1.", ".ff.net.0.proj."),
    (".mlp.layer2.", ".ff.net.2."),
)
ROPE_BUFFERS = ("pos_embedder.seq", "pos_embedder.dim_spatial_range", "pos_embedder.dim_temporal_range")
DIFFUSERS_TOP_LEVEL = ("patch_embed.", "time_embed.", "transformer_blocks.", "norm_out.", "proj_out.")


def _translate(key: str, table: tuple[tuple[str, str], ...]) -> str:
    for old, new in table:
        if key.startswith(old) or (old.startswith(".") and old in key):
            key = key.replace(old, new, 1)
    return key


def official_to_diffusers_key(key: str) -> str | None:
    """Diffusers name of an official parameter; None for the RoPE buffers diffusers recomputes."""
    return None if key in ROPE_BUFFERS else _translate(key, OFFICIAL_TO_DIFFUSERS)


def diffusers_to_official_key(key: str) -> str:
    return _translate(key, tuple((new, old) for old, new in OFFICIAL_TO_DIFFUSERS))


def diffusers_config(cfg: DiTConfig) -> dict:
    """Keyword arguments of an equivalent diffusers `CosmosTransformer3DModel`.

    Differences diffusers does not express: callers pass it `timesteps * cfg.timestep_scale`, and `fps`
    only when `rope_enable_fps_modulation` is set; its q/k RMSNorm eps is 1e-5 where the reference
    uses 1e-6 (set `norm_q.eps` / `norm_k.eps` for exact parity); it has no fp32 modulation.
    """
    return dict(
        in_channels=cfg.in_channels + 1,  # diffusers counts the condition mask in in_channels
        out_channels=cfg.out_channels,
        num_attention_heads=cfg.num_heads,
        attention_head_dim=cfg.head_dim,
        num_layers=cfg.num_blocks,
        mlp_ratio=cfg.mlp_ratio,
        text_embed_dim=cfg.crossattn_emb_channels,
        adaln_lora_dim=cfg.adaln_lora_dim,
        max_size=(cfg.max_frames, cfg.max_img_h, cfg.max_img_w),
        patch_size=(cfg.patch_temporal, cfg.patch_spatial, cfg.patch_spatial),
        rope_scale=(cfg.rope_t_extrapolation_ratio, cfg.rope_h_extrapolation_ratio, cfg.rope_w_extrapolation_ratio),
        concat_padding_mask=True,
        extra_pos_embed_type=None,
        use_crossattn_projection=True,
        crossattn_proj_in_channels=cfg.crossattn_proj_in_channels,
        encoder_hidden_states_channels=cfg.crossattn_emb_channels,
    )


def read_dit_state_dict(source: str | os.PathLike | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An official or diffusers-layout DiT checkpoint as an official-layout state dict.

    `source` is a state dict, a `.pt`/`.safetensors` file, or a folder of `.safetensors` shards
    (diffusers' `transformer/`). Official files may hold regular (`net.`) and EMA (`net_ema.`) weights:
    EMA is preferred, as the official inference does (`load_ema_to_reg=True`). The released
    `*_ema_bf16.pt` files hold the EMA weights under `net.`.
    """
    if isinstance(source, Mapping):
        state = dict(source)
    elif Path(source).is_dir():
        shards = sorted(Path(source).glob("*.safetensors"))
        if not shards:
            raise FileNotFoundError(f"no .safetensors files in checkpoint folder {source}")
        state = {k: v for shard in shards for k, v in read_state_dict(shard).items()}
    else:
        state = read_state_dict(source)
    state = drop_training_entries(select_prefix(state, ("net_ema.", "net.")))
    if any(key.startswith(DIFFUSERS_TOP_LEVEL) for key in state):
        state = rename_keys(state, diffusers_to_official_key)
    return state


def with_rope_tables(
    state: Mapping[str, torch.Tensor], cfg: DiTConfig, net: type[MiniTrainDiT] = MiniTrainDiT
) -> dict[str, torch.Tensor]:
    """`state` with the RoPE tables of a `net` of `cfg` where it has none: diffusers files lack them
    (functions of the config)."""
    return {**net.rope_tables(cfg), **state}


def load_dit(
    source: str | os.PathLike | Mapping[str, torch.Tensor],
    cfg: DiTConfig,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.bfloat16,
    attention_backend: str = "auto",
    compile: bool = False,
    net: type[MiniTrainDiT] = MiniTrainDiT,
) -> MiniTrainDiT:
    """Builds the DiT (`net`: the class, a subclass of `MiniTrainDiT` for another family's net) on `meta`,
    assigns the checkpoint's tensors (no second host copy), moves and casts.

    Raises CheckpointMismatchError listing missing/unexpected keys and shape mismatches.
    """
    state = read_dit_state_dict(source)
    with torch.device("meta"):
        model = net(cfg, attention_backend)
    what = "DiT state dict" if isinstance(source, Mapping) else f"DiT checkpoint {source}"
    load_into(model, with_rope_tables(state, cfg, net), what=what)
    model.to(device).cast(dtype).eval().requires_grad_(False)
    return model.compile_blocks() if compile else model
