"""`python -m jobs.generate`: generate every spec of a Parquet manifest on a Ray cluster.

    python -m jobs.generate --manifest s3://bucket/manifests/run1.parquet --output s3://bucket/out \\
        --checkpoint-dir /models/cosmos-predict2.5-2b --gpus-per-group 1
    ray job submit --working-dir . -- python -m jobs.generate --manifest ... --output ... --preset tiny

Connects to the cluster in RAY_ADDRESS (set by `ray job submit`) or `--address`, else starts a local Ray.
Prints one line per sample and a summary. Exits 0 when the job ran, even if samples failed (their errors are
in the run table); 1 when it could not run; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import ray

from cosmos_ray.shards import ShardConfig
from jobs.options import add_storage_option, byte_size, storage_options_of
from pipelines.batch import BatchConfig, run
from pipelines.group import DTYPES, GroupConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.generate",
        description="Generate the videos of a Parquet manifest (see docs/manifest.md) on a Ray cluster and write "
        "them, their records and a run table under --output (see docs/outputs.md). Samples already "
        "done under --output are skipped, so rerunning a job resumes it.",
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
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument(
        "--preset",
        metavar="NAME",
        help="model preset with random weights: 'tiny' (tests and CPU smoke runs) or "
        "'random-2B' (the released shapes, for GPU trials and benchmarks)",
    )
    model.add_argument(
        "--checkpoint-dir", metavar="DIR", help="folder holding the official checkpoint files (on every GPU node)"
    )
    parser.add_argument("--dtype", choices=DTYPES, help="compute dtype (default: the generator's)")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the DiT blocks in every replica: a slower start, faster steps",
    )
    parser.add_argument(
        "--gpus-per-group",
        type=_at_least(1),
        default=1,
        metavar="N",
        help="GPUs per model replica, all on one node; N > 1 runs context-parallel denoising "
        "(default 1: one replica per GPU)",
    )
    pool = parser.add_mutually_exclusive_group()
    pool.add_argument(
        "--groups",
        type=_at_least(1),
        metavar="M",
        help="number of replicas (default: as many as the cluster's GPUs allow)",
    )
    pool.add_argument(
        "--autoscale",
        type=_min_max,
        metavar="MIN..MAX",
        help="let the replica count follow the queue between MIN and MAX",
    )
    parser.add_argument(
        "--embedding-cache",
        metavar="URL",
        help="fsspec folder where replicas share prompt embeddings, so each distinct prompt is "
        "encoded once per dataset (a Reason1 embedding is about 100 MB); default: each "
        "replica keeps its own in memory",
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
    parser.add_argument("--run-id", help="name of this run's folder under runs/ (default: UTC time + suffix)")
    add_storage_option(parser, "the manifest, output and input media URLs")
    parser.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a new local Ray)")
    parser.add_argument(
        "--logical-gpus",
        type=_at_least(1),
        metavar="N",
        help="start a local Ray that pretends to have N GPUs (CPU-only runs of --preset tiny)",
    )
    args = parser.parse_args(argv)
    if args.logical_gpus is not None and args.address is not None:
        parser.error("--logical-gpus starts a local Ray; it cannot be combined with --address")
    args.storage_options = storage_options_of(parser, args)
    args.shards = None
    if args.shard_size is not None or args.shard_samples is not None:
        limits = {"max_bytes": args.shard_size, "max_samples": args.shard_samples}
        args.shards = ShardConfig(**{key: value for key, value in limits.items() if value is not None})
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        _init_ray(args.address, args.logical_gpus)
        config = BatchConfig(
            manifest=args.manifest,
            output=args.output,
            group=GroupConfig(
                gpus_per_group=args.gpus_per_group,
                source=args.checkpoint_dir or args.preset,
                dtype=args.dtype,
                compile=args.compile,
                embedding_cache_url=args.embedding_cache,
                storage_options=args.storage_options,
            ),
            groups=args.autoscale or args.groups or _groups_that_fit(args.gpus_per_group),
            limit=args.limit,
            num_generations=args.num_generations,
            storage_options=args.storage_options,
            run_id=args.run_id,
            shards=args.shards,
        )
        summary = run(config)
    except Exception as error:  # the job could not run; sample failures never get here
        logging.getLogger(__name__).exception("the job could not run: %s", error)
        return 1
    print(summary)
    return 0


def _init_ray(address: str | None, logical_gpus: int | None) -> None:
    if ray.is_initialized():  # main() called from a process that is already connected
        return
    if logical_gpus is None:
        ray.init(address=address)
    else:  # each logical GPU brings a logical CPU for its rank worker's placement bundle
        ray.init(num_gpus=logical_gpus, num_cpus=(os.cpu_count() or 1) + logical_gpus)


def _groups_that_fit(gpus_per_group: int) -> int:
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if gpus < gpus_per_group:
        raise RuntimeError(
            f"the cluster has {gpus} GPU(s) now, fewer than --gpus-per-group {gpus_per_group}: pass "
            "--groups or --autoscale to wait for GPU nodes, or --logical-gpus for a CPU-only run"
        )
    return gpus // gpus_per_group


def _at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


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
