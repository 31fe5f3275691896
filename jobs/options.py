"""Command-line options the entry points share: the engine's (`EngineOptions`), storage, spec limits, sizes.

Every entry point that runs the engine (`jobs.local`, `jobs.generate`, the benches) calls `add_engine_options`
and builds its one `EngineOptions` with `engine_options_of`; an option has the same flag everywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Callable
from typing import Any

from cosmos_ray.core.limits import SpecLimits
from cosmos_ray.core.media import MediaLimits
from cosmos_ray.core.offload_config import OffloadConfig
from cosmos_ray.core.options import EngineOptions
from cosmos_ray.core.presets import RANDOM_PRESETS
from cosmos_ray.core.registry import models_help
from cosmos_ray.core.storage import Storage, parse_storage_options

# the EngineOptions fields with flags of their own shape
SOURCE_FIELDS = ("source", "offload", "storage", "media_limits")


def models_epilog() -> str:
    """The models `--model` offers, one per line with its purpose (a RawDescriptionHelpFormatter epilog)."""
    return "official models (--model):\n" + models_help()


def add_engine_options(
    parser: argparse.ArgumentParser, *, default_preset: str | None = None, offload_flags: bool = True
) -> None:
    """The engine's flags: the weights (`--preset` or `--checkpoint-dir`, one of them required unless there is
    a `default_preset`), then one flag per `EngineOptions` field that has a `help` (`--model`, `--dtype`,
    `--compile`, ...), then the official offload flags (unless `offload_flags` is False: a bench that compares
    offload settings). Read them back with `engine_options_of`."""
    source = parser.add_mutually_exclusive_group(required=default_preset is None)
    source.add_argument(
        "--preset",
        choices=sorted(RANDOM_PRESETS),
        default=default_preset,
        help="random weights: 'tiny' (tests and CPU smoke runs; any model) or 'random-2B' / 'random-14B' (the "
        "released shapes of a 2B / 14B model, for GPU trials and benchmarks)",
    )
    source.add_argument(
        "--checkpoint-dir",
        metavar="DIR",
        help="folder holding the official checkpoint files, or a diffusers pipeline folder (on every GPU node)",
    )
    for field in dataclasses.fields(EngineOptions):
        if field.name in SOURCE_FIELDS:
            continue
        flag = "--" + field.name.replace("_", "-")
        meta = field.metadata
        if meta["repeat"] is not None:
            repeat_flag, parse = meta["repeat"]
            parser.add_argument(
                repeat_flag,
                dest=field.name,
                action="append",
                type=parse,
                default=[],
                metavar=meta["metavar"],
                help=meta["help"],
            )
        elif field.type == "bool":
            parser.add_argument(flag, action="store_true", help=meta["help"])
        elif field.type == "bool | None":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=meta["help"])
        else:
            help = meta["help"] + (" (default: %(default)s)" if field.default is not None else "")
            choices = meta["choices"]() if meta["choices"] else None
            convert: Callable[[str], Any] = int if field.type == "int" else str
            parser.add_argument(
                flag, type=convert, choices=choices, metavar=meta["metavar"], default=field.default, help=help
            )
    limits = ", ".join(f"{limit.name} ({limit.default})" for limit in dataclasses.fields(MediaLimits))
    parser.add_argument(
        "--media-limit",
        dest="media_limits",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"a limit on conditioning inputs, checked before their pixels are decoded, repeatable: {limits}",
    )
    if not offload_flags:
        return
    offload = parser.add_argument_group(
        "offloading",
        "keep a model on the CPU and move it to the GPU only while it runs:\n"
        "less GPU memory, more time per video (the official flags)",
    )
    offload.add_argument("--offload-diffusion-model", "--offload_diffusion_model", action="store_true", help="the DiT")
    offload.add_argument(
        "--offload-tokenizer", "--offload_tokenizer", action="store_true", help="the VAE (encoder and decoder)"
    )
    offload.add_argument(
        "--offload-text-encoder", "--offload_text_encoder", action="store_true", help="the Reason1 text encoder"
    )


def engine_options_of(
    parser: argparse.ArgumentParser, args: argparse.Namespace, storage: Storage = Storage()
) -> EngineOptions:
    """The `EngineOptions` of parsed `add_engine_options` flags, reaching URLs through `storage`; an invalid
    combination (e.g. a 14B preset with a 2B model) is a usage error (exit 2)."""
    generic = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(EngineOptions)
        if field.name not in SOURCE_FIELDS
    }
    try:
        return EngineOptions(
            source=args.checkpoint_dir or args.preset,
            offload=OffloadConfig(
                diffusion_model=getattr(args, "offload_diffusion_model", False),
                tokenizer=getattr(args, "offload_tokenizer", False),
                text_encoder=getattr(args, "offload_text_encoder", False),
            ),
            storage=storage,
            media_limits=MediaLimits.from_pairs(args.media_limits),
            **generic,
        )
    except ValueError as error:
        parser.error(str(error))


def add_storage_option(parser: argparse.ArgumentParser, applies_to: str) -> None:
    """The repeatable `--storage-option KEY=VALUE` flag; read it back with `storage_of`."""
    parser.add_argument(
        "--storage-option",
        dest="storage_options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"fsspec option for {applies_to}, repeatable; VALUE is parsed as JSON when it can be, "
        "dotted keys nest: client_kwargs.endpoint_url=http://...",
    )


def add_http_options(parser: argparse.ArgumentParser, off: str) -> None:
    """--allow-http and --allow-private-http, the http(s) input policy (`off`: what happens without the first)."""
    parser.add_argument("--allow-http", action="store_true", help=f"let specs read http(s) input_path URLs ({off})")
    parser.add_argument(
        "--allow-private-http",
        action="store_true",
        help="let http(s) reads reach loopback, private and link-local addresses (off: public addresses only; "
        "redirects are never followed)",
    )


def storage_of(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Storage:
    """The entry point's one `Storage`: its parsed `--storage-option` pairs and its `add_http_options` flags
    (none, where it has no such flag); a malformed pair is a usage error (exit 2)."""
    try:
        options = parse_storage_options(getattr(args, "storage_options", []))
    except ValueError as error:
        parser.error(f"--storage-option: {error}")
    return Storage(
        options=options,
        allow_http=getattr(args, "allow_http", False),
        allow_private_http=getattr(args, "allow_private_http", False),
    )


def add_limit_options(parser: argparse.ArgumentParser) -> None:
    """One flag per `SpecLimits` field (`--max-pixels N`, ...), defaulting to its value there; read them back
    with `limits_of`."""
    group = parser.add_argument_group("spec limits", "a spec over a limit is rejected, with the field and the reason")
    for field in dataclasses.fields(SpecLimits):
        group.add_argument(
            "--" + field.name.replace("_", "-"),
            type=type(field.default),  # int, or float for max_cost
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
