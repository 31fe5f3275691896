"""Turn official inference JSON / JSON-lines spec files into a Parquet manifest.

    python -m jobs.make_manifest examples/*.json examples/specs.jsonl -o manifests/examples.parquet
    cosmos-ray-make-manifest 's3://bucket/specs/*.jsonl' -o s3://bucket/manifests/run1.parquet \
        --storage-options '{"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}'

Every spec is validated first; on any problem all of them are printed and no manifest is written.
"""

from __future__ import annotations

import argparse
import json
import sys

from cosmos_ray.manifest import ManifestError, make_manifest


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cosmos-ray-make-manifest", description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", metavar="SRC",
                        help="spec files (.json, .jsonl) or globs of them; local paths or fsspec URLs")
    parser.add_argument("-o", "--output", required=True, metavar="URL", help="where to write the .parquet manifest")
    parser.add_argument("--storage-options", type=_json_object, default=None, metavar="JSON",
                        help="fsspec options for remote URLs, as a JSON object")
    parser.add_argument("--no-check-inputs", action="store_true",
                        help="do not check that every input_path exists")
    return parser.parse_args(argv)


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
