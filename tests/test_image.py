"""The container image: the Dockerfile, checked statically (CI has no Docker engine), and its one name
(deploy/image.py) that the Dockerfile's base, cluster.yaml and the KubeRay manifests must all use."""

from __future__ import annotations

import re
import shutil
from pathlib import Path, PurePosixPath

import pytest
import tomllib
import yaml

from deploy.image import KUBERAY_MANIFESTS, images, main, mismatches, pinned_ray_version, write

REPO = Path(__file__).resolve().parents[1]


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    instructions = []
    for line in text.splitlines():
        kind, _, args = line.strip().partition(" ")
        if kind and not kind.startswith("#"):
            instructions.append((kind, args.strip()))
    return instructions


def _run_steps() -> list[str]:
    """The commands of the RUN instructions, split at `&&`, in order."""
    return [" ".join(step.split()) for kind, args in _dockerfile() if kind == "RUN" for step in args.split("&&")]


def _readme_pip_commands() -> list[str]:
    """Every `pip install ...` that README.md tells a user to run (in code blocks and inline code)."""
    text = " ".join((REPO / "README.md").read_text().split())
    return [" ".join(found.split()) for found in re.findall(r"pip install [^&`]+", text)]


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_every_file_names_the_same_image():
    problems = mismatches()
    assert not problems, "run `python -m deploy.image --write`:\n" + "\n".join(map(str, problems))


def test_ray_is_pinned_exactly_to_the_ray_the_tests_run():
    import ray

    assert pinned_ray_version(_project()["dependencies"]) == ray.__version__


@pytest.mark.parametrize("loose", ["ray[data,serve]>=2.40", "ray", "ray>=2.60,<2.61", "ray~=2.60.0"])
def test_a_loose_ray_requirement_is_refused(loose):
    with pytest.raises(ValueError, match="pin Ray exactly"):
        pinned_ray_version(["torch>=2.5", loose])


def test_base_is_rays_own_gpu_image_for_the_pinned_ray_and_python():
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    (base,) = [args for kind, args in _dockerfile() if kind == "FROM"]
    match = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py3(\d+)-gpu", base)  # not the discontinued ray-ml
    assert match, f"FROM {base}: expected rayproject/ray:<version>-py3xx-gpu"
    assert match.group(1) == images().ray_version
    assert Version(f"3.{match.group(2)}") in SpecifierSet(_project()["requires-python"])


def test_dockerfile_installs_the_project_as_the_readme_does():
    readme = _readme_pip_commands()
    steps = _run_steps()
    assert steps and all(step in readme for step in steps), f"{steps} are not README.md's commands {readme}"
    torch_pin = next(command for command in readme if command.startswith("pip install torch=="))
    editable = [i for i, step in enumerate(steps) if step.startswith("pip install -e ")]
    assert steps.index(torch_pin) < editable[0], "torch first, as README.md says"
    assert "s3" in steps[editable[0]]  # the cluster reads and writes s3:// (docs/deploy.md)

    # The editable install is of the checkout that COPY put in WORKDIR, before that RUN.
    instructions = _dockerfile()
    kinds = [kind for kind, _ in instructions]
    (workdir,) = [args for kind, args in instructions if kind == "WORKDIR"]
    (copy,) = [args for kind, args in instructions if kind == "COPY"]
    assert copy.split()[-2:] == [".", "."]
    last_run = len(kinds) - 1 - kinds[::-1].index("RUN")
    assert kinds.index("WORKDIR") < kinds.index("COPY") < last_run
    assert steps[-1] == steps[editable[0]]  # the last RUN installs the copied project

    # cluster.yaml mounts the launching checkout over the image's copy and installs it the same way.
    cluster = yaml.safe_load((REPO / "cluster.yaml").read_text())
    (mount,) = [remote for remote, local in cluster["file_mounts"].items() if local == "."]
    assert PurePosixPath(mount.replace("~", "/home/ray")) == PurePosixPath(workdir)


def test_build_context_leaves_out_history_environments_and_weights():
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", "outputs", "checkpoints", "**/*.safetensors", "**/*.pt"} <= ignored


@pytest.fixture
def repo_copy(tmp_path) -> Path:
    for relative in ["pyproject.toml", "Dockerfile", "cluster.yaml", *KUBERAY_MANIFESTS]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / relative, tmp_path / relative)
    return tmp_path


def test_check_finds_a_stale_name_and_write_fixes_it(repo_copy):
    cluster = repo_copy / "cluster.yaml"
    cluster.write_text(cluster.read_text().replace(images().image, "rayproject/ray:2.40.0-py311-gpu"))
    manifest = repo_copy / KUBERAY_MANIFESTS[0]
    manifest.write_text(manifest.read_text().replace('rayVersion: "2.60.0"', 'rayVersion: "2.40.0"'))

    found = mismatches(repo_copy)
    assert {(m.path, m.found) for m in found} == {
        ("cluster.yaml", "rayproject/ray:2.40.0-py311-gpu"),
        (KUBERAY_MANIFESTS[0], '"2.40.0"'),
    }
    assert write(repo_copy) == sorted(["cluster.yaml", KUBERAY_MANIFESTS[0]])
    assert mismatches(repo_copy) == []
    assert yaml.safe_load(cluster.read_text())["docker"]["image"] == images().image


def test_new_ray_pin_moves_every_name(repo_copy):
    pyproject = repo_copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"ray[data,serve]==2.60.0"', '"ray[data,serve]==2.61.0"'))
    names = images(repo_copy)
    assert (names.ray_version, names.base) == ("2.61.0", "rayproject/ray:2.61.0-py311-gpu")
    assert names.image.endswith("-ray2.61.0")
    assert len(mismatches(repo_copy)) > 0
    write(repo_copy)
    assert mismatches(repo_copy) == []
    assert f"FROM {names.base}" in (repo_copy / "Dockerfile").read_text()


def test_cli_prints_the_image_and_checks(capsys):
    assert main([]) == 0
    assert capsys.readouterr().out.strip() == images().image
    assert main(["--check"]) == 0
