"""`python -m jobs.generate`: generate every spec of a Parquet manifest on a Ray cluster.

    python -m jobs.generate --manifest s3://bucket/manifests/run1.parquet --output s3://bucket/out \\
        --checkpoint-dir /models/cosmos-predict2.5 --model 2B/post-trained --gpus-per-group 1
    ray job submit --working-dir . -- python -m jobs.generate --manifest ... --output ... --preset tiny

Checks the manifest and writes (then deletes) a file under --output before it starts or joins Ray, so bad input
and an unwritable output fail in seconds. Connects to the cluster in RAY_ADDRESS (set by `ray job submit`) or
`--address`, else starts a local Ray. Prints one line per sample and a summary. Exits 0 when the job ran, even if
samples failed (their errors are in the run table and listed at the end); 1 when it could not run (one line
saying why; docs/failures.md); 2 for bad arguments; 130 when interrupted (Ctrl-C), after writing the run table of
what finished: rerun the same command to resume.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

import ray

from cosmos_ray.core.shards import ShardConfig
from cosmos_ray.core.storage import StorageError
from jobs.options import (
    add_engine_options,
    add_http_options,
    add_limit_options,
    add_storage_option,
    byte_size,
    engine_options_of,
    limits_of,
    models_epilog,
    storage_of,
)
from pipelines.batch import BatchConfig, WebDatasetSink, failure_message, preflight, run
from pipelines.batch.sinks import SINKS, Sink, SinkConfig
from pipelines.group import GroupConfig
from pipelines.placement import PlacementError

logger = logging.getLogger("jobs.generate")

RESUME_HINT = "rerun the same command to resume: samples already done are skipped"
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.generate",
        description="Generate the videos of a Parquet manifest (see docs/manifest.md) on a Ray cluster and write "
        "them, their records and a run table under --output (see docs/outputs.md). Samples already "
        "done under --output are skipped, so rerunning a job resumes it.",
        epilog=models_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--manifest",
        required=True,
        metavar="URL",
        help="Parquet manifest, a local path or an fsspec URL (s3://, gs://, ...)",
    )
    parser.add_argument(
        "--output",
        required=True,
        metavar="URL",
        help="output root: videos/, meta/ and runs/{run_id}/metadata.parquet go under it",
    )
    add_engine_options(parser)
    parser.add_argument(
        "--gpus-per-group",
        type=_at_least(1),
        default=1,
        metavar="N",
        help="GPUs per model replica, all on one node; N > 1 runs context-parallel denoising "
        "(default 1: one replica per GPU)",
    )
    parser.add_argument(
        "--gpus-per-rank",
        type=_share,
        default=1.0,
        metavar="F",
        help="the share of a GPU each replica of one GPU asks for: below 1, several replicas share a GPU (Ray's "
        "fractional GPUs), e.g. 0.25 packs four small-model replicas (Bridge episodes) per GPU; their engines must "
        "fit its memory together (docs/performance.md, 'Several replicas per GPU'). Only with --gpus-per-group 1 "
        "(default 1)",
    )
    pool = parser.add_mutually_exclusive_group()
    pool.add_argument(
        "--groups",
        type=_at_least(1),
        metavar="M",
        help="number of replicas (default: as many as the cluster's nodes hold now, at least 1)",
    )
    pool.add_argument(
        "--autoscale",
        type=_min_max,
        metavar="MIN..MAX",
        help="let the replica count follow the queue between MIN and MAX",
    )
    parser.add_argument(
        "--schedule-timeout",
        type=float,
        default=BatchConfig.schedule_timeout_s,
        metavar="SECONDS",
        help="how long to wait for the GPUs of the first replica, e.g. while an autoscaler adds a node "
        "(default %(default)g); a layout the cluster can never hold fails at once",
    )
    parser.add_argument("--limit", type=_at_least(0), metavar="K", help="use only the first K manifest rows")
    parser.add_argument(
        "--num-generations",
        type=_at_least(1),
        metavar="N",
        help="videos per spec, with seeds seed, seed+1, ..., seed+N-1, for every row (replaces the specs' own "
        "num_generations; default: each spec's, 1 unless it sets one)",
    )
    shards = parser.add_argument_group(
        "sharded output",
        "Also write the finished samples into WebDataset tar shards (mp4 + json per sample) with a Parquet index, "
        "under OUTPUT/shards/ (docs/outputs.md). Either option turns it on; a rerun never puts a sample in two "
        "shards.",
    )
    shards.add_argument(
        "--shard-size",
        type=byte_size,
        metavar="SIZE",
        help=f"most video bytes per shard, e.g. 500MB or 2GiB (default {ShardConfig.max_bytes / 1e9:g}GB)",
    )
    shards.add_argument(
        "--shard-samples",
        type=_at_least(1),
        metavar="N",
        help=f"most samples per shard (default {ShardConfig.max_samples})",
    )
    parser.add_argument(
        "--sink",
        dest="sinks",
        action="append",
        default=[],
        choices=sorted(SINKS),
        metavar="NAME",
        help=f"also hand the finished samples to this registered sink, repeatable (one of: {', '.join(sorted(SINKS))}; "
        "the per-sample files are always written; --shard-size / --shard-samples set the webdataset sink's limits)",
    )
    parser.add_argument("--run-id", help="name of this run's folder under runs/ (default: UTC time + suffix)")
    add_storage_option(parser, "the manifest, output, input media and --embedding-cache URLs")
    add_http_options(parser, "off: workers fetch no URL")
    parser.add_argument(
        "--max-storage-failures",
        type=_at_least(1),
        default=BatchConfig.max_storage_failures,
        metavar="N",
        help="stop the job (resumable) once the outputs of N samples in a row could not be written: the storage is "
        "full, read-only or gone (default: %(default)s)",
    )
    add_limit_options(parser)
    parser.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a new local Ray)")
    parser.add_argument(
        "--verbose", action="store_true", help="log at debug level, with the traceback of a job that could not run"
    )
    parser.add_argument(
        "--logical-gpus",
        type=_at_least(1),
        metavar="N",
        help="start a local Ray that pretends to have N GPUs (CPU-only runs of --preset tiny)",
    )
    args = parser.parse_args(argv)
    if args.logical_gpus is not None and args.address is not None:
        parser.error("--logical-gpus starts a local Ray; it cannot be combined with --address")
    if args.gpus_per_rank < 1 and args.gpus_per_group > 1:
        parser.error(
            f"--gpus-per-rank {args.gpus_per_rank:g} shares a GPU between replicas of one GPU; pass --gpus-per-group 1"
        )
    if args.schedule_timeout <= 0:
        parser.error(f"--schedule-timeout must be positive, got {args.schedule_timeout:g}")
    storage = storage_of(parser, args)  # one for every URL
    args.engine = engine_options_of(parser, args, storage)
    args.limits = limits_of(parser, args)
    if args.num_generations is not None and args.num_generations > args.limits.max_num_generations:
        parser.error(
            f"--num-generations {args.num_generations} is over --max-num-generations {args.limits.max_num_generations}"
        )
    args.shards = None
    if args.shard_size is not None or args.shard_samples is not None:
        limits = {"max_bytes": args.shard_size, "max_samples": args.shard_samples}
        args.shards = ShardConfig(**{key: value for key, value in limits.items() if value is not None})
    return args


def config_of(args: argparse.Namespace) -> BatchConfig:
    """The batch job the parsed arguments describe."""
    return BatchConfig(
        manifest=args.manifest,
        output=args.output,
        group=GroupConfig(gpus_per_group=args.gpus_per_group, gpus_per_rank=args.gpus_per_rank, engine=args.engine),
        groups=args.autoscale or args.groups,
        limit=args.limit,
        num_generations=args.num_generations,
        limits=args.limits,
        run_id=args.run_id,
        schedule_timeout_s=args.schedule_timeout,
        sinks=sinks_of(args),
        max_storage_failures=args.max_storage_failures,
    )


def sinks_of(args: argparse.Namespace) -> tuple[Sink | SinkConfig, ...]:
    """The sinks named with --sink, in order and once each; the shard options configure (and name) the
    webdataset sink."""
    names = [name for name in dict.fromkeys(args.sinks) if not (args.shards is not None and name == "webdataset")]
    configured = (WebDatasetSink(args.shards),) if args.shards is not None else ()
    return (*(SinkConfig(name) for name in names), *configured)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Our lines at INFO (DEBUG with --verbose); other libraries' (botocore, urllib3, ...) only from WARNING up
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    for name in ("jobs", "pipelines", "cosmos_ray"):
        logging.getLogger(name).setLevel(logging.DEBUG if args.verbose else logging.INFO)
    config = config_of(args)
    try:
        rows = preflight(config)  # before Ray starts: bad input or output fails in seconds, not after the models load
    except (StorageError, ValueError) as error:  # one line already: the URL and the cause
        return _fail(str(error))
    logger.info("manifest %s: %d rows; output %s is writable", config.manifest, rows, config.output)
    try:
        _init_ray(args.address, args.logical_gpus)
        summary = run(config)
    except KeyboardInterrupt:  # before generation started (during it, run() stops and writes the run table)
        return _fail(f"interrupted; {RESUME_HINT}", EXIT_INTERRUPTED)
    except PlacementError as error:
        local_ray = args.address is None and not os.environ.get("RAY_ADDRESS")
        return _fail(f"{error}{_flags_that_fit(error.layouts, local_ray)}")
    except Exception as error:  # noqa: BLE001 - the job could not run; sample failures never get here
        logger.debug("the job could not run", exc_info=True)
        return _fail(failure_message(error))
    print(summary)
    if summary.interrupted:
        print(f"interrupted: {summary.not_finished} sample(s) not finished; {RESUME_HINT}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _fail(message: str, status: int = 1) -> int:
    """Print why the job stopped, in one line (docs/failures.md lists the causes), and return the exit status."""
    print(f"error: {message}", file=sys.stderr)
    return status


def _flags_that_fit(layouts: list[tuple[int, int]], local_ray: bool) -> str:
    if layouts:
        return "; layouts that fit now: " + ", or ".join(
            f"--gpus-per-group {gpus} --groups {groups}" for gpus, groups in layouts
        )
    if local_ray:
        return "; on a machine without GPUs, --logical-gpus N runs --preset tiny on the CPU"
    return ""


def _init_ray(address: str | None, logical_gpus: int | None) -> None:
    if ray.is_initialized():  # main() called from a process that is already connected
        return
    if logical_gpus is None:
        ray.init(address=address)
    else:  # each logical GPU brings a logical CPU for its rank worker's placement bundle
        ray.init(num_gpus=logical_gpus, num_cpus=(os.cpu_count() or 1) + logical_gpus)


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def _min_max(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("..")
    try:
        bounds = int(low), int(high)
    except ValueError:
        bounds = None
    if not sep or bounds is None or not 1 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"expected MIN..MAX with 1 <= MIN <= MAX, got {text!r}")
    return bounds


if __name__ == "__main__":
    sys.exit(main())
