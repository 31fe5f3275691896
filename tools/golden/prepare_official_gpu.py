"""Builds `.official/`, the folder that carries the official DiT to a GPU machine that lacks the official
environment (tools/golden/official_speed.py runs it there with PYTHONPATH=.official:.):

    python -m tools.golden.prepare_official_gpu OFFICIAL_CHECKOUT [--commit SHA] [--file PATH=SOURCE@SHA ...]

Run it from the project root with the official code's environment (docs/reference-notes.md, "Golden fixtures"),
where the official configuration composes. It writes into `.official/` (git-ignored):
  cosmos_predict2/...   the official source files that importing the DiT (`MinimalV1LVGDiT`, its attention op and
                        the lazy config that instantiates it) loads, and nothing else (about 90 files)
  nets.json             the net config of each timed model as the official configuration composes it
                        (`make_config()` + `experiment=...`, tools/golden/model_config.py), its target as a string
  omegaconf/, loguru/, ...  the pure-Python packages the DiT's modules import that a bare PyTorch machine lacks,
                        unpacked from wheels at the versions the checkout's uv.lock pins
  PROVENANCE.json       the checkout's commit, each copied file's commit and sha256, the packages and versions
`--file PATH=SOURCE@SHA` puts SOURCE in place of the checkout's PATH (a file of the DiT taken from another
commit, e.g. the attention dispatch of a later release, which adds SageAttention 2), recorded with SHA.
The folder holds about 2 MiB (85 official files, 6 packages).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from tools.golden.dit import SETTINGS, install_transformer_engine_stand_ins
from tools.golden.harness import ROOT, Official
from tools.golden.model_config import official_experiment_config

OUT = ROOT / ".official"
TIMED_NETS = ("2B",)  # tools/golden/dit.py settings
# The modules whose import brings in the whole DiT: the network, the attention dispatch, the lazy config.
DIT_MODULES = ("predict2.networks.minimal_v1_lvg_dit", "predict2.networks.attention", "imaginaire.lazy_config")
# Imported by those modules, not on a bare PyTorch machine (torch, numpy, pyyaml, tqdm, einops are there):
# omegaconf (lazy config, conditioner) needs antlr4; attrs (lazy config); loguru (log); iopath (lazy config's
# file I/O) needs portalocker.
PACKAGES = ("omegaconf", "antlr4-python3-runtime", "attrs", "loguru", "iopath", "portalocker")
LOCKED_PACKAGE = re.compile(r'^\[\[package\]\]\nname = "([^"]+)"\nversion = "([^"]+)"', re.MULTILINE)


def dit_files(official: Official) -> list[Path]:
    """The checkout's source files that importing the DiT loads (the stubs of the harness in place)."""
    install_transformer_engine_stand_ins(official)
    for name in DIT_MODULES:
        official.module(name)
    loaded = {
        Path(file).resolve() for module in list(sys.modules.values()) if (file := getattr(module, "__file__", None))
    }
    return sorted(path for path in loaded if path.is_relative_to(official.checkout))


def composed_nets(official: Official) -> dict:
    """{setting: experiment, config file and net config (plain JSON, targets as strings)} of TIMED_NETS."""
    import omegaconf  # type: ignore[import-not-found]  # the official code's dependency, not cosmos-ray's

    registry = official.module("imaginaire.lazy_config.registry")

    def plain(value):
        if isinstance(value, dict):
            return {k: registry.convert_target_to_string(v) if k == "_target_" else plain(v) for k, v in value.items()}
        return [plain(v) for v in value] if isinstance(value, list) else value

    nets = {}
    for setting in TIMED_NETS:
        experiment, config_file = SETTINGS[setting]
        net = official_experiment_config(official, experiment, config_file).model.config.net
        net = plain(omegaconf.OmegaConf.to_container(net, resolve=True))
        nets[setting] = {"experiment": experiment, "config_file": config_file, "net": net}
    return nets


def locked_versions(lock: Path, names: tuple[str, ...]) -> dict[str, str]:
    """The version uv.lock pins for each of `names` (each `[[package]]` table opens with its name and version)."""
    pins = {name: version for name, version in LOCKED_PACKAGE.findall(lock.read_text()) if name in names}
    missing = sorted(set(names) - set(pins))
    if missing:
        raise SystemExit(f"{lock}: no pinned version of {missing}; pass a checkout of cosmos-predict2.5 1.5.0 or later")
    return pins


def unpack_wheels(pins: dict[str, str], into: Path) -> list[str]:
    """Builds (or downloads) a wheel of each pinned package, checks it is pure Python, unpacks it into `into`."""
    with tempfile.TemporaryDirectory() as tmp:
        requirements = [f"{name}=={version}" for name, version in pins.items()]
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp, *requirements], check=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        for wheel in wheels:
            if not wheel.name.endswith("-none-any.whl"):
                raise SystemExit(f"{wheel.name} is not a pure-Python wheel: it cannot be carried to another machine")
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(into)
        return [wheel.name for wheel in wheels]


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkout", type=Path, help="root of a checkout of nvidia-cosmos/cosmos-predict2.5")
    parser.add_argument("--commit", help="the commit the checkout holds, when it is not a git work tree")
    parser.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="PATH=SOURCE@SHA",
        help="put SOURCE in place of the checkout's PATH (a file of commit SHA); repeatable",
    )
    parser.add_argument("--out", type=Path, default=OUT, help="the folder to write (replaced)")
    args = parser.parse_args(argv)
    replacements = {}
    for item in args.file:
        path, _, rest = item.partition("=")
        source, _, sha = rest.rpartition("@")
        if not (path and source and sha) or not Path(source).is_file():
            raise SystemExit(f"--file {item}: expected PATH=SOURCE@SHA with SOURCE an existing file")
        replacements[path] = (Path(source), sha)

    official = Official(args.checkout, args.commit, {path: sha for path, (_, sha) in replacements.items()})
    files = [path.relative_to(official.checkout).as_posix() for path in dit_files(official)]
    unknown = sorted(set(replacements) - set(files))
    if unknown:
        raise SystemExit(f"--file {unknown}: not files the DiT imports; they are among: {', '.join(files)}")
    nets = composed_nets(official)

    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    provenance_files = {}
    for relative in files:
        source, commit = replacements.get(relative, (official.checkout / relative, official.commit))
        target = args.out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        provenance_files[relative] = {"commit": commit, "sha256": hashlib.sha256(target.read_bytes()).hexdigest()}
    pins = locked_versions(official.checkout / "uv.lock", PACKAGES)
    wheels = unpack_wheels(pins, args.out)
    (args.out / "nets.json").write_text(json.dumps(nets, indent=1, sort_keys=True) + "\n")
    provenance = {
        "generated_by": "tools/golden/prepare_official_gpu.py",
        "repository": "nvidia-cosmos/cosmos-predict2.5",
        "commit": official.commit,
        "files": provenance_files,
        "packages": pins,
        "wheels": wheels,
    }
    (args.out / "PROVENANCE.json").write_text(json.dumps(provenance, indent=1, sort_keys=True) + "\n")
    size = folder_bytes(args.out)
    print(f"wrote {args.out}: {len(files)} official files, {len(wheels)} wheels, {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
