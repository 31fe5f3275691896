"""The harness of tools/official_golden.py: stubs for the modules the official code imports but never runs,
the official modules imported from a checkout with their provenance (`Official`), and the fixture format
(`pack`, `write`)."""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.machinery
import json
import os
import subprocess
import sys
import types
import zlib
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent.parent

# Imported by the official modules below but never run by this script; each with why it is stubbed.
STUBS = {
    "cosmos_cuda": "the release's CUDA extra (its package only checks that it is installed, at the same version)",
    "megatron": "model-parallel framework (GPU); parallel_state.is_initialized() answers False: no model parallelism",
    "megatron.core": "see megatron",
    "megatron.core.parallel_state": "see megatron",
    "transformer_engine": "GPU kernels (RMSNorm, fused RoPE, attention); the DiT piece puts CPU stand-ins there",
    "transformer_engine.pytorch": "see transformer_engine",
    "transformer_engine.pytorch.attention": "see transformer_engine",
    "transformer_engine_torch": "see transformer_engine (the fused Adam optimizer, training only)",
    "decord": "video reader of the training datasets, imported by the configuration's data modules",
    "apex": "fused optimizers (training)",
    "apex.multi_tensor_apply": "see apex",
    "wandb": "experiment logging service",
    "wandb.util": "see wandb",
    "pynvml": "GPU monitoring",
    "multistorageclient": "NVIDIA's multi-storage client (remote object stores), imported by the file-I/O backends",
    "multistorageclient.types": "see multistorageclient",
    "boto3": "S3 client (checkpoints on S3)",
    "boto3.s3": "see boto3",
    "boto3.s3.transfer": "see boto3",
    "botocore": "see boto3",
    "botocore.config": "see boto3",
    "botocore.exceptions": "see boto3",
    "matplotlib": "plots (visualization)",
    "matplotlib.pyplot": "see matplotlib",
    "pytest": "imported by training test helpers",
    "albumentations": "image augmentations of the GR00T robot datasets, imported by the action configs' experiments",
    "cosmos_predict2._src.reason1.networks.qwen2_5_vl": "the Reason1 network: asserts flash-attention at import",
    "cosmos_predict2._src.predict2.networks.clip": "Wan2.1 CLIP embedder: calls torch.cuda at import; unused by 2B",
    "cosmos_predict2._src.interactive": "distilled-model loader, used only by Video2WorldInference.__init__",
    "cosmos_predict2._src.interactive.utils": "see cosmos_predict2._src.interactive",
    "cosmos_predict2._src.interactive.utils.model_loader": "see cosmos_predict2._src.interactive",
}


class _StubModule(types.ModuleType):
    """A module whose every attribute is an inert class: importable, constructible, never doing anything."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {"__init__": lambda self, *args, **kwargs: None, "__module__": self.__name__})


def install_stub(name: str) -> None:
    """Puts a `_StubModule` (a package with a module spec, as importlib's look-ups expect) at `name`."""
    module = _StubModule(name)
    module.__path__ = []
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent in sys.modules:
        setattr(sys.modules[parent], child, module)


def install_stubs() -> None:
    for name in STUBS:
        install_stub(name)
    sys.modules["megatron.core.parallel_state"].is_initialized = lambda: False  # type: ignore[attr-defined]


class Official:
    """The official modules this script runs, imported from a checkout, with their provenance."""

    def __init__(self, checkout: Path, commit: str | None, file_commits: dict[str, str]):
        self.checkout = checkout.resolve()
        if not (self.checkout / "cosmos_predict2").is_dir():
            raise SystemExit(f"{checkout} is not a checkout of cosmos-predict2.5 (no cosmos_predict2/ folder)")
        self.commit = commit or _git_head(self.checkout)
        self.file_commits = file_commits  # files of the checkout taken from another commit
        install_stubs()
        sys.modules["cosmos_cuda"].__version__ = _release_version(self.checkout)  # type: ignore[attr-defined]
        sys.path.insert(0, str(self.checkout))
        sys.path.insert(1, str(ROOT))
        sys.path.insert(2, str(self.checkout / "packages" / "cosmos-oss"))  # the checkpoint database (later releases)
        self.used: set[str] = set()

    def module(self, name: str) -> types.ModuleType:
        module = importlib.import_module(f"cosmos_predict2._src.{name}")
        self.used.add(str(module.__file__))
        return module

    def provenance(self) -> dict:
        files = {}
        for path in sorted(self.used):
            relative = os.path.relpath(path, self.checkout)
            files[relative] = {
                "commit": self.file_commits.get(relative, self.commit),
                "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16],
            }
        self.used.clear()
        return {
            "repository": "nvidia-cosmos/cosmos-predict2.5",
            "commit": self.commit,
            "files": files,
            "stubbed_modules": sorted(STUBS),
            "torch": torch.__version__,
        }


def _release_version(checkout: Path) -> str:
    """The `__version__` that `cosmos_predict2/__about__.py` assigns (releases after the first check it)."""
    about = checkout / "cosmos_predict2" / "__about__.py"
    if not about.exists():
        return "0"
    for line in about.read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    return "0"


def _git_head(checkout: Path) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise SystemExit(f"{checkout} is not a git checkout: pass the commit it holds with --commit") from None


def pack(tensor: torch.Tensor | np.ndarray) -> dict:
    """A tensor as {dtype, shape, data}: its raw little-endian bytes, zlib-compressed, base64 (bf16 as uint16)."""
    if isinstance(tensor, torch.Tensor):
        tensor = tensor.detach().cpu().contiguous()
        dtype = str(tensor.dtype).removeprefix("torch.")
        array = tensor.view(torch.uint16).numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
    else:
        array, dtype = np.ascontiguousarray(tensor), str(tensor.dtype)
    data = base64.b64encode(zlib.compress(array.astype(array.dtype.newbyteorder("<")).tobytes(), 9)).decode()
    return {"dtype": dtype, "shape": list(array.shape), "data": data}


def write(out: Path, piece: str, official: Official, content: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    record = {"generated_by": "tools/official_golden.py", "official": official.provenance(), **content}
    (out / f"{piece}.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out / piece}.json ({(out / f'{piece}.json').stat().st_size // 1024} KiB)")
