"""The Wan2.1 causal video VAE, Cosmos-Predict2.5's tokenizer.

Video (B, 3, 1 + 4k, H, W) in [-1, 1] <-> normalized latents (B, 16, 1 + k, H/8, W/8). Every temporal
convolution is causal, so a video is processed as a stream of chunks (encode: the first frame, then
`encode_chunk_frames` frames at a time; decode: one latent frame at a time), each layer carrying its last
input frames from one chunk to the next in a `StreamCache`. The chunked result equals a whole-video causal
pass, and memory stays bounded by the chunk size, not the video length.

Module and parameter names are the official ones (`Wan2.1_VAE.pth` loads strictly);
`diffusers_key` maps them to diffusers' `AutoencoderKLWan` layout. The default decode rounds as the official
one; `use_decode_kernels` and `compile_decoder` opt into faster kernels that round differently (bf16 noise).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from cosmos_ray.models.attention import attention
from cosmos_ray.models.weights import load_into, read_state_dict, rename_keys

# Per-channel statistics of the Wan2.1 latents; encode returns (mu - mean) * (1 / std). As the official tokenizer
# (tokenizers/wan2pt1.py), both are held in the VAE's dtype and 1 / std is rounded to it: in bf16, channel 11's
# std 1.5579 acts as 1 / bf16(1 / bf16(1.5579)) = 1.5515 (0.41 % smaller).
WAN21_LATENT_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
WAN21_LATENT_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip

# Per-layer state carried between the chunks of one stream: the trailing input frames of each causal layer.
StreamCache = dict[nn.Module, torch.Tensor]


@dataclass(frozen=True)
class DecodeKernels:
    """How `WanVAE.decode` computes (set with `WanVAE.use_decode_kernels`). Every choice computes the same
    function; they differ in bf16 rounding only. The default is the official path (bit for bit, golden
    `end_to_end`); `bench/vae.py --parts decode-variants` measures each choice's speed and error against it.
    """

    # cuDNN times its algorithms for each conv shape it meets (the first decode of a shape is slower).
    cudnn_benchmark: bool = False
    # Each causal 3D conv as one 2D conv per output frame over its k_t input frames stacked along channels
    # (kt*C channels, a (kh, kw) kernel): cuDNN's 2D kernels, at the cost of writing the stacked frames.
    stacked_conv2d: bool = False
    # RMS norm + SiLU as one compiled kernel (torch.compile, one graph per channel count) that rounds every
    # step as eager does; only the norm's summation order differs.
    fused_norm: bool = False


@dataclass(frozen=True)
class VAEConfig:
    base_channels: int = 96
    latent_channels: int = 16
    channel_multipliers: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temporal_downsample: tuple[bool, ...] = (False, True, True)  # per encoder level but the last
    latent_mean: tuple[float, ...] = WAN21_LATENT_MEAN
    latent_std: tuple[float, ...] = WAN21_LATENT_STD
    # Pixel frames per encoder chunk after the first frame. Any multiple of the temporal compression gives
    # the same latents; Wan2.1 and diffusers use 4, Predict2.5's 2B training config 16 (more memory).
    encode_chunk_frames: int = 4

    @classmethod
    def preset(cls, name: str) -> VAEConfig:
        if name == "wan2.1":
            return cls()
        if name == "tiny":
            return cls(base_channels=8)
        raise ValueError(f"unknown VAE preset {name!r}; expected 'wan2.1' or 'tiny'")

    @property
    def spatial_compression(self) -> int:
        return 2 ** (len(self.channel_multipliers) - 1)

    @property
    def temporal_compression(self) -> int:
        return 2 ** sum(self.temporal_downsample)

    def __post_init__(self) -> None:
        if len(self.temporal_downsample) != len(self.channel_multipliers) - 1:
            raise ValueError("temporal_downsample needs one entry per encoder level but the last")
        if not len(self.latent_mean) == len(self.latent_std) == self.latent_channels:
            raise ValueError(f"latent_mean and latent_std need {self.latent_channels} values each")
        if self.encode_chunk_frames % self.temporal_compression:
            raise ValueError(f"encode_chunk_frames must be a multiple of {self.temporal_compression}")


class RMSNorm(nn.Module):
    """RMS norm over the channel dim (dim 1) with a per-channel gain.

    Rounds as the official `RMS_norm` does (`F.normalize(x) * scale * gamma`, each step in the input dtype), so
    a bf16 VAE gives the official bf16 pixels bit for bit (golden `end_to_end`); the two products run in place.
    """

    def __init__(self, channels: int, spatial_dims: int):
        super().__init__()
        self.scale = channels**0.5
        self.gamma = nn.Parameter(torch.ones(channels, *(1,) * spatial_dims))
        self.fused = False  # `DecodeKernels.fused_norm`: `norm_silu` runs as one compiled kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1).mul_(self.scale).mul_(self.gamma)


def norm_silu(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """SiLU(norm(x)) of an `RMSNorm` on (B, C, T, H, W). A `fused` norm runs both as one compiled kernel over
    (pixels, C) rows: a channels-last x is read once and the result written once, instead of six passes."""
    norm = cast(RMSNorm, norm)
    if not norm.fused or torch.compiler.is_compiling():  # inside `compile_decoder`'s graphs, fused anyway
        return F.silu(norm(x), inplace=True)
    b, c, t, h, w = x.shape
    rows = rearrange(x, "b c t h w -> (b t h w) c").contiguous()  # a view of a channels-last x
    torch._dynamo.maybe_mark_dynamic(rows, 0)
    out = _fused_rms_norm_silu()(rows, norm.gamma.view(c), norm.scale)
    return rearrange(out, "(b t h w) c -> b c t h w", b=b, t=t, h=h)  # channels-last strides


def _rms_norm_silu_rows(rows: torch.Tensor, gamma: torch.Tensor, scale: float) -> torch.Tensor:
    """`RMSNorm` then SiLU on (pixels, C) rows, each step as the eager modules compute it."""
    return F.silu(F.normalize(rows, dim=1) * scale * gamma)


@functools.cache
def _fused_rms_norm_silu() -> Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]:
    # One graph per channel count, the pixel count dynamic; the inductor rounds after every step as eager does.
    return torch.compile(_rms_norm_silu_rows, dynamic=False, options={"emulate_precision_casts": True})


def stack_frames(x: torch.Tensor, kt: int) -> torch.Tensor:
    """(B, C, T + kt - 1, H, W) -> (B, kt*C, T, H, W): output frame t holds input frames t .. t + kt - 1 along
    channels (channel k*C + c is channel c of frame t + k). Keeps x's memory format."""
    t = x.shape[2] - kt + 1
    return torch.cat([x[:, :, k : k + t] for k in range(kt)], dim=1)


def conv3d_as_conv2d(
    stacked: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: tuple[int, int]
) -> torch.Tensor:
    """A 3D conv (stride 1, no temporal padding, `weight` (O, C, kt, kh, kw), spatial `padding`) of the frames
    that `stack_frames` stacked, as one 2D conv per output frame with an (O, kt*C, kh, kw) kernel: the same
    sums, accumulated in another order. (B, kt*C, T, H, W) -> (B, O, T, H', W')."""
    weight = rearrange(weight, "o c kt kh kw -> o (kt c) kh kw")
    return per_frame(lambda frames: F.conv2d(frames, weight, bias, padding=padding), stacked)


class CausalConv3d(nn.Conv3d):
    """3D convolution that only looks back in time: pads k_t - 1 frames in front, zeros at the start of
    a stream and the previous chunk's last frames after it; pads space symmetrically."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int, int]):
        kt, kh, kw = (kernel_size,) * 3 if isinstance(kernel_size, int) else kernel_size
        super().__init__(in_channels, out_channels, (kt, kh, kw), padding=(0, kh // 2, kw // 2))
        self.past_frames = kt - 1
        self.stacked_conv2d = False  # `DecodeKernels.stacked_conv2d`

    def forward(self, x: torch.Tensor, cache: StreamCache) -> torch.Tensor:  # type: ignore[override]  # + cache
        past = cache.get(self)
        if past is None:
            past = self.zero_past(x)
        x = torch.cat([past, x], dim=2)  # (B, C, past_frames + T, H, W)
        cache[self] = x[:, :, -self.past_frames :].clone()
        if self.stacked_conv2d:
            padding = cast(tuple[int, int], self.padding[1:])
            return conv3d_as_conv2d(stack_frames(x, self.past_frames + 1), self.weight, self.bias, padding)
        return super().forward(x)

    def zero_past(self, x: torch.Tensor) -> torch.Tensor:
        """The past a stream starts with: `past_frames` zero frames shaped and laid out as x's."""
        b, c, _, h, w = x.shape
        shape = (b, c, self.past_frames, h, w)
        return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=memory_format_of(x)).zero_()


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    channels_last = x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous()
    return torch.channels_last_3d if channels_last else torch.contiguous_format


def interleave_frames(x: torch.Tensor) -> torch.Tensor:
    """(B, 2C, T, H, W) -> (B, C, 2T, H, W): frame 2t is channels [:C] of frame t, frame 2t + 1 channels [C:].
    Keeps x's memory format."""
    even, odd = x.chunk(2, dim=1)
    b, c, t, h, w = even.shape
    out = torch.empty((b, c, 2 * t, h, w), dtype=x.dtype, device=x.device, memory_format=memory_format_of(x))
    out[:, :, 0::2] = even
    out[:, :, 1::2] = odd
    return out


def per_frame(layer: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Applies a 2D layer to every frame of (B, C, T, H, W)."""
    t = x.shape[2]
    y = layer(rearrange(x, "b c t h w -> (b t) c h w"))
    return rearrange(y, "(b t) c h w -> b c t h w", t=t)


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        # The official layout (indices are checkpoint names): norm, SiLU, conv, norm, SiLU, dropout, conv.
        self.residual = nn.Sequential(
            RMSNorm(in_channels, spatial_dims=3),
            nn.SiLU(),
            CausalConv3d(in_channels, out_channels, 3),
            RMSNorm(out_channels, spatial_dims=3),
            nn.SiLU(),
            nn.Identity(),
            CausalConv3d(out_channels, out_channels, 3),
        )
        self.shortcut = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, cache: StreamCache) -> torch.Tensor:
        norm1, _, conv1, norm2, _, _, conv2 = self.residual
        h = conv1(norm_silu(norm1, x), cache)
        h = conv2(norm_silu(norm2, h), cache)
        return h + self.shortcut(x)


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels of each frame."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = RMSNorm(channels, spatial_dims=2)
        self.to_qkv = nn.Conv2d(channels, channels * 3, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, cache: StreamCache) -> torch.Tensor:
        """`cache` is unused (attention stays within a frame); it keeps the layer interface uniform."""
        b, c, t, h, w = x.shape
        frames = rearrange(x, "b c t h w -> (b t) c h w")
        # (B*T, H*W, 1, 3C), made contiguous and attended with PyTorch's own kernel choice as the official
        # block does: the layout and the kernel both change the bf16 rounding (golden `end_to_end`)
        qkv = rearrange(self.to_qkv(self.norm(frames)), "n c h w -> n (h w) 1 c").contiguous()
        q, k, v = qkv.chunk(3, dim=-1)
        out = attention(q, k, v, backend="pytorch")  # (B*T, H*W, 1, C)
        out = self.proj(rearrange(out, "n (h w) 1 c -> n c h w", h=h))
        return x + rearrange(out, "(b t) c h w -> b c t h w", t=t)


class Downsample(nn.Module):
    """Halves H and W per frame; with `temporal`, also halves T causally (the stream's first frame
    passes through, later frames pair with their predecessor)."""

    def __init__(self, channels: int, temporal: bool):
        super().__init__()
        self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(channels, channels, 3, stride=2))
        self.time_conv = nn.Conv3d(channels, channels, (3, 1, 1), stride=(2, 1, 1)) if temporal else None

    def forward(self, x: torch.Tensor, cache: StreamCache) -> torch.Tensor:
        x = per_frame(self.resample, x)  # (B, C, T, H/2, W/2)
        if self.time_conv is None:
            return x
        previous = cache.get(self)
        cache[self] = x[:, :, -1:].clone()
        if previous is None:
            return x
        return self.time_conv(torch.cat([previous, x], dim=2))  # (B, C, T/2, H/2, W/2)


class Upsample(nn.Module):
    """Doubles H and W per frame (and halves C); with `temporal`, also doubles T causally (the stream's
    first frame stays one frame, later frames become two)."""

    def __init__(self, channels: int, temporal: bool):
        super().__init__()
        self.resample = nn.Sequential(
            nn.Upsample(scale_factor=2.0, mode="nearest-exact"), nn.Conv2d(channels, channels // 2, 3, padding=1)
        )
        self.time_conv = CausalConv3d(channels, channels * 2, (3, 1, 1)) if temporal else None

    def forward(self, x: torch.Tensor, cache: StreamCache) -> torch.Tensor:
        if self.time_conv is not None:
            if self.time_conv in cache:
                x = interleave_frames(self.time_conv(x, cache))  # (B, 2C, T, H, W) -> (B, C, 2T, H, W)
            else:  # the stream's first frame stays one frame; the next chunk's frames follow zeros
                cache[self.time_conv] = self.time_conv.zero_past(x)
        return per_frame(self.resample, x)  # (B, C/2, T', 2H, 2W)


def _middle(channels: int) -> nn.ModuleList:
    return nn.ModuleList(
        [ResidualBlock(channels, channels), AttentionBlock(channels), ResidualBlock(channels, channels)]
    )


def _head(in_channels: int, out_channels: int) -> nn.Sequential:
    # The official layout: norm, SiLU, conv.
    return nn.Sequential(RMSNorm(in_channels, spatial_dims=3), nn.SiLU(), CausalConv3d(in_channels, out_channels, 3))


def _apply_head(head: nn.Sequential, x: torch.Tensor, cache: StreamCache) -> torch.Tensor:
    norm, _, conv = head
    return conv(norm_silu(norm, x), cache)


class Encoder(nn.Module):
    """Pixels (B, 3, T, H, W) -> latent-distribution parameters (B, 2 * latent, T', H/8, W/8) per chunk."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        channels = [cfg.base_channels * m for m in (1, *cfg.channel_multipliers)]
        last_level = len(cfg.channel_multipliers) - 1
        self.conv1 = CausalConv3d(3, channels[0], 3)
        layers: list[nn.Module] = []
        for level, (in_ch, out_ch) in enumerate(pairwise(channels)):
            for _ in range(cfg.num_res_blocks):
                layers.append(ResidualBlock(in_ch, out_ch))
                in_ch = out_ch
            if level != last_level:
                layers.append(Downsample(out_ch, temporal=cfg.temporal_downsample[level]))
        self.downsamples = nn.ModuleList(layers)
        self.middle = _middle(channels[-1])
        self.head = _head(channels[-1], cfg.latent_channels * 2)

    def forward(self, x: torch.Tensor, cache: StreamCache) -> torch.Tensor:
        x = self.conv1(x, cache)
        for layer in [*self.downsamples, *self.middle]:
            x = layer(x, cache)
        return _apply_head(self.head, x, cache)


class Decoder(nn.Module):
    """Latents (B, latent, T, h, w) -> pixels (B, 3, T', 8h, 8w) per chunk.

    Runs in two stages. The trunk (conv1, the middle, the first level and its upsampler) works on whole
    frames: the middle's attention sees every pixel. The branch (the remaining levels and the head) is
    spatially local: an output pixel depends only on trunk-output pixels within `branch_margin` of it, so
    the branch may run on a column strip of the trunk's output widened by that margin (`WanVAE.decode`'s
    `columns`) and give the same pixels.
    """

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        multipliers = cfg.channel_multipliers
        channels = [cfg.base_channels * m for m in (multipliers[-1], *reversed(multipliers))]
        temporal_upsample = tuple(reversed(cfg.temporal_downsample))
        last_level = len(multipliers) - 1
        self.conv1 = CausalConv3d(cfg.latent_channels, channels[0], 3)
        self.middle = _middle(channels[0])
        layers: list[nn.Module] = []
        for level, (in_ch, out_ch) in enumerate(pairwise(channels)):
            if level > 0:
                in_ch //= 2  # each Upsample halves the channels
            for _ in range(cfg.num_res_blocks + 1):
                layers.append(ResidualBlock(in_ch, out_ch))
                in_ch = out_ch
            if level != last_level:
                layers.append(Upsample(out_ch, temporal=temporal_upsample[level]))
        self.upsamples = nn.ModuleList(layers)
        self.head = _head(channels[-1], 3)
        self.trunk_layers = cfg.num_res_blocks + 2  # the first level's blocks and its upsampler
        self.trunk_scale = 2  # trunk-output pixels per latent pixel
        self.branch_margin = self._branch_margin()

    def trunk(self, x: torch.Tensor, cache: StreamCache) -> torch.Tensor:
        x = self.conv1(x, cache)
        for layer in [*self.middle, *self.upsamples[: self.trunk_layers]]:
            x = layer(x, cache)
        return x  # (B, C, T', 2h, 2w)

    def branch(self, x: torch.Tensor, cache: StreamCache) -> torch.Tensor:
        for layer in self.upsamples[self.trunk_layers :]:
            x = layer(x, cache)
        return _apply_head(self.head, x, cache)  # (B, 3, T', 4H, 4W) for a (B, C, T', H, W) input

    def forward(self, x: torch.Tensor, cache: StreamCache) -> torch.Tensor:
        return self.branch(self.trunk(x, cache), cache)

    def _branch_margin(self) -> int:
        """How far (in trunk-output pixels) the branch looks sideways: each 3x3 conv adds one pixel at
        its own resolution."""
        margin, scale = 0.0, 1
        for layer in self.upsamples[self.trunk_layers :]:
            if isinstance(layer, ResidualBlock):
                margin += 2 / scale
            elif isinstance(layer, Upsample):
                scale *= 2
                margin += 1 / scale
        margin += 1 / scale  # the head's conv
        return math.ceil(margin)


class WanVAE(nn.Module):
    """encode: video (B, 3, 1 + 4k, H, W) in [-1, 1] -> normalized latents (B, 16, 1 + k, H/8, W/8);
    decode: the reverse, clamped to [-1, 1]. Both run in the module's dtype and return the input's dtype."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.conv1 = nn.Conv3d(cfg.latent_channels * 2, cfg.latent_channels * 2, 1)  # -> (mu, log_var)
        self.conv2 = nn.Conv3d(cfg.latent_channels, cfg.latent_channels, 1)
        self.decoder = Decoder(cfg)
        # channels_last_3d keeps every conv (3D and per-frame 2D) in the channels-last layout fast kernels use.
        self.memory_format = torch.channels_last_3d
        self.decode_kernels = DecodeKernels()

    @property
    def dtype(self) -> torch.dtype:
        return self.conv2.weight.dtype

    @property
    def encoding_modules(self) -> tuple[nn.Module, ...]:
        """The modules `encode` runs (what an offloader brings to the GPU for it)."""
        return self.encoder, self.conv1

    @property
    def decoding_modules(self) -> tuple[nn.Module, ...]:
        """The modules `decode` runs."""
        return self.conv2, self.decoder

    def use_decode_kernels(self, kernels: DecodeKernels) -> WanVAE:
        """Sets how `decode` computes (see `DecodeKernels`); returns self."""
        self.decode_kernels = kernels
        for module in self.decoder.modules():
            if isinstance(module, CausalConv3d):
                module.stacked_conv2d = kernels.stacked_conv2d
            elif isinstance(module, RMSNorm):
                module.fused = kernels.fused_norm
        return self

    def compile_decoder(self, max_autotune: bool = False, backend: str | Callable[..., Any] = "inductor") -> WanVAE:
        """torch.compiles the per-latent-frame decode (the decoder's trunk and branch; static shapes, one graph
        for a stream's first frame and one for the rest), fusing each norm, SiLU, causal padding and residual
        add around the convs. The inductor rounds after every step as eager does; the convs and the attention
        keep their kernels unless `max_autotune` (which also times Triton conv kernels: a much longer first
        decode). Compiles on the first decode of each shape; returns self."""
        inductor = {"emulate_precision_casts": True, "max_autotune": max_autotune}
        options: dict[str, Any] | None = inductor if backend == "inductor" else None
        for stage in ("trunk", "branch"):
            step = getattr(self.decoder, stage)
            setattr(self.decoder, stage, torch.compile(step, dynamic=False, backend=backend, options=options))
        return self

    def latent_stats(self, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, 1 / std), each (1, C, 1, 1, 1) in the VAE's dtype, the reciprocal computed in that dtype."""
        shape = (1, self.cfg.latent_channels, 1, 1, 1)
        mean = torch.tensor(self.cfg.latent_mean, dtype=self.dtype, device=device).view(shape)
        inv_std = 1.0 / torch.tensor(self.cfg.latent_std, dtype=self.dtype, device=device).view(shape)
        return mean, inv_std

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        self._check_video(video)
        x = video.to(self.dtype).contiguous(memory_format=self.memory_format)
        cache: StreamCache = {}
        chunks = [x[:, :, :1]]
        if x.shape[2] > 1:
            chunks += x[:, :, 1:].split(self.cfg.encode_chunk_frames, dim=2)
        features = torch.cat([self.encoder(chunk, cache) for chunk in chunks], dim=2)  # (B, 2Z, 1 + k, h, w)
        mu, _ = self.conv1(features).chunk(2, dim=1)
        mean, inv_std = self.latent_stats(mu.device)
        return ((mu - mean) * inv_std).to(video.dtype).contiguous()  # in the VAE's dtype, as official

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, columns: slice | None = None) -> torch.Tensor:
        """`columns` (a range of latent columns) decodes only the pixel columns 8 * start .. 8 * stop of
        the video, the same values a whole decode gives there: for spreading a decode over GPUs by width,
        or bounding its memory."""
        self._check_latents(latents)
        b, _, t, h, w = latents.shape
        start, stop = self._column_range(columns, w)
        mean, inv_std = self.latent_stats(latents.device)
        z = (latents.to(self.dtype) / inv_std + mean).contiguous(memory_format=self.memory_format)  # as official
        z = self.conv2(z)
        # The branch reads the trunk's output over the requested columns plus its margin (clipped to the frame).
        f, margin = self.decoder.trunk_scale, self.decoder.branch_margin
        left, right = max(start * f - margin, 0), min(stop * f + margin, w * f)
        s, r = self.cfg.spatial_compression, self.cfg.temporal_compression
        offset = (start * f - left) * (s // f)  # output columns decoded for the left margin
        keep = slice(offset, offset + (stop - start) * s)
        video = latents.new_empty(b, 3, 1 + r * (t - 1), h * s, (stop - start) * s)
        trunk_cache: StreamCache = {}
        branch_cache: StreamCache = {}
        first = 0
        with cudnn_benchmark(self.decode_kernels.cudnn_benchmark):
            for i in range(t):
                latent = z[:, :, i : i + 1].clone(memory_format=self.memory_format)  # strides free of t
                features = self.decoder.trunk(latent, trunk_cache)[..., left:right]
                frames = self.decoder.branch(features, branch_cache)[..., keep]  # (B, 3, 1 or r, H, W')
                video[:, :, first : first + frames.shape[2]] = frames.clamp(-1.0, 1.0)
                first += frames.shape[2]
        return video

    @staticmethod
    def _column_range(columns: slice | None, width: int) -> tuple[int, int]:
        if columns is None:
            return 0, width
        start, stop, step = columns.indices(width)
        if step != 1 or start >= stop:
            raise ValueError(f"VAE decode columns must be a non-empty step-1 slice of 0..{width}, got {columns}")
        return start, stop

    def _check_video(self, video: torch.Tensor) -> None:
        s, r = self.cfg.spatial_compression, self.cfg.temporal_compression
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"VAE encode expects video (B, 3, T, H, W), got shape {tuple(video.shape)}")
        _, _, t, h, w = video.shape
        if (t - 1) % r:
            raise ValueError(f"VAE encode needs 1 + {r}k frames, got T={t}")
        if h % s or w % s:
            raise ValueError(f"VAE encode needs H and W divisible by {s}, got {h}x{w}")

    def _check_latents(self, latents: torch.Tensor) -> None:
        if latents.ndim != 5 or latents.shape[1] != self.cfg.latent_channels:
            raise ValueError(
                f"VAE decode expects latents (B, {self.cfg.latent_channels}, T, H, W), got {tuple(latents.shape)}"
            )


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool) -> Iterator[None]:
    """Turns `torch.backends.cudnn.benchmark` on inside the block when `enabled`; otherwise leaves it as set."""
    if not enabled:
        yield
        return
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


_RESIDUAL_RENAMES = {"residual.0.": "norm1.", "residual.2.": "conv1.", "residual.3.": "norm2.",
                     "residual.6.": "conv2.", "shortcut.": "conv_shortcut."}  # fmt: skip
_PART_RENAMES = {"conv1.": "conv_in.", "head.0.": "norm_out.", "head.2.": "conv_out.",
                 "middle.0.": "mid_block.resnets.0.", "middle.1.": "mid_block.attentions.0.",
                 "middle.2.": "mid_block.resnets.1."}  # fmt: skip


def diffusers_key(key: str, cfg: VAEConfig) -> str:
    """Maps an official Wan2.1 VAE parameter name to diffusers' `AutoencoderKLWan` name.

    The key table: top-level conv1/conv2 -> quant_conv/post_quant_conv; in encoder and decoder conv1 ->
    conv_in, head.0/head.2 -> norm_out/conv_out, middle.0/1/2 -> mid_block.resnets.0/attentions.0/resnets.1;
    encoder.downsamples.i -> encoder.down_blocks.i; decoder.upsamples.i -> decoder.up_blocks.L.resnets.j or
    decoder.up_blocks.L.upsamplers.0 (each level holds num_res_blocks + 1 residual blocks and an upsampler);
    inside residual blocks residual.0/2/3/6 -> norm1/conv1/norm2/conv2 and shortcut -> conv_shortcut.
    """
    top = {"conv1.": "quant_conv.", "conv2.": "post_quant_conv."}
    for old, new in top.items():
        if key.startswith(old):
            return new + key[len(old) :]
    part, rest = key.split(".", 1)
    if m := re.match(r"downsamples\.(\d+)\.(.*)", rest):
        rest = f"down_blocks.{m[1]}.{m[2]}"
    elif m := re.match(r"upsamples\.(\d+)\.(.*)", rest):
        level, index = divmod(int(m[1]), cfg.num_res_blocks + 2)
        block = "upsamplers.0" if index == cfg.num_res_blocks + 1 else f"resnets.{index}"
        rest = f"up_blocks.{level}.{block}.{m[2]}"
    else:
        for old, new in _PART_RENAMES.items():
            if rest.startswith(old):
                rest = new + rest[len(old) :]
                break
    for old, new in _RESIDUAL_RENAMES.items():
        rest = re.sub(rf"(?<=\.){re.escape(old)}", new, rest, count=1)
    return f"{part}.{rest}"


def read_vae_state_dict(
    source: str | os.PathLike | Mapping[str, torch.Tensor], cfg: VAEConfig
) -> dict[str, torch.Tensor]:
    """An official or diffusers-layout VAE checkpoint as an official-layout state dict.

    `source` is a state dict, a `.pth`/`.safetensors` file, or a diffusers `vae/` folder (holding
    `diffusion_pytorch_model.safetensors`). Diffusers layout is recognized by its `quant_conv` key.
    """
    if isinstance(source, Mapping):
        state = dict(source)
    elif Path(source).is_dir():
        state = read_state_dict(Path(source) / "diffusion_pytorch_model.safetensors")
    else:
        state = read_state_dict(source)
    if "quant_conv.weight" in state:
        with torch.device("meta"):
            official_keys = WanVAE(cfg).state_dict().keys()
        to_official = {diffusers_key(k, cfg): k for k in official_keys}
        state = rename_keys(state, lambda k: to_official.get(k, k))
    return state


def load_vae(
    source: str | os.PathLike | Mapping[str, torch.Tensor],
    cfg: VAEConfig | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.bfloat16,
) -> WanVAE:
    """Builds the VAE on `meta`, assigns the checkpoint's tensors, moves and casts: the official
    `Wan2.1_VAE.pth` (Predict2.5's `tokenizer.pth`) or diffusers-layout weights (see `read_vae_state_dict`).

    Raises CheckpointMismatchError listing missing/unexpected keys and shape mismatches.
    """
    cfg = cfg or VAEConfig.preset("wan2.1")
    state = read_vae_state_dict(source, cfg)
    with torch.device("meta"):
        vae = WanVAE(cfg)
    load_into(vae, state, what="VAE state dict" if isinstance(source, Mapping) else f"VAE checkpoint {source}")
    return vae.to(device=device, dtype=dtype).eval().requires_grad_(False)
