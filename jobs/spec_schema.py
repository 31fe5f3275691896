"""`python -m jobs.spec_schema`: print the JSON Schema of one generation spec (docs/spec.schema.json).

    python -m jobs.spec_schema > docs/spec.schema.json

The schema is the spec model's (`cosmos_ray.core.spec_schema.file_schema`), so it cannot drift from what the manifest
maker, the batch job and Serve accept; a test fails when the committed file is stale.
"""

from __future__ import annotations

import argparse
import sys

from cosmos_ray.core.spec_schema import schema_json


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(prog="python -m jobs.spec_schema", description=__doc__.split("\n\n")[0]).parse_args(argv)
    sys.stdout.write(schema_json())


if __name__ == "__main__":
    main()
