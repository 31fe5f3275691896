"""The common shape of a batch stage: a function or a callable class, applied to a Ray Dataset with
`map_batches` and the stage's own arguments (in the spirit of `ray.data.llm`'s processor stages)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import ray
from ray.util.annotations import RayDeprecationWarning


@dataclass(frozen=True)
class Stage:
    """One `map_batches` step. `fn` takes and returns a `pa.Table`: a function (called with `fn_kwargs`), or a
    class that Ray Data instantiates once per actor (with `fn_constructor_kwargs`)."""

    name: str
    fn: Callable[..., pa.Table] | type
    map_batches_kwargs: Mapping[str, Any] = field(default_factory=dict)  # batch_size, compute, num_cpus, ...
    fn_kwargs: Mapping[str, Any] = field(default_factory=dict)
    fn_constructor_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def apply(self, dataset: ray.data.Dataset) -> ray.data.Dataset:
        kwargs: dict[str, Any] = {"batch_format": "pyarrow", **self.map_batches_kwargs}
        if self.fn_kwargs:
            kwargs["fn_kwargs"] = dict(self.fn_kwargs)
        if self.fn_constructor_kwargs:
            kwargs["fn_constructor_kwargs"] = dict(self.fn_constructor_kwargs)
        with warnings.catch_warnings():
            # The GPU stage bounds its actors' restarts and task retries (stages/generate.py). Ray 2.60 has no named
            # parameter for those two, only `**ray_remote_args`, whose deprecation warning (removal announced for
            # Ray 2.64) would otherwise show in every run; the Ray pin in pyproject.toml keeps this call valid.
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated", category=RayDeprecationWarning)
            return dataset.map_batches(self.fn, **kwargs)


def quiet(context: ray.data.DataContext) -> None:
    """No Ray Data progress bars or plans on the console: the job logs one line per sample instead (Ray Data's
    own log file under the session's logs/ray-data keeps everything)."""
    context.enable_progress_bars = False
    context.print_on_execution_start = False
