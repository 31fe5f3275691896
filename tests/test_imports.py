"""Import boundaries, each checked in a fresh interpreter: the Ray driver side never loads torch, and the
engine never loads Ray."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import cosmos_ray

REPO = Path(__file__).resolve().parents[1]

# Modules of the engine that the Ray driver side imports (specs, manifests, outputs, media files, results).
TORCH_FREE_ENGINE = (
    "cosmos_ray",
    "cosmos_ray.dtypes",
    "cosmos_ray.limits",
    "cosmos_ray.manifest",
    "cosmos_ray.media",
    "cosmos_ray.outputs",
    "cosmos_ray.result",
    "cosmos_ray.spec",
    "cosmos_ray.storage",
)


def loaded_after_importing(modules: list[str] | tuple[str, ...], watched: tuple[str, ...]) -> list[str]:
    """Which of the `watched` top-level packages a new interpreter holds after importing `modules`."""
    code = (
        "import importlib, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(','.join(p for p in {list(watched)!r} if p in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return [name for name in result.stdout.strip().split(",") if name]


def test_the_ray_driver_side_loads_no_torch():
    """The batch job's driver, pool actors and writer tasks, the Serve app's ingress, job board and replica
    actors, and the job CLI import these; only the rank workers load the engine's models."""
    assert loaded_after_importing(("pipelines.batch", "pipelines.serve", "jobs.generate"), ("torch",)) == []


def test_the_engines_torch_free_modules_load_neither_torch_nor_ray():
    assert loaded_after_importing(TORCH_FREE_ENGINE, ("torch", "ray")) == []


def test_no_engine_module_loads_ray():
    modules = [info.name for info in pkgutil.walk_packages(cosmos_ray.__path__, "cosmos_ray.")]
    assert "cosmos_ray.generator" in modules  # the walk found the engine
    assert loaded_after_importing(modules, ("ray",)) == []
