"""Whole generations: our Generator vs diffusers' Cosmos2_5_PredictBasePipeline, same random weights.

Both get the 2B DiT and Wan2.1 VAE with the same random weights (through our key tables), the same random
prompt / negative-prompt embeddings (the text encoder is benchmarked by bench.text_encoder), the same
initial noise and the same conditioning pixels. Each run reports its stages (conditioning encode,
sampling, decode), milliseconds per model evaluation, DiT TFLOP/s over the sampling stage, and a projection
of the official 35-step run from the per-evaluation time.

GPU (2B, 720p: 93 frames at 704x1280, bf16, guidance 7; one type and 4 steps fit a 10-minute slot):
    python -m bench.generator --device cuda --types text2world --steps 4 --out generate.jsonl
    python -m bench.generator --device cuda --types video2world --steps 35 --impl ours
CPU check (tiny config, 64x96, 9 frames):
    python -m bench.generator --device cpu --smoke
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import torch
from diffusers.pipelines.cosmos.pipeline_cosmos2_5_predict import Cosmos2_5_PredictBasePipeline

from bench.common import Recorder, tflops
from bench.dit_step import forward_flops
from cosmos_ray.conditioning import read_conditioning
from cosmos_ray.core.dtypes import default_dtype_name
from cosmos_ray.core.presets import RANDOM_PRESETS
from cosmos_ray.core.registry import get_model
from cosmos_ray.core.spec import INFERENCE_TYPES, GenerationSpec
from cosmos_ray.generator import Generator, to_uint8_frames
from cosmos_ray.loading import ModelInfo
from cosmos_ray.models.dit import DiTConfig, MiniTrainDiT
from cosmos_ray.models.text import MAX_LENGTH, TextEncoder
from cosmos_ray.models.vae import VAEConfig, WanVAE
from cosmos_ray.sampling import get_sampler, initial_noise
from tests.oracles import diffusers_pipeline

INPUTS = Path(__file__).resolve().parent.parent / "examples" / "media"
OFFICIAL_STEPS = 35


class FixedTextEncoder:
    """Stands in for the text encoder: one fixed random embedding per prompt."""

    def __init__(self, embeddings: dict[str, torch.Tensor]):
        self.embeddings = embeddings

    def encode(self, prompts: list[str]) -> torch.Tensor:
        return torch.stack([self.embeddings[prompt] for prompt in prompts])


def synced_clock(device: torch.device) -> float:
    """perf_counter() once the device has finished its queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def run_diffusers(
    pipeline: Cosmos2_5_PredictBasePipeline,
    generator: Generator,
    spec: GenerationSpec,
    conditioning: torch.Tensor | None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """One pipeline call, with stage times in ms estimated from its step-end callbacks: the time between the
    first and the last step end gives the per-evaluation time; what precedes the first evaluation is the
    prompt/conditioning preparation; what follows the last is the decode."""
    height, width = generator.resolution(spec)
    num_frames = generator.num_frames(spec)
    latent_shape = (1, 16, (num_frames - 1) // 4 + 1, height // 8, width // 8)
    step_ends = []

    def on_step_end(pipe, step, timestep, callback_kwargs):
        step_ends.append(synced_clock(generator.device))
        return {}

    start = synced_clock(generator.device)
    video = pipeline(
        video=conditioning,
        prompt_embeds=generator.text_encoder.encode([spec.prompt]),
        negative_prompt_embeds=generator.text_encoder.encode([spec.negative_prompt]),
        height=height,
        width=width,
        num_frames=num_frames,
        num_inference_steps=spec.num_steps + 1,
        guidance_scale=spec.guidance,
        latents=initial_noise(spec.seed, latent_shape, generator.device),
        output_type="pt",
        num_latent_conditional_frames=max(spec.num_conditional_frames or 0, 1),
        callback_on_step_end=on_step_end,
    ).frames  # (1, T, 3, H, W) in [0, 1]
    end = synced_clock(generator.device)
    per_evaluation = (step_ends[-1] - step_ends[0]) / (len(step_ends) - 1)
    timings = {
        "conditioning": step_ends[0] - start - per_evaluation,
        "sampling": per_evaluation * len(step_ends),
        "decode": end - step_ends[-1],
        "total": end - start,
    }
    return video.permute(0, 2, 1, 3, 4).float(), {stage: seconds * 1e3 for stage, seconds in timings.items()}


def conditioning_pixels(spec: GenerationSpec, generator: Generator) -> torch.Tensor | None:
    """The pixels both implementations condition on, (1, 3, n, H, W) in [-1, 1]."""
    if not spec.num_conditional_frames:
        return None
    height, width = generator.resolution(spec)
    pixels = read_conditioning(spec, 1 + 4 * (spec.num_conditional_frames - 1), height, width)
    video = torch.from_numpy(pixels).to(generator.device).permute(3, 0, 1, 2)[None]
    return video.to(generator.dtype) / 127.5 - 1.0


def bench_spec(
    spec: GenerationSpec,
    generator: Generator,
    pipeline: Cosmos2_5_PredictBasePipeline | None,
    run_ours: bool,
    emit: Callable[..., None],
) -> None:
    """Times ours (if `run_ours`) and diffusers (if `pipeline`) on `spec`, each after a 1-step warm-up."""
    warm_up = GenerationSpec(**{**spec.to_dict(), "num_steps": 1})
    ours_frames = None
    if run_ours:
        generator(warm_up)
        result = generator(spec)
        assert result is not None  # one process is its own rank 0
        ours_frames = torch.from_numpy(result.frames).float()
        emit("ours", {stage: seconds * 1e3 for stage, seconds in result.metadata["timings_s"].items()})
    if pipeline is not None:
        conditioning = conditioning_pixels(spec, generator)
        run_diffusers(pipeline, generator, warm_up, conditioning)
        video, timings = run_diffusers(pipeline, generator, spec, conditioning)
        extra = {}
        if ours_frames is not None:  # as uint8 frames; ours feeds the DiT the official integer timesteps
            theirs = torch.from_numpy(to_uint8_frames(video[0] * 2 - 1)).float()
            extra["frames_rel_err_vs_ours"] = _3g(((theirs - ours_frames).norm() / ours_frames.norm()).item())
        emit("diffusers", timings, **extra)


def _3g(value: float) -> float:
    return float(f"{value:.3g}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny config at 64x96, 9 frames, 2 steps")
    parser.add_argument("--types", nargs="+", choices=INFERENCE_TYPES, default=list(INFERENCE_TYPES))
    parser.add_argument("--impl", nargs="+", choices=["ours", "diffusers"], default=["ours", "diffusers"])
    parser.add_argument("--steps", type=int, default=OFFICIAL_STEPS, help="official steps (+1 model evaluations)")
    parser.add_argument("--frames", type=int, default=93, help="output frames, 1 + 4k")
    parser.add_argument("--guidance", type=int, default=7)
    parser.add_argument("--compile", action="store_true", help="torch.compile our DiT blocks")
    parser.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    dtype = getattr(torch, default_dtype_name(device.type))
    dit_cfg = DiTConfig.preset("tiny" if args.smoke else "2B")
    vae_cfg = VAEConfig.preset("tiny" if args.smoke else "wan2.1")
    model = get_model("2B/post-trained")
    height, width = (RANDOM_PRESETS["tiny"].trained_resolution if args.smoke else None) or model.trained_resolution
    frames, steps = (9, 2) if args.smoke else (args.frames, args.steps)

    torch.manual_seed(0)
    with torch.device(device):
        dit = MiniTrainDiT(dit_cfg)
        vae = WanVAE(vae_cfg).to(dtype).eval().requires_grad_(False)
        embeddings = {
            text: torch.randn(MAX_LENGTH, dit_cfg.crossattn_proj_in_channels, dtype=dtype)
            for text in ("prompt", "negative")
        }
    pipeline = diffusers_pipeline(dit, vae) if "diffusers" in args.impl else None  # before `dit` is cast
    dit.cast(dtype).eval().requires_grad_(False)
    if args.compile:
        dit.compile_blocks(dynamic=False)
    generator = Generator(
        dit,
        vae,
        cast(TextEncoder, FixedTextEncoder(embeddings)),  # only `encode` is called
        ModelInfo(model, "random", (height, width), model.state_t),
        get_sampler("post-trained"),
        device=device,
        dtype=dtype,
    )

    recorder = Recorder(device, args.out)
    tokens = ((frames - 1) // 4 + 1) * (height // 16) * (width // 16)  # 8x VAE, 2x2 patches
    flops_per_pass = sum(forward_flops(dit_cfg, tokens, MAX_LENGTH).values())
    evaluations = generator.sampler.num_evaluations(steps)
    inputs = {"text2world": None, "image2world": str(INPUTS / "square.png"), "video2world": str(INPUTS / "square.mp4")}
    for kind in args.types:
        spec = GenerationSpec(
            inference_type=kind,
            name=f"bench-{kind}",
            prompt="prompt",
            negative_prompt="negative",
            input_path=inputs[kind],
            guidance=args.guidance,
            cosmos_ray_num_frames=frames,
            num_steps=steps,
            resolution=f"{height},{width}",
        )
        common = dict(
            config="tiny" if args.smoke else "2B",
            inference_type=kind,
            frames=frames,
            resolution=[height, width],
            tokens=tokens,
            steps=steps,
            evaluations=evaluations,
            guidance=spec.guidance,
            dtype=str(dtype).removeprefix("torch."),
        )
        flops = evaluations * (2 if spec.guidance else 1) * flops_per_pass

        def emit(impl: str, timings: dict[str, float], **extra) -> None:
            per_evaluation = timings["sampling"] / evaluations
            projected = timings["total"] + per_evaluation * (OFFICIAL_STEPS + 1 - evaluations)
            recorder.emit(
                "generate",
                impl=impl,
                **common,
                **{f"ms_{k}": round(v, 1) for k, v in timings.items()},
                ms_per_evaluation=round(per_evaluation, 1),
                sampling_tflops=_3g(tflops(flops, timings["sampling"])),
                projected_ms_35_steps=round(projected, 1),
                **extra,
            )

        with torch.no_grad():
            bench_spec(spec, generator, pipeline, "ours" in args.impl, emit)


if __name__ == "__main__":
    main()
