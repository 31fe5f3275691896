"""Import boundaries: the Ray driver side never loads torch, and the engine never loads Ray (checked in fresh
interpreters, and for the engine's torch modules by reading their imports)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CORE = REPO / "cosmos_ray" / "core"


def core_modules() -> list[str]:
    """Every module of the torch-free core, found in its folder (a new file is covered without a list)."""
    return sorted(
        ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__") for path in CORE.rglob("*.py")
    )


def imported_modules(path: Path) -> list[str]:
    """The absolute module names a source file imports, read from its syntax tree (nothing is run)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


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


def test_the_core_loads_neither_torch_nor_ray():
    modules = core_modules()
    assert "cosmos_ray.core.spec" in modules and "cosmos_ray.core.options" in modules
    assert loaded_after_importing(modules) == []


def test_the_core_imports_nothing_of_the_engine():
    """The folder rule: a module under cosmos_ray/core/ imports only the core of cosmos_ray (never the engine
    beside it, not even lazily inside a function), so the engine builds on the core and never the reverse."""
    offenders = [
        f"{path.relative_to(REPO)}: {name}"
        for path in sorted(CORE.rglob("*.py"))
        for name in imported_modules(path)
        if name.startswith("cosmos_ray.") and not name.startswith("cosmos_ray.core")
    ]
    assert offenders == []


def test_no_engine_module_imports_ray():
    """Every module of cosmos_ray/, read rather than imported (its models would load torch and transformers)."""
    offenders = [
        f"{path.relative_to(REPO)}: {name}"
        for path in sorted((REPO / "cosmos_ray").rglob("*.py"))
        for name in imported_modules(path)
        if name.split(".")[0] == "ray"
    ]
    assert offenders == []
