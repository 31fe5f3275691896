"""Checkpoint loading shared by every model: read a file lazily, normalize its keys, load strictly.

The official checkpoints are PyTorch `.pt` files (a plain state dict, or one nested under "model" /
"state_dict"), sometimes holding both regular (`net.`) and EMA (`net_ema.`) weights, plus training-only
entries (`_extra_state`, counters). Diffusers-layout files are `.safetensors`. Each model file owns its
own key table (official name <-> diffusers name); this module only knows how to read and place tensors.

Memory: `.pt` files are opened with `mmap=True` and safetensors lazily, and tensors are assigned into a
module built on the `meta` device (`load_state_dict(assign=True)`), so a 2B checkpoint never needs two
copies in host memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

TRAINING_ONLY_SUFFIXES = (
    "_extra_state",
    "accum_video_sample_counter",
    "accum_image_sample_counter",
    "accum_iteration",
    "accum_train_in_hours",
)


class CheckpointMismatchError(ValueError):
    """A checkpoint's keys or shapes do not fit the model it is loaded into."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Reads `.pt`/`.pth`/`.bin` (memory-mapped) or `.safetensors` into a flat CPU state dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    obj = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    for nested in ("model", "state_dict", "module"):
        if isinstance(obj, Mapping) and nested in obj and isinstance(obj[nested], Mapping):
            obj = obj[nested]
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def select_prefix(state: Mapping[str, torch.Tensor], prefixes: Iterable[str]) -> dict[str, torch.Tensor]:
    """Keeps the keys under the first prefix of `prefixes` present in `state`, with that prefix removed.

    Keys under none of the prefixes are kept unchanged only when no prefix matched at all (a bare
    state dict). Pass e.g. ("net_ema.", "net.") to prefer EMA weights when a file holds both.
    """
    for prefix in prefixes:
        picked = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if picked:
            return picked
    return dict(state)


def drop_training_entries(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Removes entries that only training uses (extra state, sample counters)."""
    return {k: v for k, v in state.items() if not k.endswith(TRAINING_ONLY_SUFFIXES)}


def rename_keys(state: Mapping[str, torch.Tensor], rename: Callable[[str], str | None]) -> dict[str, torch.Tensor]:
    """Applies a key table; `rename` returns None for keys that are to be dropped."""
    out = {}
    for key, value in state.items():
        new = rename(key)
        if new is not None:
            out[new] = value
    return out


def find_mismatches(module: nn.Module, state: Mapping[str, torch.Tensor]) -> tuple[list[str], list[str], list[str]]:
    """(missing keys, unexpected keys, "key: file (..) vs model (..)" shape mismatches) of `state` for `module`,
    each sorted."""
    expected = {k: v.shape for k, v in module.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k])}"
        for k in set(expected) & set(state)
        if tuple(state[k].shape) != tuple(expected[k])
    )
    return missing, unexpected, wrong_shape


def mismatch_error(what: str, model: str, problem: str, keys: Sequence[str], hint: str) -> CheckpointMismatchError:
    """The one-line error of a file that does not fit a model: the file, the model, the problem with the first
    offending keys, and what to pass instead."""
    shown = ", ".join(keys[:3]) + (f" (and {len(keys) - 3} more)" if len(keys) > 3 else "")
    return CheckpointMismatchError(f"{what} does not fit {model}: {problem}: {shown}; {hint}")


def load_into(module: nn.Module, state: Mapping[str, torch.Tensor], *, what: str = "checkpoint") -> nn.Module:
    """Loads `state` strictly into `module`, assigning tensors (works for modules built on `meta`).

    Raises CheckpointMismatchError that lists missing keys, unexpected keys and shape mismatches.
    """
    missing, unexpected, wrong_shape = find_mismatches(module, state)
    if missing or unexpected or wrong_shape:

        def listing(title: str, items: list[str]) -> str:
            if not items:
                return ""
            shown = "\n    ".join(items[:20])
            more = f"\n    ... and {len(items) - 20} more" if len(items) > 20 else ""
            return f"\n  {title} ({len(items)}):\n    {shown}{more}"

        raise CheckpointMismatchError(
            f"{what} does not fit {type(module).__name__}:"
            + listing("missing keys", missing)
            + listing("unexpected keys", unexpected)
            + listing("shape mismatches", wrong_shape)
        )
    module.load_state_dict(dict(state), strict=True, assign=True)
    return module
