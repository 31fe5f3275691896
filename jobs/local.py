"""The local entry point (`cosmos-ray-local`): official inference spec files, one video at a time, no Ray.

    python -m jobs.local -i examples/text2world.json examples/specs.jsonl -o outputs/local --preset tiny
    python -m jobs.local -i specs.jsonl -o s3://bucket/out --checkpoint-dir /ckpt --model 2B/distilled
    python -m jobs.local -i multiview.json -o outputs/mv --preset tiny --model 2B/auto/multiview

The specs are read in the format of `--model` (`cosmos_ray.core.spec_formats`: the 7-camera model reads the official
multiview JSON, the others the base format).

Like the official `inference.py -i ... -o ...`, for debugging and single-GPU use (the batch job on Ray
is `python -m jobs.generate`; both run the engine of the model's family, `cosmos_ray.families.load_engine`). Outputs go
through `OutputStore` (videos/, meta/, runs/ under the output root), so a rerun skips samples already done and the
batch job can resume what this started; a result that lists views (the multiview models) also gets one video per
view (views/{sample_id}/{view}.mp4, docs/outputs.md). With guardrails (README: Guardrails), a prompt they refuse is not
generated and a video they refuse is not written: both are recorded with status "blocked" and the reason. Exits 1
if any sample failed or was blocked.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from datetime import datetime, timezone

import numpy as np

from cosmos_ray.core.guardrails import Blocked, Guardrails, check_installed, check_prompt, guard_video
from cosmos_ray.core.manifest import ManifestError, load_specs
from cosmos_ray.core.media import MediaError
from cosmos_ray.core.options import EngineOptions
from cosmos_ray.core.outputs import BLOCKED, FAILED, OK, SKIPPED, OutputRecord, OutputStore
from cosmos_ray.core.progress import Step
from cosmos_ray.core.registry import get_model
from cosmos_ray.core.spec import SpecError
from cosmos_ray.core.spec_formats import Spec
from cosmos_ray.core.views import encode_video
from cosmos_ray.families import Engine, load_engine
from cosmos_ray.sampling.base import SamplingError
from jobs.options import add_engine_options, add_http_options, engine_options_of, models_epilog, storage_of


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.local",
        description=__doc__.split("\n\n")[0],
        epilog=models_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-i",
        "--input",
        nargs="+",
        required=True,
        metavar="SPECS",
        help="spec files (.json, .jsonl, .yaml) or globs of them; local paths or fsspec URLs",
    )
    parser.add_argument("-o", "--output", required=True, metavar="URL", help="output root (local path or fsspec URL)")
    add_engine_options(parser)
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--quality", type=float, default=5, help="mp4 quality 1..10 (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="regenerate samples that are already done")
    add_http_options(parser, "off: none is fetched")
    args = parser.parse_args(argv)
    if not 1 <= args.quality <= 10:
        parser.error(f"--quality must be in 1..10, got {args.quality}")
    args.engine = engine_options_of(parser, args, storage_of(parser, args))
    return args


def limit_cpu_threads() -> int:
    """Run torch's CPU kernels on as many threads as this process may use (its CPU affinity, and a container's
    CPU quota), not one per core of the host: more threads than CPUs thrash (issue 28 measured a tiny clip 5-8x
    slower). OMP_NUM_THREADS, when set, wins. Returns the thread count."""
    import torch

    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    threads, quota = len(os.sched_getaffinity(0)), _cgroup_cpu_quota()
    threads = threads if quota is None else min(threads, quota)
    torch.set_num_threads(threads)
    return threads


def _cgroup_cpu_quota() -> int | None:
    """The CPUs a cgroup v2 quota (`cpu.max`, "max" or "QUOTA PERIOD") allows this process, rounded up."""
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()
    except (OSError, ValueError):
        return None
    return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))


def main(argv: list[str] | None = None, checks: Guardrails | None = None) -> int:
    """`checks`: the guardrails to run when they are on (default: the official ones)."""
    args = parse_args(argv)
    options = args.engine
    setting = options.guardrail_setting(checks)
    try:
        check_installed(setting)
        specs = with_run_weights(load_specs(args.input, storage=options.storage, model=options.model), options)
        check_model_supports(options.model, specs)
    except (ManifestError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    store = OutputStore(args.output, options.storage)
    generator = load_engine(options, device=args.device)
    if generator.device.type == "cpu":
        limit_cpu_threads()
    if setting.checks is not None:
        for part in ("prompt", "video"):
            setting.checks.load(part, str(generator.device))
    run_id = "local-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    samples = [(generation, source) for spec, source in specs for generation in spec.generations()]
    records = []
    for index, (spec, source) in enumerate(samples, start=1):
        label = f"[{index}/{len(samples)}] {spec.name}"
        if not args.overwrite and store.is_done(spec.sample_id):
            print(f"{label}: already done, skipped")
            records.append(store.skipped(spec, source=source))
            continue
        records.append(_generate_one(generator, setting.checks, store, spec, source, label, args.quality))
    table = store.write_run_table(run_id, records)
    counts = {status: sum(record.status == status for record in records) for status in (OK, SKIPPED, FAILED, BLOCKED)}
    print(
        f"{counts[OK]} ok, {counts[SKIPPED]} skipped, {counts[FAILED]} failed, {counts[BLOCKED]} blocked; "
        f"{setting}; run table: {table}"
    )
    return 1 if counts[FAILED] or counts[BLOCKED] else 0


def with_run_weights(specs: list[tuple[Spec, str]], options: EngineOptions) -> list[tuple[Spec, str]]:
    """Each spec with the run's checkpoint and default adapters (`for_weights`), before any
    sample id is taken; ManifestError listing every spec that names another checkpoint."""
    weighted, problems = [], []
    for spec, source in specs:
        try:
            weighted.append((spec.for_weights(options.checkpoint_path, options.loras), source))
        except SpecError as error:
            problems.append(str(SpecError(f"{spec.name!r} ({source})", error.field, error.reason)))
    if problems:
        raise ManifestError(problems)
    return weighted


def check_model_supports(model: str, specs: list[tuple[Spec, str]]) -> None:
    """ManifestError listing every spec the model cannot generate (e.g. image2world for 2B/distilled)."""
    official = get_model(model)
    problems = []
    for spec, source in specs:
        try:
            official.check_spec(spec)
        except SpecError as error:
            problems.append(str(SpecError(f"{spec.name!r} ({source})", error.field, error.reason)))
    if problems:
        raise ManifestError(problems)


def _generate_one(
    generator: Engine,
    checks: Guardrails | None,
    store: OutputStore,
    spec: Spec,
    source: str,
    label: str,
    quality: float,
) -> OutputRecord:
    start = time.perf_counter()

    def progress(step: Step) -> None:
        last = step.step == step.total and step.chunk == step.num_chunks
        print(f"\r{label}: {step}", end="\n" if last else "", file=sys.stderr, flush=True)

    try:
        if checks is not None:
            check_prompt(checks, spec.prompt)
        result = generator(spec, progress=progress if sys.stderr.isatty() else None)
        assert result is not None  # one process is its own rank 0
        frames, metadata = _guarded(checks, result.frames, result.metadata)
        video = encode_video(frames, result.fps, metadata, quality)
        record = store.write_ok(spec, video.mp4, metadata, source=source, views=video.views)
    except Blocked as blocked:
        print(f"{label}: {blocked}", file=sys.stderr)
        return store.write_blocked(spec, str(blocked), source=source)
    except (MediaError, SamplingError, SpecError) as error:
        print(f"{label}: failed: {error}", file=sys.stderr)
        return store.write_failure(spec, f"{type(error).__name__}: {error}", source=source)
    print(f"{label}: {record.video_url} ({time.perf_counter() - start:.1f} s)")
    return record


def _guarded(checks: Guardrails | None, frames: np.ndarray, metadata: dict) -> tuple[np.ndarray, dict]:
    """The frames to write (checked, faces blurred) and the metadata that says so; raises `Blocked`."""
    if checks is None:
        return frames, {**metadata, "guardrails": None}
    return guard_video(checks, frames), {**metadata, "guardrails": checks.name}


if __name__ == "__main__":
    sys.exit(main())
