"""One DiT denoising forward, ours vs diffusers' CosmosTransformer3DModel, beside the floor.

Both models get the same random weights (through our key table) and the same inputs, in one process.
The floor is what the op count costs at the ceilings measured here, at the model's own shapes: every
GEMM of a block timed alone (`ceiling_matmul`), self- and cross-attention timed alone
(`ceiling_attention`); norms, RoPE and the other elementwise work count as free.

GPU (720p, 93 frames -> 24 x 88 x 160 latents = 84,480 tokens; bf16; batch 1 and cond+uncond 2; `--model`
picks the net, default the 2B post-trained one):
    python -m bench.dit_step --device cuda --compile --out dit_step.jsonl
CPU check (tiny config, small shapes):
    python -m bench.dit_step --device cpu --smoke
"""

from __future__ import annotations

import argparse
import contextlib

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from bench.common import Recorder, add_common_args, tflops, time_ms
from cosmos_ray.core.dtypes import default_dtype_name
from cosmos_ray.core.options import ATTENTION_BACKENDS
from cosmos_ray.core.registry import DEFAULT_MODEL, MODEL_NAMES, get_model
from cosmos_ray.models.attention import CUDA_PRIORITY, attention
from cosmos_ray.models.dit import DiTConfig, MiniTrainDiT
from tests.oracles import diffusers_dit


def block_gemms(cfg: DiTConfig, tokens: int, text_len: int) -> list[tuple[str, int, int, int, int]]:
    """(name, M, K, N, count) of the GEMMs of one block for one sample."""
    d, hidden = cfg.model_channels, int(cfg.model_channels * cfg.mlp_ratio)
    return [
        ("self_attn qkv+out", tokens, d, d, 4),
        ("cross_attn q+out", tokens, d, d, 2),
        ("cross_attn k+v", text_len, cfg.crossattn_emb_channels, d, 2),
        ("mlp layer1", tokens, d, hidden, 1),
        ("mlp layer2", tokens, hidden, d, 1),
    ]


def forward_flops(cfg: DiTConfig, tokens: int, text_len: int) -> dict[str, float]:
    """Multiply-add FLOPs (x2) of one forward for one sample, by kind."""
    d, patch_out = cfg.model_channels, cfg.patch_spatial**2 * cfg.patch_temporal * cfg.out_channels
    block_linear = sum(2 * m * k * n * count for _, m, k, n, count in block_gemms(cfg, tokens, text_len))
    other_linear = 2 * (
        tokens * cfg.patch_in_features * d
        + tokens * d * patch_out
        + text_len * cfg.crossattn_proj_in_channels * cfg.crossattn_emb_channels
    )
    return {
        "linear": cfg.num_blocks * block_linear + other_linear,
        "self_attention": cfg.num_blocks * 4 * tokens * tokens * d,
        "cross_attention": cfg.num_blocks * 4 * tokens * text_len * d,
    }


def measure_floor(
    cfg: DiTConfig,
    tokens: int,
    text_len: int,
    batch: int,
    dtype: torch.dtype,
    backend: str,
    device: torch.device,
    recorder: Recorder,
    warmup: int,
    iters: int,
) -> float:
    """Times each GEMM and attention of a block alone; returns num_blocks x their sum, in ms."""
    block_ms = 0.0
    for name, m, k, n, count in block_gemms(cfg, tokens, text_len):
        x = torch.randn(batch * m, k, device=device, dtype=dtype)
        w = torch.randn(n, k, device=device, dtype=dtype)
        ms = time_ms(lambda: F.linear(x, w), device, warmup, iters)
        block_ms += count * ms
        recorder.emit(
            "ceiling_matmul",
            op=name,
            shape=[batch * m, k, n],
            ms=round(ms, 4),
            tflops=round(tflops(2 * batch * m * k * n, ms), 1),
        )
    heads = cfg.num_heads
    q = torch.randn(batch, tokens, heads, cfg.head_dim, device=device, dtype=dtype)
    context = torch.randn(batch, text_len, heads, cfg.head_dim, device=device, dtype=dtype)
    for name, kv, flops in (
        ("self", q, 4 * tokens * tokens * cfg.model_channels),
        ("cross", context, 4 * tokens * text_len * cfg.model_channels),
    ):
        ms = time_ms(lambda: attention(q, kv, kv, backend=backend), device, warmup, iters)
        block_ms += ms
        recorder.emit(
            "ceiling_attention",
            op=name,
            backend=backend,
            q_shape=list(q.shape),
            kv_shape=list(kv.shape),
            ms=round(ms, 4),
            tflops=round(tflops(batch * flops, ms), 1),
        )
    return cfg.num_blocks * block_ms


def make_inputs(
    cfg: DiTConfig, batch: int, latent: tuple[int, int, int], text_len: int, device: torch.device, dtype: torch.dtype
) -> dict:
    g = torch.Generator(device).manual_seed(batch)
    t, h, w = latent
    return dict(
        x=torch.randn(batch, cfg.in_channels, t, h, w, device=device, generator=g, dtype=dtype),
        timesteps=torch.full((batch,), 500.0, device=device),
        crossattn_emb=torch.randn(
            batch, text_len, cfg.crossattn_proj_in_channels, device=device, generator=g, dtype=dtype
        ),
        condition_mask=torch.zeros(batch, 1, t, h, w, device=device, dtype=dtype),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, warmup=1, iters=3)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 2], help="1: one pass; 2: cond + uncond")
    parser.add_argument("--latent", type=int, nargs=3, default=[24, 88, 160], metavar=("T", "H", "W"))
    parser.add_argument("--text-len", type=int, default=512)
    parser.add_argument(
        "--attention-backend",
        choices=ATTENTION_BACKENDS,
        default="auto",
        help="our attention kernel (auto: cuDNN first on CUDA)",
    )
    parser.add_argument("--compile", action="store_true", help="also time ours with torch.compile'd blocks")
    parser.add_argument("--no-diffusers", action="store_true")
    parser.add_argument("--no-floor", action="store_true")
    parser.add_argument("--model", choices=MODEL_NAMES, default=DEFAULT_MODEL, help="official model whose net runs")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    model_recipe = get_model(args.model)
    cfg = DiTConfig.of_model(model_recipe, "tiny" if args.smoke else None)
    latent = (3, 8, 12) if args.smoke else tuple(args.latent)
    text_len = 16 if args.smoke else args.text_len
    dtype = getattr(torch, default_dtype_name(device.type))
    tokens = latent[0] * latent[1] * latent[2] // (cfg.patch_temporal * cfg.patch_spatial**2)
    flops = forward_flops(cfg, tokens, text_len)
    recorder = Recorder(device, args.out)
    common = dict(
        model=args.model,
        config="tiny" if args.smoke else model_recipe.size,
        latent=list(latent),
        tokens=tokens,
        text_len=text_len,
        dtype=str(dtype).removeprefix("torch."),
    )

    torch.manual_seed(0)
    with torch.device(device):
        model = MiniTrainDiT(cfg, attention_backend=args.attention_backend)
    twin = None if args.no_diffusers else diffusers_dit(model).to(dtype)
    model.cast(dtype).eval().requires_grad_(False)

    def emit(impl: str, batch: int, ms: float, **extra) -> None:
        recorder.emit(
            "dit_forward",
            impl=impl,
            batch=batch,
            ms=round(ms, 2),
            tflops=round(tflops(batch * sum(flops.values()), ms), 1),
            **common,
            **extra,
        )

    def run_diffusers(inputs: dict, sdpa_priority: list[SDPBackend] | None = None) -> torch.Tensor:
        assert twin is not None  # only called without --no-diffusers
        h, w = inputs["x"].shape[-2:]
        with sdpa_kernel(sdpa_priority, set_priority=True) if sdpa_priority else contextlib.nullcontext():
            return twin(
                inputs["x"],
                inputs["timesteps"] * cfg.timestep_scale,
                inputs["crossattn_emb"],
                condition_mask=inputs["condition_mask"],
                padding_mask=inputs["x"].new_zeros(1, 1, h, w),
                return_dict=False,
            )[0]

    with torch.no_grad():
        for batch in args.batch:
            inputs = make_inputs(cfg, batch, latent, text_len, device, dtype)
            emit(
                "ours",
                batch,
                time_ms(lambda: model(**inputs), device, args.warmup, args.iters),
                backend=args.attention_backend,
            )
            if twin is not None:
                ours, reference = model(**inputs).float(), run_diffusers(inputs).float()
                difference = ((ours - reference).abs().max() / reference.abs().max()).item()
                emit(
                    "diffusers",
                    batch,
                    time_ms(lambda: run_diffusers(inputs), device, args.warmup, args.iters),
                    backend="sdpa default",
                    max_rel_diff_vs_ours=float(f"{difference:.3g}"),
                )
                if device.type == "cuda":
                    emit(
                        "diffusers",
                        batch,
                        time_ms(lambda: run_diffusers(inputs, CUDA_PRIORITY), device, args.warmup, args.iters),
                        backend="sdpa cuDNN first",
                    )
            if not args.no_floor:
                floor_ms = measure_floor(
                    cfg,
                    tokens,
                    text_len,
                    batch,
                    dtype,
                    args.attention_backend,
                    device,
                    recorder,
                    args.warmup,
                    args.iters,
                )
                recorder.emit(
                    "dit_floor",
                    batch=batch,
                    ms=round(floor_ms, 2),
                    tflops=round(tflops(batch * sum(flops.values()), floor_ms), 1),
                    flops={k: batch * v for k, v in flops.items()},
                    **common,
                )
        if args.compile:
            model.compile_blocks(dynamic=False)
            for batch in args.batch:
                inputs = make_inputs(cfg, batch, latent, text_len, device, dtype)
                emit(
                    "ours+compile",
                    batch,
                    time_ms(lambda: model(**inputs), device, args.warmup + 1, args.iters),
                    backend=args.attention_backend,
                )


if __name__ == "__main__":
    main()
