"""Your own models (issue 26): checkpoint load time, merged-adapter step time, adapter switch time.

Writes a DiT checkpoint of random weights with the released shapes (`--model`'s size) to a temporary folder in
the official consolidated layout (`net.` keys, bf16, as `model_ema_bf16.pt`), and two rank-`--rank` adapters on
the official targets in the official adapter layout, then measures, one JSON line each:

- `load`: the DiT from that file through the stock path (`load_dit`, what a checkpoint folder runs) and through
  `--checkpoint-path` (`load_checkpoint_dit`: the same plus the key check, the LoRA split and the file's
  SHA-256, computed on the first load of a file and remembered after it: `cold` / `warm`); the page cache is
  dropped where the process may (root), else the first read is marked `page_cache: unknown`;
- `dit_step`: one DiT forward (cond + uncond, batch 2, 720p / 93 frames) of the base weights, with the two
  adapters merged (target: within 2 % of base), and unmerged (the official way, hooks on the targeted layers);
- `switch`: `set_adapters` from none to one adapter (first time: the base weights of the touched layers are
  copied to the host), to the other, to both, back to none (bit-exact restore), and to one again (from the host
  cache).

GPU (the coordinator's runs; ~6 GB of temporary files for 2B, ~30 GB for 14B):
    python -m bench.own_models --model 2B/post-trained --out own_models.jsonl
    python -m bench.own_models --model 14B/post-trained --out own_models.jsonl
CPU check (tiny shapes, small latents):
    python -m bench.own_models --device cpu --smoke
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench.common import Recorder, add_common_args, time_ms
from bench.dit_step import make_inputs
from cosmos_ray.core.adapters import LoraRef
from cosmos_ray.core.dtypes import default_dtype_name
from cosmos_ray.core.fetch_cache import FetchCache
from cosmos_ray.core.registry import DEFAULT_MODEL, MODEL_NAMES, get_model
from cosmos_ray.loading import describe_net, load_checkpoint_dit
from cosmos_ray.models.dit import DiTConfig, MiniTrainDiT, load_dit
from cosmos_ray.models.lora import OFFICIAL_TARGETS, DiTAdapters, unmerged

PARTS = ("load", "step", "switch")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, warmup=1, iters=3)
    parser.add_argument("--model", choices=MODEL_NAMES, default=DEFAULT_MODEL, help="official model whose net runs")
    parser.add_argument("--rank", type=int, default=32, help="adapter rank (the official LoRA's: 32)")
    parser.add_argument("--latent", type=int, nargs=3, default=[24, 88, 160], metavar=("T", "H", "W"))
    parser.add_argument("--text-len", type=int, default=512)
    parser.add_argument("--compile", action="store_true", help="torch.compile the DiT blocks for the step times")
    parser.add_argument("--workdir", type=Path, help="where the temporary files go (default: the system's)")
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=PARTS,
        default=list(PARTS),
        help="what to measure (default: all); without `load` the net is drawn in memory and no checkpoint written",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    model = get_model(args.model)
    cfg = DiTConfig.of_model(model, "tiny" if args.smoke else None)
    latent = (3, 8, 12) if args.smoke else tuple(args.latent)
    text_len = 16 if args.smoke else args.text_len
    dtype = getattr(torch, default_dtype_name(device.type))
    recorder = Recorder(device, args.out)
    common = dict(model=args.model, config="tiny" if args.smoke else model.size, dtype=str(dtype).split(".")[-1])

    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        fetch = FetchCache(root=os.path.join(workdir, "cache"))
        net = random_net(cfg, device)
        adapters = write_adapters(net, args.rank, Path(workdir))
        if "load" in args.parts:
            checkpoint = write_checkpoint(net, Path(workdir))
            del net
            dit = measure_loads(checkpoint, cfg, model, fetch, device, dtype, recorder, common)
        else:
            dit = net.cast(dtype).eval().requires_grad_(False)
        dit.attention_backend = "auto"
        if args.compile:
            dit.compile_blocks(dynamic=False)
        lora = DiTAdapters(dit, describe_net(model, cfg), fetch)
        inputs = make_inputs(cfg, 2, latent, text_len, device, dtype)
        with torch.no_grad():
            if "step" in args.parts:
                measure_steps(dit, lora, adapters, inputs, args, recorder, dict(common, latent=list(latent)))
            if "switch" in args.parts:
                measure_switches(lora, adapters, device, recorder, dict(common, rank=args.rank))


def random_net(cfg: DiTConfig, device: torch.device) -> MiniTrainDiT:
    """The DiT with random weights, drawn in bf16 on `device` (a 14B net in fp32 would not fit beside its copy)."""
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            return MiniTrainDiT(cfg)
    finally:
        torch.set_default_dtype(default)


def write_checkpoint(net: MiniTrainDiT, folder: Path) -> Path:
    """`net` as an official consolidated bf16 checkpoint (`net.` keys) in `folder`."""
    checkpoint = folder / "model_ema_bf16.pt"
    torch.save({f"net.{k}": v.to("cpu", torch.bfloat16) for k, v in net.state_dict().items()}, checkpoint)
    return checkpoint


def write_adapters(net: MiniTrainDiT, rank: int, folder: Path) -> list[Path]:
    """Two random rank-`rank` adapters of `net` on the official targets (official keys) in `folder`."""
    targets = [
        (name, module)
        for name, module in net.named_modules()
        if isinstance(module, torch.nn.Linear) and name.endswith(tuple("." + t for t in OFFICIAL_TARGETS))
    ]
    adapters = []
    for index in range(2):
        state = {}
        for name, linear in targets:
            down = torch.randn(rank, linear.in_features, dtype=torch.bfloat16) * 0.01
            state[f"net.{name}.lora_A.default.weight"] = down
            state[f"net.{name}.lora_B.default.weight"] = torch.randn(linear.out_features, rank, dtype=torch.bfloat16)
        adapters.append(folder / f"adapter_{index}.pt")
        torch.save(state, adapters[-1])
    return adapters


def measure_loads(
    checkpoint: Path,
    cfg: DiTConfig,
    model,
    fetch: FetchCache,
    device: torch.device,
    dtype: torch.dtype,
    recorder: Recorder,
    common: dict,
) -> MiniTrainDiT:
    """Times the stock load, then the checkpoint-path load cold (hashing) and warm; returns the last DiT."""
    gib = checkpoint.stat().st_size / 2**30

    def timed_load(path: str, load: Callable[[], MiniTrainDiT]) -> MiniTrainDiT:
        page_cache = drop_page_cache(checkpoint)
        start = time.perf_counter()
        dit = load()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        recorder.emit("load", path=path, s=round(seconds, 3), file_gib=round(gib, 2), page_cache=page_cache, **common)
        return dit

    dit = timed_load("stock", lambda: load_dit(checkpoint, cfg, device=device, dtype=dtype))
    del dit
    for path in ("checkpoint_path cold", "checkpoint_path warm"):
        dit = timed_load(
            path, lambda: load_checkpoint_dit(str(checkpoint), cfg, model, fetch, device=device, dtype=dtype)[0]
        )
        if path.endswith("cold"):
            del dit
    return dit


def drop_page_cache(path: Path) -> str:
    """Evicts `path` from the page cache where allowed ("dropped"), else says the state is unknown."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        subprocess.run(["sync"], check=False)
        return "dropped"
    except (OSError, AttributeError):
        return "unknown"


def measure_steps(
    dit: MiniTrainDiT,
    lora: DiTAdapters,
    adapters: list[Path],
    inputs: dict,
    args: argparse.Namespace,
    recorder: Recorder,
    common: dict,
) -> None:
    device = inputs["x"].device
    refs = [LoraRef(str(path)) for path in adapters]

    def step(state: str) -> float:
        ms = time_ms(lambda: dit(**inputs), device, args.warmup, args.iters)
        recorder.emit("dit_step", weights=state, ms=round(ms, 2), batch=2, compile=args.compile, **common)
        return ms

    base_ms = step("base")
    lora.set(refs)
    merged_ms = step("2 adapters merged")
    recorder.emit("dit_step_ratio", merged_over_base=round(merged_ms / base_ms, 4), **common)
    lora.set(())
    blend = [(lora.load(ref), ref.scale) for ref in refs]
    with unmerged(dit, blend):
        step("2 adapters unmerged (official)")


def measure_switches(
    lora: DiTAdapters, adapters: list[Path], device: torch.device, recorder: Recorder, common: dict
) -> None:
    a, b = (LoraRef(str(path)) for path in adapters)
    lora.merger.base.clear()  # the first switch copies the base weights to the host again
    lora.cache.entries.clear()  # and reads the adapter file again
    for label, refs in (
        ("none -> a (first: reads a, copies the base to the host)", [a]),
        ("a -> b (reads b)", [b]),
        ("b -> a + b", [a, b]),
        ("a + b -> none", []),
        ("none -> a (from the host cache)", [a]),
        ("a -> a at scale 0.5", [LoraRef(a.path, 0.5)]),
    ):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        lora.set(refs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        recorder.emit("switch", switch=label, s=round(time.perf_counter() - start, 4), **common)


if __name__ == "__main__":
    main()
