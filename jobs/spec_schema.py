"""`python -m jobs.spec_schema`: print the JSON Schema of one generation spec of a model's format.

    python -m jobs.spec_schema > docs/spec.schema.json
    python -m jobs.spec_schema --model 2B/auto/multiview > docs/multiview_spec.schema.json

The schema is the spec model's (`cosmos_ray.core.spec_schema.file_schema`), so it cannot drift from what the manifest
maker, the batch job and Serve accept; a test fails when the committed file is stale.
"""

from __future__ import annotations

import argparse
import sys

from cosmos_ray.core.multiview_spec import MULTIVIEW_MODEL
from cosmos_ray.core.registry import DEFAULT_MODEL, MODEL_NAMES
from cosmos_ray.core.spec_formats import spec_class
from cosmos_ray.core.spec_schema import schema_json


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m jobs.spec_schema", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        choices=dict.fromkeys((*MODEL_NAMES, MULTIVIEW_MODEL)),
        help=f"the model whose spec format to print: every base model reads one format, {MULTIVIEW_MODEL} the "
        "multiview one (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    sys.stdout.write(schema_json(spec_class(args.model)))


if __name__ == "__main__":
    main()
