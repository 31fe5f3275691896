"""The views of a result that stacks several (the multiview models): where each view lies in the stacked
frames, and the videos written for it. No torch.

A result whose `metadata["views"]` lists its views is written as the stacked video (the official output) plus
one video per view (docs/outputs.md, "Views"). Each entry names its view, under `"camera"` (the driving model's
cameras) or `"view"`, and gives its range [start, stop) of the stacked frames (uint8 (T, H, W, 3)) along one
axis: `"frames"` (views one after another in time), `"rows"` (stacked vertically) or `"columns"` (side by side):

    {"camera": "front_wide", "frames": [0, 29]}     the 7-camera model, stack_mode "time"
    {"view": "wrist", "rows": [240, 480]}            a model that stacks its views vertically

A view's name becomes part of file names and WebDataset keys, so it is letters, digits, `_` and `-` only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cosmos_ray.core.media import write_mp4

AXES = {"frames": 0, "rows": 1, "columns": 2}  # the axis of (T, H, W, 3) that each kind of range cuts
NAME_KEYS = ("camera", "view")
VIEW_NAME = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class View:
    """One view of stacked frames: its name and its range [start, stop) along `axis`."""

    name: str
    axis: str  # a key of AXES
    start: int
    stop: int

    def cut(self, frames: np.ndarray) -> np.ndarray:
        """This view's frames out of the stacked (T, H, W, 3) ones."""
        index: list[slice] = [slice(None)] * frames.ndim
        index[AXES[self.axis]] = slice(self.start, self.stop)
        return frames[tuple(index)]


def views_of(metadata: Mapping[str, Any], shape: tuple[int, ...]) -> list[View]:
    """The views `metadata["views"]` lists (none when it has no such key), checked against the stacked frames'
    `shape` (T, H, W, 3); ValueError saying which entry is malformed and why."""
    entries = metadata.get("views")
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ValueError(f"metadata 'views' must be a list of view objects, got {type(entries).__name__}")
    views = [_view(entry, index, shape) for index, entry in enumerate(entries)]
    names = [view.name for view in views]
    repeated = next((name for name in names if names.count(name) > 1), None)
    if repeated is not None:
        raise ValueError(f"metadata 'views' names view {repeated!r} twice")
    return views


def _view(entry: Any, index: int, shape: tuple[int, ...]) -> View:
    where = f"metadata 'views' entry {index}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be an object, got {entry!r}")
    names = [entry[key] for key in NAME_KEYS if key in entry]
    axes = [axis for axis in AXES if axis in entry]
    if len(names) != 1 or not isinstance(names[0], str) or not VIEW_NAME.fullmatch(names[0]):
        raise ValueError(
            f"{where} must name its view under one of {', '.join(NAME_KEYS)} (letters, digits, _ and -), got {entry!r}"
        )
    if len(axes) != 1:
        raise ValueError(f"{where} must give its range under one of {', '.join(AXES)}, got {entry!r}")
    axis, bounds = axes[0], entry[axes[0]]
    length = shape[AXES[axis]]
    valid = isinstance(bounds, list) and len(bounds) == 2 and all(type(bound) is int for bound in bounds)
    if not valid or not 0 <= bounds[0] < bounds[1] <= length:
        raise ValueError(f"{where}: {axis} must be [start, stop) with 0 <= start < stop <= {length}, got {bounds!r}")
    return View(names[0], axis, bounds[0], bounds[1])


@dataclass(frozen=True)
class EncodedVideo:
    """A result encoded for writing: the (stacked) video, and one video per view in the result's order."""

    mp4: bytes
    views: dict[str, bytes]  # view name -> its mp4; empty for a result of one view

    @property
    def num_bytes(self) -> int:
        """The size of every mp4 of the sample."""
        return len(self.mp4) + sum(len(video) for video in self.views.values())


def encode_video(frames: np.ndarray, fps: int, metadata: Mapping[str, Any], quality: float = 5) -> EncodedVideo:
    """`frames` (uint8 (T, H, W, 3)) as mp4, and each view that `metadata` lists cut out as its own mp4."""
    views = views_of(metadata, frames.shape)
    return EncodedVideo(
        mp4=write_mp4(frames, fps, quality),
        views={view.name: write_mp4(view.cut(frames), fps, quality) for view in views},
    )
