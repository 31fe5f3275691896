"""Turn official inference JSON / JSON-lines spec files into a Parquet manifest.

    python -m jobs.make_manifest examples/*.json examples/specs.jsonl -o manifests/examples.parquet
    cosmos-ray-make-manifest 's3://bucket/specs/*.jsonl' -o s3://bucket/manifests/run1.parquet \
        --storage-option client_kwargs.endpoint_url=http://127.0.0.1:9000

Every spec is validated first; on any problem all of them are printed and no manifest is written.
"""

from __future__ import annotations

import argparse
import sys

from cosmos_ray.manifest import ManifestError, make_manifest
from cosmos_ray.storage import parse_storage_options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cosmos-ray-make-manifest", description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", metavar="SRC",
                        help="spec files (.json, .jsonl) or globs of them; local paths or fsspec URLs")
    parser.add_argument("-o", "--output", required=True, metavar="URL", help="where to write the .parquet manifest")
    parser.add_argument("--storage-option", dest="storage_options", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="fsspec option for remote URLs, repeatable; VALUE is parsed as JSON when it can be, "
                             "dotted keys nest: client_kwargs.endpoint_url=http://...")
    parser.add_argument("--no-check-inputs", action="store_true",
                        help="do not check that every input_path exists")
    args = parser.parse_args(argv)
    try:
        args.storage_options = parse_storage_options(args.storage_options)
    except ValueError as error:
        parser.error(f"--storage-option: {error}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        specs = make_manifest(args.sources, args.output, storage_options=args.storage_options,
                              check_inputs=not args.no_check_inputs)
    except ManifestError as error:
        print(f"error: {error}\nno manifest was written", file=sys.stderr)
        return 1
    print(f"wrote {len(specs)} spec(s) to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
