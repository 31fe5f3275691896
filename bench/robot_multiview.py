"""One guided denoising step of the 3-camera robot model's net (`2B/robot/multiview-agibot`): step time and peak memory.

The official shape: three views of 24 latent frames (93 frames at 704 x 1280) in one sequence, 72 x 88 x 160 latents
= 253,440 tokens, the Plücker rays of every token, cond + uncond in one batch of 2 (as the sampler runs it), bf16.
Random weights in the released shapes (`--preset random-2B`); eager, and with `--compile` also torch.compile'd blocks.
On N GPUs (torchrun) the net runs context-parallel (`ParallelDiT`: frames and their rays split over the ranks).

GPU:
    python -m bench.robot_multiview --preset random-2B --compile --out robot_multiview.jsonl
    torchrun --nproc-per-node 2 -m bench.robot_multiview --preset random-2B --compile --out robot_multiview.jsonl
CPU check (tiny net, 3 views of 2 latent frames):
    python -m bench.robot_multiview --device cpu --smoke
"""

from __future__ import annotations

import argparse
import os

import torch

from bench.common import Recorder, add_common_args, time_ms_and_peak_gib
from cosmos_ray.core.agibot_spec import AGIBOT_MODEL, VIEWS
from cosmos_ray.core.dtypes import default_dtype_name
from cosmos_ray.core.presets import RANDOM_PRESETS
from cosmos_ray.core.registry import get_model
from cosmos_ray.models.camera_dit import CameraDiT, CameraDiTConfig
from cosmos_ray.parallel import ParallelContext, ParallelDiT


def step_inputs(cfg: CameraDiTConfig, latent: tuple[int, int, int], device: torch.device, dtype: torch.dtype) -> dict:
    """Seeded inputs of one guided step: latents (2, 16, T, H, W) (T: all views), per-frame timesteps with each view's
    first frame held, the condition mask, a 512-token text embedding and the rays (1, T, H/2, W/2, 1536)."""
    generator = torch.Generator(device).manual_seed(0)
    t, h, w = latent
    held = torch.zeros(t, device=device)
    held[:: cfg.state_t] = 1.0

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=device)

    return {
        "x": normal(2, cfg.in_channels, t, h, w).to(dtype),
        "timesteps": (937.0 * (1 - held) + 100.0 * held).expand(2, t),
        "crossattn_emb": normal(2, 512, cfg.crossattn_proj_in_channels).to(dtype),
        "condition_mask": held[None, None, :, None, None].expand(2, 1, t, h, w).to(dtype),
        "camera": normal(1, t, h // cfg.patch_spatial, w // cfg.patch_spatial, cfg.camera_channels).to(torch.bfloat16),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, warmup=2, iters=5)
    parser.add_argument("--preset", choices=sorted(RANDOM_PRESETS), default="random-2B", help="the net's shapes")
    parser.add_argument("--latent-hw", type=int, nargs=2, default=[88, 160], metavar=("H", "W"), help="per view")
    parser.add_argument("--compile", action="store_true", help="also time the net with torch.compile'd blocks")
    args = parser.parse_args(argv)

    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if torch.device(args.device).type == "cuda":
        device, backend = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))), "nccl"
    else:
        device, backend = torch.device(args.device), "gloo"
    if "MASTER_ADDR" not in os.environ:  # a plain `python -m bench.robot_multiview`: a group of one
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29533")
    context = ParallelContext.init(rank, world_size, "env://", backend, device=device)

    shapes = "tiny" if args.smoke else RANDOM_PRESETS[args.preset].shapes
    cfg = CameraDiTConfig.of_model(get_model(AGIBOT_MODEL), shapes)
    assert isinstance(cfg, CameraDiTConfig)
    state_t = 2 if args.smoke else cfg.state_t
    cfg = CameraDiTConfig(**{**vars(cfg), "state_t": state_t})
    latent = (len(VIEWS) * state_t, *((4, 6) if args.smoke else args.latent_hw))
    dtype = getattr(torch, default_dtype_name(device.type))
    torch.manual_seed(0)
    with device:
        net = CameraDiT(cfg).cast(dtype).eval().requires_grad_(False)
    model = ParallelDiT(net, context) if world_size > 1 else net
    inputs = step_inputs(cfg, latent, device, dtype)
    recorder = Recorder(device, args.out)
    tokens = latent[0] * latent[1] * latent[2] // cfg.patch_spatial**2
    for compiled in (False, True) if args.compile else (False,):
        if compiled:
            net.compile_blocks()
        with torch.no_grad():
            ms, peak = time_ms_and_peak_gib(lambda: model(**inputs), device, args.warmup, args.iters)
        if rank == 0:
            recorder.emit(
                "robot_multiview_step",
                model=AGIBOT_MODEL,
                preset=args.preset if not args.smoke else "tiny",
                world_size=world_size,
                compiled=compiled,
                latent=list(latent),
                tokens=tokens,
                batch=2,
                dtype=str(dtype).removeprefix("torch."),
                step_ms=ms,
                peak_gib=peak,
            )
    context.destroy()


if __name__ == "__main__":
    main()
