"""The command-line options that choose a model and its offloading, shared by every entry point.

`--model` takes the official names; the offload flags are the official ones (the official spelling with
underscores is accepted too). `MODELS_EPILOG` lists the models for the parser's epilog (use
`argparse.RawDescriptionHelpFormatter`).
"""

from __future__ import annotations

import argparse

from cosmos_ray.offload_config import OffloadConfig
from cosmos_ray.registry import DEFAULT_MODEL, MODEL_NAMES, models_help

MODELS_EPILOG = "official models (--model):\n" + models_help()


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        choices=MODEL_NAMES,
        default=DEFAULT_MODEL,
        metavar="NAME",
        help="official model: its checkpoint, net and sampler (listed below; default: %(default)s)",
    )
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


def offload_of(args: argparse.Namespace) -> OffloadConfig:
    """The OffloadConfig of parsed `add_model_options` arguments."""
    return OffloadConfig(
        diffusion_model=args.offload_diffusion_model,
        tokenizer=args.offload_tokenizer,
        text_encoder=args.offload_text_encoder,
    )
