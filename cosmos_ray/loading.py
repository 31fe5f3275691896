"""Loading an official model's networks (DiT, VAE, text encoder) from a random-weight preset or a checkpoint
folder, onto a device: what `Generator.from_pretrained` builds a generator from.

Checkpoint folders (`source`) come in two layouts:
- official: the Hugging Face downloads in one folder (`cosmos_ray.core.registry` has the layout): the model's
  DiT at its official path (e.g. `base/post-trained/81edfebe-..._ema_bf16.pt`), `tokenizer.pth` (the
  Wan2.1 VAE), and the Reason1 text encoder in `text_encoder/` (a Hugging Face Qwen2.5-VL folder);
- diffusers: `transformer/`, `vae/`, `text_encoder/` and `tokenizer/` of a Cosmos-Predict2.5 pipeline
  (the weights of the model named by `model`).
A folder may be an fsspec URL: the files the model needs are fetched once per node into the local cache
(`cosmos_ray.core.fetch_cache`).

A user's own DiT (`checkpoint_path`: post-trained, full or LoRA) replaces only the DiT of `source`; the VAE and the
text encoder still come from `source`. It may be a consolidated official `.pt` (`scripts/convert_distcp_to_pt.py`'s
`model.pt` / `model_ema_fp32.pt` / `model_ema_bf16.pt`: `net.` and/or `net_ema.` keys, EMA preferred, LoRA
factors beside the base weights), a `.safetensors` file (official or diffusers names), or a diffusers
`transformer/` folder, local or at a URL. A LoRA the checkpoint holds is merged into its weights at load time
(`cosmos_ray.models.lora`): the checkpoint's model is base + LoRA.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from cosmos_ray.core.adapters import LoraRef
from cosmos_ray.core.attention_precision import BF16_ATTENTION, AttentionPrecision
from cosmos_ray.core.fetch_cache import FetchCache
from cosmos_ray.core.offload_config import OffloadConfig
from cosmos_ray.core.presets import RANDOM_PRESETS, RandomPreset
from cosmos_ray.core.registry import MODELS, TEXT_ENCODER_FOLDER, VAE_FILE, OfficialModel
from cosmos_ray.core.storage import is_local
from cosmos_ray.models.attention_8bit import QuantizedSelfAttention, check_kernel
from cosmos_ray.models.dit import DIT_PRESETS, DiTConfig, MiniTrainDiT, load_dit, read_dit_state_dict, with_rope_tables
from cosmos_ray.models.fp8_linear import check_supported as check_fp8_linears
from cosmos_ray.models.fp8_linear import use_fp8_linears
from cosmos_ray.models.lora import (
    AdapterCache,
    DiTAdapters,
    adapter_from_state,
    check_adapter,
    merge_permanently,
    split_lora,
)
from cosmos_ray.models.text import TextEncoder, TextEncoderConfig, build_tiny_tokenizer
from cosmos_ray.models.text_cache import EmbeddingCache
from cosmos_ray.models.vae import VAEConfig, WanVAE, load_vae
from cosmos_ray.models.weights import find_mismatches, load_into, mismatch_error

RANDOM_SEED = 0


@dataclass(frozen=True)
class ModelInfo:
    """What produced a video, recorded in its metadata."""

    model: OfficialModel  # the official model whose net, sampler and inference types these are
    weights: str  # a random preset's name, or the DiT checkpoint's file name
    trained_resolution: tuple[int, int]  # (H, W) that resolution "none" means
    # native latent frames (the official config's state_t): what a spec without `cosmos_ray_num_frames`
    # generates, and an autoregressive window
    state_t: int
    checkpoint: Checkpoint | None = None  # the user's own DiT (`checkpoint_path`), None for `source`'s
    linear_precision: str = "bf16"  # the GEMMs of the DiT blocks' large linears ("fp8": `use_fp8_linears`)


@dataclass(frozen=True)
class Checkpoint:
    """A user's DiT checkpoint as the records name it: the path or URL given, and its content's SHA-256 (of the
    file; of a folder, of its files' names and hashes)."""

    path: str
    sha256: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "sha256": self.sha256}


class Models(NamedTuple):
    dit: MiniTrainDiT
    vae: WanVAE
    text_encoder: TextEncoder
    info: ModelInfo


def load_models(
    source: str,
    model: OfficialModel,
    *,
    device: torch.device,
    dtype: torch.dtype,
    offload: OffloadConfig,
    cache: EmbeddingCache,
    compile: bool = False,
    attention_backend: str = "auto",
    attention_precision: AttentionPrecision = BF16_ATTENTION,
    linear_precision: str = "bf16",
    checkpoint_path: str | None = None,
    fetch: FetchCache | None = None,
    net: type[MiniTrainDiT] = MiniTrainDiT,
) -> Models:
    """`model`'s networks from random preset `source` (`RANDOM_PRESETS`) or checkpoint folder `source` (a local
    path or URL), with the DiT of `checkpoint_path` instead of `source`'s when given.

    They are on `device` in `dtype`, except those `offload` names, which are loaded on the CPU. The DiT uses
    `attention_backend` (`cosmos_ray.models.attention`) and `attention_precision` for its self-attention (an
    8-bit kernel that cannot run here raises RuntimeError before anything loads); `linear_precision` "fp8" runs
    its large linears as e4m3 GEMMs (`cosmos_ray.models.fp8_linear`; checked first too); `compile` torch.compiles
    its blocks. `fetch` brings remote files to local disk (default: the node's cache). `net` is the DiT class of
    the model's family (a subclass of `MiniTrainDiT`, built from its `config_type`). A checkpoint that does not
    fit the model raises CheckpointMismatchError before anything is put on the device.
    """
    if attention_precision.quantized:
        check_kernel(attention_precision.kernel, device, dtype, dit_config(source, model, net).head_dim)
    if linear_precision == "fp8":
        check_fp8_linears(device)
    fetch = fetch or FetchCache()
    home = torch.device("cpu")
    dit_device = home if offload.diffusion_model else device
    preset = RANDOM_PRESETS.get(source)
    checkpoint = None
    dit: MiniTrainDiT | None = None
    if checkpoint_path is not None:
        cfg = dit_config(source, model, net)
        dit, checkpoint = load_checkpoint_dit(
            checkpoint_path, cfg, model, fetch, device=dit_device, dtype=dtype, merge_device=device, net=net
        )
    if preset is not None:
        drawn, vae, text_encoder = _random_models(preset, model, device, dtype, cache, offload, dit is None, net)
        dit = dit or drawn
        weights = source if checkpoint is None else Path(checkpoint.path.rstrip("/")).name
        info = ModelInfo(
            model, weights, preset.trained_resolution or model.trained_resolution, model.state_t, checkpoint
        )
    else:
        folder = Path(fetch.folder(source, keep=_needed_files(model, own_dit=dit is not None)))
        dit_path, vae_path = locate_weights(folder, model)
        if dit is None:
            dit = load_dit(dit_path, net.config_type.of_model(model), device=dit_device, dtype=dtype, net=net)
        vae = load_vae(vae_path, VAEConfig.preset("wan2.1"), device=home if offload.tokenizer else device, dtype=dtype)
        text_encoder = TextEncoder.from_pretrained(
            str(_text_encoder_folder(folder)),
            device=home if offload.text_encoder else device,
            dtype=dtype,
            cache=cache,
        )
        weights = dit_path.name if checkpoint is None else Path(checkpoint.path.rstrip("/")).name
        info = ModelInfo(model, weights, model.trained_resolution, model.state_t, checkpoint)
    assert dit is not None  # the checkpoint's, the preset's or the folder's
    dit.attention_backend = attention_backend
    dit.quantized_attention = QuantizedSelfAttention(attention_precision)
    if linear_precision == "fp8":
        use_fp8_linears(dit)
        info = dataclasses.replace(info, linear_precision=linear_precision)
    if compile:
        dit.compile_blocks()
    return Models(dit, vae, text_encoder, info)


def load_checkpoint_dit(
    path: str,
    cfg: DiTConfig,
    model: OfficialModel,
    fetch: FetchCache,
    *,
    device: torch.device,
    dtype: torch.dtype,
    merge_device: torch.device | None = None,
    net: type[MiniTrainDiT] = MiniTrainDiT,
) -> tuple[MiniTrainDiT, Checkpoint]:
    """The DiT of a user's checkpoint `path` (file or diffusers folder, local or URL) with `cfg`'s shapes, its
    own LoRA merged in (computed on `merge_device`, default `device`), on `device` in `dtype`; and how the
    records name it.

    Everything is checked before the weights move: keys and shapes against `model`'s net, the LoRA factors
    against its layers (CheckpointMismatchError, one line).
    """
    local, sha256 = _fetch_dit(path, fetch)
    base, lora = split_lora(read_dit_state_dict(local))
    with torch.device("meta"):
        dit = net(cfg)
    state = with_rope_tables(base, cfg, net)
    _check_fits(dit, state, path, model, cfg)
    embedded = adapter_from_state(lora, path, sha256=sha256) if lora else None
    if embedded is not None:
        check_adapter(embedded, dit, describe_net(model, cfg))
    load_into(dit, state, what=f"DiT checkpoint {path}")
    dit.to(device)
    if embedded is not None:  # in the file's precision, before the cast
        merge_permanently(dit, [(embedded, 1.0)], merge_device)
    dit.cast(dtype).eval().requires_grad_(False)
    return dit, Checkpoint(path, sha256)


def _fetch_dit(path: str, fetch: FetchCache) -> tuple[str, str]:
    """(local path, SHA-256) of a DiT checkpoint file or folder (`*.safetensors` shards, hashed by name)."""
    is_folder = Path(path).is_dir() if is_local(path) else Path(path.rstrip("/")).suffix == ""
    if not is_folder:
        fetched = fetch.file(path)
        return fetched.path, fetched.sha256
    folder = Path(fetch.folder(path, keep=lambda relative: relative.endswith(".safetensors") and "/" not in relative))
    shards = sorted(folder.glob("*.safetensors"))
    digest = hashlib.sha256()
    for shard in shards:
        digest.update(f"{shard.name} {fetch.sha256_of(str(shard))}\n".encode())
    return str(folder), digest.hexdigest()


def _check_fits(
    dit: MiniTrainDiT, state: dict[str, torch.Tensor], path: str, model: OfficialModel, cfg: DiTConfig
) -> None:
    """One line naming the first offending keys of a checkpoint that does not fit `dit`, and what to pass."""
    missing, unexpected, wrong_shape = find_mismatches(dit, state)
    if not (missing or unexpected or wrong_shape):
        return
    held = _net_size_of(state)
    if held is not None and held != _size_of(cfg.model_channels, cfg.num_blocks):
        models = [name for name, official in MODELS.items() if official.size == held]
        hint = f"the file holds a {held} net: pass a --model of that size ({', '.join(models) or 'tiny preset'})"
    elif missing and not unexpected and not wrong_shape:
        hint = "pass the whole consolidated checkpoint (scripts/convert_distcp_to_pt.py: model_ema_bf16.pt)"
    else:
        hint = "pass a Cosmos-Predict2.5 DiT checkpoint of this model (--model names the model it was trained from)"
    problems = [(f"{len(wrong_shape)} mis-shaped", wrong_shape), (f"{len(missing)} missing", missing)]
    problems += [(f"{len(unexpected)} unexpected", unexpected)]
    problem, keys = next((text, keys) for text, keys in problems if keys)
    raise mismatch_error(f"DiT checkpoint {path}", describe_net(model, cfg), f"{problem} key(s)", keys, hint)


def check_adapters(
    loras: Sequence[LoraRef],
    source: str,
    model: OfficialModel,
    fetch: FetchCache,
    cache: AdapterCache,
    net: type[MiniTrainDiT] = MiniTrainDiT,
) -> None:
    """Reads each adapter into `cache` and checks it against the DiT's shapes (a net on `meta`, no weights):
    CheckpointMismatchError (a missing file StorageError) before any model is loaded."""
    if not loras:
        return
    with torch.device("meta"):
        shapes = net(dit_config(source, model, net))
    checker = DiTAdapters(shapes, describe_net(model, shapes.cfg), fetch, cache)
    for ref in loras:
        checker.load(ref)


def describe_net(model: OfficialModel, cfg: DiTConfig) -> str:
    """The net in messages: "model 2B/post-trained (DiT 2048 wide, 28 blocks)"."""
    return f"model {model.name} ({cfg.describe()})"


def dit_config(source: str, model: OfficialModel, net: type[MiniTrainDiT] = MiniTrainDiT) -> DiTConfig:
    """The config of `model`'s DiT (of class `net`) from `source`: a random preset's shapes, else the released
    ones."""
    preset = RANDOM_PRESETS.get(source)
    return net.config_type.of_model(model, preset.shapes if preset else None)


def _net_size_of(state: dict[str, torch.Tensor]) -> str | None:
    """The DiT preset ("2B", "14B", "tiny") whose width and depth a checkpoint's weights have, if any."""
    patch = state.get("x_embedder.proj.1.weight")
    if patch is None:
        return None
    blocks = 1 + max((int(k.split(".")[1]) for k in state if k.startswith("blocks.")), default=-1)
    return _size_of(patch.shape[0], blocks)


def _size_of(channels: int, blocks: int) -> str | None:
    """The DiT preset with this width and depth, if any."""
    for name in DIT_PRESETS:
        preset = DiTConfig.preset(name)
        if (preset.model_channels, preset.num_blocks) == (channels, blocks):
            return name
    return None


def _needed_files(model: OfficialModel, *, own_dit: bool) -> Callable[[str], bool]:
    """Which files of a checkpoint folder `model` loads (official or diffusers layout): those fetched from a
    remote folder. Without the DiT's when the user's checkpoint replaces it."""
    files = {VAE_FILE.path} | (set() if own_dit else {model.dit_file.path})
    folders = {TEXT_ENCODER_FOLDER, "vae", "tokenizer"} | (set() if own_dit else {"transformer"})
    return lambda relative: relative in files or relative.split("/", 1)[0] in folders


def _random_models(
    preset: RandomPreset,
    model: OfficialModel,
    device: torch.device,
    dtype: torch.dtype,
    cache: EmbeddingCache,
    offload: OffloadConfig,
    with_dit: bool = True,
    net: type[MiniTrainDiT] = MiniTrainDiT,
) -> tuple[MiniTrainDiT | None, WanVAE, TextEncoder]:
    """The preset's DiT (with `model`'s precision; None without `with_dit`), VAE and text encoder, random
    weights from `RANDOM_SEED` (the VAE's are the same with or without the DiT).

    Drawn on the CPU for tiny (the same weights everywhere) and for models that will wait there
    (offloaded), else on `device`.
    """
    cpu = torch.device("cpu")
    draw_device = cpu if preset.draw_on_cpu or offload.diffusion_model or offload.tokenizer else device
    with torch.random.fork_rng(devices=[draw_device] if draw_device.type == "cuda" else []), draw_device:
        torch.manual_seed(RANDOM_SEED)
        # without the DiT, a preset drawn on the CPU still draws it (cheap), so that its VAE is the same
        with torch.device("meta") if not (with_dit or preset.draw_on_cpu) else nullcontext():
            drawn = net(net.config_type.of_model(model, preset.shapes))
        vae = WanVAE(VAEConfig.preset(preset.vae))
    dit = drawn.cast(dtype).eval().requires_grad_(False) if with_dit else None
    vae = vae.to(dtype=dtype).eval().requires_grad_(False)
    text_device = cpu if offload.text_encoder else device
    if preset.text == "tiny":
        text_encoder = TextEncoder.from_pretrained("tiny", device=text_device, dtype=dtype, cache=cache)
    else:
        text_encoder = TextEncoder.from_random(
            TextEncoderConfig.preset(preset.text),
            build_tiny_tokenizer(),
            seed=RANDOM_SEED,
            device=text_device,
            dtype=dtype,
            model_id=f"random-{preset.text}",
            cache=cache,
        )
    return dit, vae, text_encoder


def locate_weights(folder: Path, model: OfficialModel) -> tuple[Path, Path]:
    """(DiT checkpoint, VAE checkpoint) of `model` in an official or diffusers-layout folder."""
    if not folder.is_dir():
        presets = ", ".join(map(repr, RANDOM_PRESETS))
        raise FileNotFoundError(
            f"model source {str(folder)!r} is neither a random preset ({presets}) nor an existing checkpoint folder"
        )
    if (folder / "transformer").is_dir() or (folder / "vae").is_dir():
        if not (folder / "vae" / "diffusion_pytorch_model.safetensors").is_file():
            raise FileNotFoundError(f"diffusers checkpoint {folder} has no vae/diffusion_pytorch_model.safetensors")
        return folder / "transformer", folder / "vae"
    return model.dit_file.locate(folder, model.name), VAE_FILE.locate(folder, model.name)


def _text_encoder_folder(folder: Path) -> Path:
    """The text encoder folder: a diffusers pipeline folder itself, else its `text_encoder/`."""
    if (folder / "transformer").is_dir() or (folder / "vae").is_dir():
        return folder
    return folder / TEXT_ENCODER_FOLDER
