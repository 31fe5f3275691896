"""The official DiT's guided step beside ours, each with its own attention dispatch.

Builds the official 2B net (`MinimalV1LVGDiT`, cosmos-predict2.5) from the folder that
tools/golden/prepare_official_gpu.py writes (`.official/`: its source files, its composed net config, the
pure-Python packages it imports) with seeded random weights in bf16, builds cosmos-ray's `MiniTrainDiT` from the
official net's state dict (our checkpoint loader), and times one guided step of each: one forward of batch 2
(cond + uncond) and the guidance combination, eager. Each official attention dispatch runs in a process of its
own, since `predict2/networks/attention.py` reads COSMOS_ENABLE_SAGE_ATTN when it is imported:
  default  COSMOS_ENABLE_SAGE_ATTN=0: on Hopper flash_attn_3 where installed, else SDPA; with torch >= 2.6 its
           backend list falls back to cuDNN alone (its `set_priority_order=` keyword raises TypeError)
  sage     COSMOS_ENABLE_SAGE_ATTN=1: SageAttention 2 first where `sageattention` imports with sm90 kernels
           (the attention file of a later commit than 1.5.0: prepare with --file, see its help)
One JSON line per model and dispatch: ms (median), TFLOP/s (bench/dit_step.py's count), peak GiB, the attention
kernels it called (counted in one forward, and named by the profiler for one self-attention call), and the
relative error of the official guided velocity against ours.

GPU (720p: 24 x 88 x 160 latents = 84,480 tokens, 512 text tokens):
    PYTHONPATH=.official:. python -m tools.golden.official_speed --out official_speed.jsonl
CPU check (tiny widths, small shapes), with the official environment or cosmos-ray's:
    PYTHONPATH=.official:. python -m tools.golden.official_speed --smoke --device cpu --dispatch default sage

Stand-ins, as in tools/golden/dit.py: Transformer Engine's RMSNorm and fused RoPE (not on the GPU machine) run as
PyTorch ops (`TERMSNorm`, `te_fused_rope`), so the official step pays unfused norms and RoPE. On the CPU also
`amp.autocast("cuda", float32)`, and the math kernel is added to the official attention's SDPA backends.
Packages that the official modules import and the DiT never calls are stubbed where missing (pandas, imageio:
file-I/O handlers); torchvision, where missing, by its nearest `resize` alone (the padding mask's).
"""

from __future__ import annotations

import argparse
import collections
import enum
import importlib.util
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.overrides import TorchFunctionMode

from bench.common import Recorder, add_common_args, tflops, time_ms_and_peak_gib
from bench.dit_step import forward_flops
from cosmos_ray.core.registry import get_model
from cosmos_ray.models.attention import attention as our_attention
from cosmos_ray.models.dit import DiTConfig, load_dit
from tools.golden.dit import (
    TINY,
    AmpOnCpu,
    build_official_net,
    device_normal,
    install_transformer_engine_stand_ins,
    random_dit_weights,
    run_official_net,
)
from tools.golden.harness import ROOT, Official, install_stub

MODEL = "2B/post-trained"  # our registry's name of tools/golden/dit.py's "2B" setting
GUIDANCE = 7.0  # the official inference default (tests/golden/model_config.json)
DISPATCHES = {"default": "0", "sage": "1"}  # -> COSMOS_ENABLE_SAGE_ATTN
# Imported by the official file-I/O handlers (imaginaire/utils/easy_io), never called by the DiT.
STUB_WHEN_MISSING = {"pandas": ("pandas",), "imageio": ("imageio", "imageio.v3")}
ATTENTION_KERNEL = re.compile(r"attn|attention|sdpa|fmha|flash", re.IGNORECASE)


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"


def resize(image: torch.Tensor, size: list[int], interpolation: InterpolationMode = InterpolationMode.NEAREST, **_):
    """torchvision.transforms.functional.resize of a (..., H, W) tensor, nearest only (the DiT's padding mask)."""
    if interpolation is not InterpolationMode.NEAREST:
        raise NotImplementedError(f"the torchvision stand-in resizes with NEAREST only, not {interpolation}")
    return F.interpolate(image, size=list(size), mode="nearest")


def install_missing_packages() -> list[str]:
    """Stubs (or, for torchvision, the stand-in above) for the packages this machine lacks; returns their names."""
    installed = []
    for package, modules in STUB_WHEN_MISSING.items():
        if importlib.util.find_spec(package) is None:
            for name in modules:
                install_stub(name)
            installed.append(package)
    if importlib.util.find_spec("torchvision") is None:
        install_stub("torchvision")
        functional = types.SimpleNamespace(resize=resize)
        transforms = types.SimpleNamespace(functional=functional, InterpolationMode=InterpolationMode)
        sys.modules["torchvision"].transforms = transforms  # type: ignore[attr-defined]
        installed.append("torchvision (resize)")
    return installed


def sdpa_kernel_on_cpu(backends, **_):
    """The official attention's `sdpa_kernel` on the CPU: the backends it asks for, then the math kernel (its own
    call falls back to memory-efficient attention alone there, which PyTorch has no CPU kernel of)."""
    backends = backends if isinstance(backends, list) else [backends]
    return sdpa_kernel([*backends, SDPBackend.MATH], set_priority=True)


class AttentionCalls(TorchFunctionMode):
    """Counts what the official attention function calls: `sageattn` and `flash_attn_func` (wrapped in its
    module), scaled_dot_product_attention (while this mode is on)."""

    def __init__(self, module: types.ModuleType):
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()
        for name in ("sageattn", "flash_attn_func"):
            function = getattr(module, name, None)
            if function is not None:
                setattr(module, name, self.counted(name, function))

    def counted(self, name: str, function):
        def call(*args, **kwargs):
            self.counts[name] += 1
            return function(*args, **kwargs)

        return call

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.scaled_dot_product_attention:
            self.counts["scaled_dot_product_attention"] += 1
        return func(*args, **(kwargs or {}))


def attention_kernels(call, device: torch.device) -> list[str]:
    """Names of the attention kernels (CUDA) or operators (CPU) one call runs, most time first."""
    from torch.profiler import ProfilerActivity, profile

    activity = ProfilerActivity.CUDA if device.type == "cuda" else ProfilerActivity.CPU
    with profile(activities=[activity]) as prof:
        call()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    events = [e for e in prof.key_averages() if ATTENTION_KERNEL.search(e.key)]
    if device.type == "cuda":
        events = [e for e in events if e.device_type.name == "CUDA"]
        events.sort(key=lambda e: -e.self_device_time_total)
    else:
        events.sort(key=lambda e: -e.self_cpu_time_total)
    return [e.key[:120] for e in events[:3]]


def make_inputs(cfg: DiTConfig, latent: tuple[int, int, int], text_len: int, device: torch.device) -> dict:
    """cond + uncond (batch 2) latents, flow timesteps in DiT units, text embeddings, no conditional frame, the
    pixel-size padding mask the official pipeline passes; float32 (each net's call casts)."""
    g = torch.Generator(device).manual_seed(0)
    t, h, w = latent
    return {
        "x": torch.randn(2, cfg.in_channels, t, h, w, device=device, generator=g),
        "timesteps": torch.full((2, 1), 500.0, device=device),
        "crossattn_emb": torch.randn(2, text_len, cfg.crossattn_proj_in_channels, device=device, generator=g),
        "condition_mask": torch.zeros(2, 1, t, h, w, device=device),
        "padding_mask": torch.zeros(2, 1, 8 * h, 8 * w, device=device),
    }


def guided(velocity: torch.Tensor) -> torch.Tensor:
    cond, uncond = velocity.chunk(2)
    return uncond + GUIDANCE * (cond - uncond)


def relative_errors(value: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    value, reference = value.float(), reference.float()
    return {
        "rel_l2": float(f"{((value - reference).norm() / reference.norm()).item():.3g}"),
        "max_rel": float(f"{((value - reference).abs().max() / reference.abs().max()).item():.3g}"),
    }


def run_dispatch(args: argparse.Namespace, dispatch: str) -> None:
    """One process: the official net under the dispatch the environment set, and ours, timed side by side."""
    device, dtype = torch.device(args.device), torch.bfloat16
    provenance = json.loads((args.official / "PROVENANCE.json").read_text())
    other_commits = {p: f["commit"] for p, f in provenance["files"].items() if f["commit"] != provenance["commit"]}
    official = Official(args.official, provenance["commit"], other_commits)
    stand_ins = install_missing_packages()
    dit_module = install_transformer_engine_stand_ins(official)
    attention_module = official.module("predict2.networks.attention")
    if device.type == "cpu":
        dit_module.amp = AmpOnCpu  # type: ignore[attr-defined]
        attention_module.sdpa_kernel = sdpa_kernel_on_cpu  # type: ignore[attr-defined]
    calls = AttentionCalls(attention_module)

    import omegaconf  # type: ignore[import-not-found]  # carried in .official

    setting = json.loads((args.official / "nets.json").read_text())["2B"]
    net_config = omegaconf.OmegaConf.create(setting["net"])
    torch.manual_seed(0)
    net, net_config = build_official_net(official, net_config, TINY if args.smoke else None, device)
    state = net.state_dict()
    net.load_state_dict(
        {**state, **random_dit_weights({k: tuple(v.shape) for k, v in state.items()}, device_normal(device))}
    )
    net.to(dtype)
    cfg = DiTConfig.of_model(get_model(MODEL), "tiny" if args.smoke else None)
    ours = load_dit(net.state_dict(), cfg, device, dtype)

    latent = (3, 8, 12) if args.smoke else tuple(args.latent)
    text_len = 16 if args.smoke else args.text_len
    tokens = latent[0] * latent[1] * latent[2] // (cfg.patch_temporal * cfg.patch_spatial**2)
    flops = 2 * sum(forward_flops(cfg, tokens, text_len).values())
    inputs = make_inputs(cfg, latent, text_len, device)
    casted = {k: v.to(dtype) for k, v in inputs.items()}
    official_inputs = {**casted, "timesteps": inputs["timesteps"]}  # the net casts the timesteps as it needs

    def official_step() -> torch.Tensor:
        return guided(run_official_net(net, official_inputs, dtype))

    def our_step() -> torch.Tensor:
        return guided(
            ours(
                casted["x"],
                inputs["timesteps"],
                casted["crossattn_emb"],
                padding_mask=casted["padding_mask"],
                condition_mask=casted["condition_mask"],
            )
        )

    q = torch.randn(2, tokens, cfg.num_heads, cfg.head_dim, device=device, dtype=dtype)
    with torch.no_grad():
        with calls:
            official_velocity = official_step()
        attention_calls = dict(calls.counts)  # of this one forward
        our_velocity = our_step()
        common = {
            "model": MODEL,
            "config": "tiny" if args.smoke else "2B",
            "batch": 2,
            "latent": list(latent),
            "tokens": tokens,
            "text_len": text_len,
            "dtype": "bfloat16",
        }
        recorder = Recorder(device, args.out)
        ms, peak = time_ms_and_peak_gib(official_step, device, args.warmup, args.iters)
        recorder.emit(
            "guided_step",
            impl="official",
            dispatch=dispatch,
            COSMOS_ENABLE_SAGE_ATTN=os.environ.get("COSMOS_ENABLE_SAGE_ATTN", "0"),
            attention_calls=attention_calls,
            attention_kernels=attention_kernels(lambda: attention_module.attention(q, q, q), device),
            ms=round(ms, 2),
            tflops=round(tflops(flops, ms), 1),
            peak_gib=None if peak is None else round(peak, 2),
            velocity_vs_ours=relative_errors(official_velocity, our_velocity),
            official_commit=provenance["commit"],
            official_files_from_other_commits=other_commits,
            stand_ins_and_stubs=["transformer_engine RMSNorm", "transformer_engine fused RoPE", *stand_ins]
            + (["amp.autocast(cuda, float32)", "sdpa_kernel (+ math)"] if device.type == "cpu" else []),
            **common,
        )
        if not args.no_ours:
            ms, peak = time_ms_and_peak_gib(our_step, device, args.warmup, args.iters)
            recorder.emit(
                "guided_step",
                impl="ours",
                backend=ours.attention_backend,
                attention_kernels=attention_kernels(lambda: our_attention(q, q, q, ours.attention_backend), device),
                ms=round(ms, 2),
                tflops=round(tflops(flops, ms), 1),
                peak_gib=None if peak is None else round(peak, 2),
                **common,
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, warmup=1, iters=2)
    parser.add_argument("--latent", type=int, nargs=3, default=[24, 88, 160], metavar=("T", "H", "W"))
    parser.add_argument("--text-len", type=int, default=512)
    parser.add_argument(
        "--dispatch",
        nargs="+",
        choices=sorted(DISPATCHES),
        help="official attention dispatches to time (default: 'default', and 'sage' where sageattention imports)",
    )
    parser.add_argument("--no-ours", action="store_true", help="time the official net only")
    parser.add_argument("--official", type=Path, default=ROOT / ".official", help="the carried folder")
    parser.add_argument("--child", choices=sorted(DISPATCHES), help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if not (args.official / "nets.json").exists():
        raise SystemExit(
            f"{args.official}/nets.json missing: build the folder first (tools/golden/prepare_official_gpu.py)"
        )
    if args.child:
        run_dispatch(args, args.child)
        return
    dispatches = args.dispatch or ["default"] + (["sage"] if importlib.util.find_spec("sageattention") else [])
    for dispatch in dispatches:
        env = {**os.environ, "COSMOS_ENABLE_SAGE_ATTN": DISPATCHES[dispatch]}
        command = [sys.executable, "-m", "tools.golden.official_speed", *argv, "--child", dispatch]
        subprocess.run(command, env=env, check=True)


if __name__ == "__main__":
    main()
