"""Import boundaries: the Ray driver side never loads torch, and the engine never loads Ray (checked in fresh
interpreters, and for the engine's torch modules by reading their imports)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Modules of the engine that the Ray driver side imports (specs, manifests, outputs, media files, results, the
# official models and presets by name, the model and offload options, the guardrail interface).
TORCH_FREE_ENGINE = [
    "cosmos_ray",
    "cosmos_ray.dtypes",
    "cosmos_ray.guardrails",
    "cosmos_ray.limits",
    "cosmos_ray.manifest",
    "cosmos_ray.media",
    "cosmos_ray.model_options",
    "cosmos_ray.offload_config",
    "cosmos_ray.outputs",
    "cosmos_ray.presets",
    "cosmos_ray.progress",
    "cosmos_ray.registry",
    "cosmos_ray.result",
    "cosmos_ray.shards",
    "cosmos_ray.spec",
    "cosmos_ray.storage",
]


def loaded_after_importing(modules: list[str]) -> list[str]:
    """Which of torch and ray a new interpreter holds after importing `modules`."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps([package for package in ('torch', 'ray') if package in sys.modules]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def test_the_ray_driver_side_loads_no_torch():
    """The batch job's driver, pool actors and writer tasks, the Serve app's ingress, job board and replica
    actors, and the job CLI import these; only the rank workers load the engine's models."""
    assert "torch" not in loaded_after_importing(["pipelines.batch", "pipelines.serve", "jobs.generate"])


def test_the_engines_driver_side_modules_load_neither_torch_nor_ray():
    assert loaded_after_importing(TORCH_FREE_ENGINE) == []


def test_no_engine_module_imports_ray():
    """Every module of cosmos_ray/, read rather than imported (its models would load torch and transformers)."""
    offenders = []
    for path in sorted((REPO / "cosmos_ray").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(REPO)}: {name}" for name in names if name.split(".")[0] == "ray"]
    assert offenders == []
