"""Command-line options the jobs share."""

from __future__ import annotations

import argparse

from cosmos_ray.storage import parse_storage_options


def add_storage_option(parser: argparse.ArgumentParser, applies_to: str) -> None:
    """The repeatable `--storage-option KEY=VALUE` flag; read it back with `storage_options_of`."""
    parser.add_argument(
        "--storage-option",
        dest="storage_options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"fsspec option for {applies_to}, repeatable; VALUE is parsed as JSON when it can be, "
        "dotted keys nest: client_kwargs.endpoint_url=http://...",
    )


def storage_options_of(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict | None:
    """The parsed `--storage-option` pairs; a malformed pair is a usage error (exit 2)."""
    try:
        return parse_storage_options(args.storage_options)
    except ValueError as error:
        parser.error(f"--storage-option: {error}")
