"""Turn official inference JSON / JSON-lines spec files into a Parquet manifest.

    python -m jobs.make_manifest examples/*.json examples/specs.jsonl -o manifests/examples.parquet
    python -m jobs.make_manifest 'drives/*.json' -o manifests/drives.parquet --model 2B/auto/multiview
    python -m jobs.make_manifest bridge/inference_params.json -o manifests/bridge.parquet --model 2B/robot/action-cond
    cosmos-ray-make-manifest 's3://bucket/specs/*.jsonl' -o s3://bucket/manifests/run1.parquet \
        --storage-option client_kwargs.endpoint_url=http://127.0.0.1:9000

Every spec is validated first, in the spec format of `--model` (`cosmos_ray.core.spec_formats`: the 7-camera model
reads the official multiview JSON, the base models the base format); on any problem all of them are printed and no
manifest is written. The batch job that reads the manifest runs with the same `--model`. For
`2B/robot/action-cond` the official spec of a folder of episodes becomes one row per episode (docs/manifest.md,
"The robot formats"); the robot models' annotation and camera files are read and checked too.
"""

from __future__ import annotations

import argparse
import sys

from cosmos_ray.core.manifest import SPEC_FILE_SUFFIXES, ManifestError, make_manifest
from cosmos_ray.core.registry import DEFAULT_MODEL, MODELS
from cosmos_ray.core.storage import StorageError
from jobs.options import add_limit_options, add_storage_option, limits_of, models_epilog, storage_of


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="cosmos-ray-make-manifest",
        description=__doc__.split("\n\n")[0],
        epilog=models_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "sources",
        nargs="+",
        metavar="SRC",
        help=f"spec files ({', '.join(SPEC_FILE_SUFFIXES)}) or globs of them; local paths or fsspec URLs",
    )
    parser.add_argument("-o", "--output", required=True, metavar="URL", help="where to write the .parquet manifest")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        choices=tuple(MODELS),
        metavar="NAME",
        help="the official model the specs are for: their format, and what a limit's cost means "
        "(default: %(default)s; listed below)",
    )
    add_storage_option(parser, "remote URLs")
    parser.add_argument(
        "--no-check-inputs", action="store_true", help="do not check that every input file (input_path, ...) exists"
    )
    add_limit_options(parser)
    args = parser.parse_args(argv)
    args.storage = storage_of(parser, args)
    args.limits = limits_of(parser, args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        specs = make_manifest(
            args.sources,
            args.output,
            storage=args.storage,
            check_inputs=not args.no_check_inputs,
            limits=args.limits,
            model=args.model,
        )
    except (ManifestError, StorageError) as error:  # StorageError: e.g. no credentials for an s3:// source
        print(f"error: {error}\nno manifest was written", file=sys.stderr)
        return 1
    print(f"wrote {len(specs)} spec(s) to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
