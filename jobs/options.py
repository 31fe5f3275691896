"""Command-line options the jobs share."""

from __future__ import annotations

import argparse
import dataclasses
import re

from cosmos_ray.limits import SpecLimits
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


def add_limit_options(parser: argparse.ArgumentParser) -> None:
    """One flag per `SpecLimits` field (`--max-pixels N`, ...), defaulting to its value there; read them back
    with `limits_of`."""
    group = parser.add_argument_group("spec limits", "a spec over a limit is rejected, with the field and the reason")
    for field in dataclasses.fields(SpecLimits):
        group.add_argument(
            "--" + field.name.replace("_", "-"),
            type=int,
            default=field.default,
            metavar="N",
            help=f"{field.metadata['help']} of one spec (default %(default)s)",
        )


def limits_of(parser: argparse.ArgumentParser, args: argparse.Namespace) -> SpecLimits:
    """The `SpecLimits` of the parsed limit flags; a bad value is a usage error (exit 2)."""
    try:
        return SpecLimits(**{field.name: getattr(args, field.name) for field in dataclasses.fields(SpecLimits)})
    except ValueError as error:
        parser.error(str(error))


_BYTE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_BYTE_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def byte_size(text: str) -> int:
    """An argparse type: a positive size in bytes, with an optional unit (`500MB`, `2GiB`, `1.5GB`, `1000000`)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if match is None or match.group(2).lower() not in _BYTE_UNITS:
        raise argparse.ArgumentTypeError(f"expected a size like 500MB or 2GiB, got {text!r}")
    size = int(float(match.group(1)) * _BYTE_UNITS[match.group(2).lower()])
    if size < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte, got {text!r}")
    return size
