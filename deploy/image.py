"""The container image of every cosmos-ray node, named in one place.

    python -m deploy.image            # print the image reference
    python -m deploy.image --check    # exit 1, listing them, if files name another image or Ray version
    python -m deploy.image --write    # rewrite those files to agree

    docker build -t "$(python -m deploy.image)" . && docker push "$(python -m deploy.image)"

The image (`Dockerfile`) is Ray's own GPU image for the Ray version pinned in pyproject.toml with this project
installed as README.md installs it. Its reference is `REPOSITORY:{project version}-ray{Ray version}`. Set
REPOSITORY to your registry, or bump the project version in pyproject.toml after changing the code, then run
`--write`: the Dockerfile's base image, `cluster.yaml` and the KubeRay manifests follow (docs/deploy.md).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]

REPOSITORY = "ghcr.io/my-org/cosmos-ray"  # where `docker push` puts the image: your registry
PYTHON = "3.11"  # the Python of Ray's base image, hence of every node

# Where the names appear: `FROM` in the Dockerfile, `image:` and KubeRay's `rayVersion:` in the YAML files.
BASE_IMAGE_LINE = re.compile(r"^(FROM\s+)(\S+)", re.MULTILINE)
IMAGE_LINE = re.compile(r"^(\s*(?:-\s+)?image:\s+)(\S+)", re.MULTILINE)
RAY_VERSION_LINE = re.compile(r'^(\s*rayVersion:\s+)("[^"]*"|\S+)', re.MULTILINE)
KUBERAY_MANIFESTS = ("deploy/kuberay/rayjob.yaml", "deploy/kuberay/rayservice.yaml")


@dataclass(frozen=True)
class Images:
    """The names derived from pyproject.toml and this module."""

    ray_version: str  # the exact Ray pin
    base: str  # the Dockerfile's base: Ray's GPU image of that version
    image: str  # what every node runs: the built Dockerfile


@dataclass(frozen=True)
class Mismatch:
    path: str  # relative to the repository
    line: int
    found: str
    expected: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.found} (expected {self.expected})"


def images(repo: Path = REPO) -> Images:
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    ray = pinned_ray_version(project["dependencies"])
    return Images(
        ray_version=ray,
        base=f"rayproject/ray:{ray}-py{PYTHON.replace('.', '')}-gpu",
        image=f"{REPOSITORY}:{project['version']}-ray{ray}",
    )


def pinned_ray_version(dependencies: list[str]) -> str:
    """The version of the `ray==X` requirement; the image and every node must run exactly that Ray."""
    (ray,) = [Requirement(d) for d in dependencies if Requirement(d).name == "ray"]
    pins = [spec.version for spec in ray.specifier if spec.operator == "=="]
    if len(pins) != 1 or len(ray.specifier) != 1:
        raise ValueError(f"pyproject.toml must pin Ray exactly (ray[...]==X.Y.Z), not {str(ray)!r}")
    return pins[0]


def _places(names: Images) -> list[tuple[str, re.Pattern, str]]:
    """(file, the pattern of the line holding a name, the name it must hold)."""
    places = [("Dockerfile", BASE_IMAGE_LINE, names.base), ("cluster.yaml", IMAGE_LINE, names.image)]
    for manifest in KUBERAY_MANIFESTS:
        places += [(manifest, IMAGE_LINE, names.image), (manifest, RAY_VERSION_LINE, f'"{names.ray_version}"')]
    return places


def mismatches(repo: Path = REPO) -> list[Mismatch]:
    """Every image or Ray version that differs from `images()`, and every file that names none."""
    found = []
    for path, pattern, expected in _places(images(repo)):
        text = (repo / path).read_text()
        matches = list(pattern.finditer(text))
        if not matches:
            found.append(Mismatch(path, 0, f"no line matching {pattern.pattern!r}", expected))
        for match in matches:
            if match.group(2) != expected:
                line = text.count("\n", 0, match.start()) + 1
                found.append(Mismatch(path, line, match.group(2), expected))
    return found


def write(repo: Path = REPO) -> list[str]:
    """Rewrite every name to agree with `images()`; returns the files changed."""
    changed = []
    for path, pattern, expected in _places(images(repo)):
        text = (repo / path).read_text()
        new = pattern.sub(lambda match: match.group(1) + expected, text)
        if new != text:
            (repo / path).write_text(new)
            changed.append(path)
    return sorted(set(changed))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.image",
        description="Print the container image every node runs (REPOSITORY:{project version}-ray{Ray version}), "
        "or check/rewrite the files that name it: the Dockerfile's base image, cluster.yaml and the KubeRay "
        "manifests.",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--check", action="store_true", help="exit 1, listing them, if any file disagrees")
    action.add_argument("--write", action="store_true", help="rewrite the files that disagree")
    args = parser.parse_args(argv)
    if args.check:
        problems = mismatches()
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    if args.write:
        for path in write():
            print(f"updated {path}")
        return 0
    print(images().image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
