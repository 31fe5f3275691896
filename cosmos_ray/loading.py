"""Loading an official model's networks (DiT, VAE, text encoder) from a random-weight preset or a checkpoint
folder, onto a device: what `Generator.from_pretrained` builds a generator from.

Checkpoint folders (`source`) come in two layouts:
- official: the Hugging Face downloads in one folder (`cosmos_ray.core.registry` has the layout): the model's
  DiT at its official path (e.g. `base/post-trained/81edfebe-..._ema_bf16.pt`), `tokenizer.pth` (the
  Wan2.1 VAE), and the Reason1 text encoder in `text_encoder/` (a Hugging Face Qwen2.5-VL folder);
- diffusers: `transformer/`, `vae/`, `text_encoder/` and `tokenizer/` of a Cosmos-Predict2.5 pipeline
  (the weights of the model named by `model`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from cosmos_ray.core.offload_config import OffloadConfig
from cosmos_ray.core.presets import RANDOM_PRESETS, RandomPreset
from cosmos_ray.core.registry import TEXT_ENCODER_FOLDER, VAE_FILE, OfficialModel
from cosmos_ray.models.dit import DiTConfig, MiniTrainDiT, load_dit
from cosmos_ray.models.text import TextEncoder, TextEncoderConfig, build_tiny_tokenizer
from cosmos_ray.models.text_cache import EmbeddingCache
from cosmos_ray.models.vae import VAEConfig, WanVAE, load_vae

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
) -> Models:
    """`model`'s networks from random preset `source` (`RANDOM_PRESETS`) or checkpoint folder `source`.

    They are on `device` in `dtype`, except those `offload` names, which are loaded on the CPU. The DiT uses
    `attention_backend` (`cosmos_ray.models.attention`); `compile` torch.compiles its blocks.
    """
    if source in RANDOM_PRESETS:
        preset = RANDOM_PRESETS[source]
        dit, vae, text_encoder = _random_models(preset, model, device, dtype, cache, offload)
        info = ModelInfo(model, source, preset.trained_resolution or model.trained_resolution, model.state_t)
    else:
        home = torch.device("cpu")
        folder = Path(source)
        dit_path, vae_path = locate_weights(folder, model)
        dit = load_dit(
            dit_path, DiTConfig.of_model(model), device=home if offload.diffusion_model else device, dtype=dtype
        )
        vae = load_vae(vae_path, VAEConfig.preset("wan2.1"), device=home if offload.tokenizer else device, dtype=dtype)
        text_encoder = TextEncoder.from_pretrained(
            str(_text_encoder_folder(folder)),
            device=home if offload.text_encoder else device,
            dtype=dtype,
            cache=cache,
        )
        info = ModelInfo(model, dit_path.name, model.trained_resolution, model.state_t)
    dit.attention_backend = attention_backend
    if compile:
        dit.compile_blocks()
    return Models(dit, vae, text_encoder, info)


def _random_models(
    preset: RandomPreset,
    model: OfficialModel,
    device: torch.device,
    dtype: torch.dtype,
    cache: EmbeddingCache,
    offload: OffloadConfig,
) -> tuple[MiniTrainDiT, WanVAE, TextEncoder]:
    """The preset's DiT (with `model`'s precision), VAE and text encoder, random weights from `RANDOM_SEED`.

    Drawn on the CPU for tiny (the same weights everywhere) and for models that will wait there
    (offloaded), else on `device`.
    """
    cpu = torch.device("cpu")
    draw_device = cpu if preset.draw_on_cpu or offload.diffusion_model or offload.tokenizer else device
    with torch.random.fork_rng(devices=[draw_device] if draw_device.type == "cuda" else []), draw_device:
        torch.manual_seed(RANDOM_SEED)
        dit = MiniTrainDiT(DiTConfig.of_model(model, preset.shapes))
        vae = WanVAE(VAEConfig.preset(preset.vae))
    dit = dit.cast(dtype).eval().requires_grad_(False)
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
    if (folder / "transformer").is_dir():
        if not (folder / "vae" / "diffusion_pytorch_model.safetensors").is_file():
            raise FileNotFoundError(f"diffusers checkpoint {folder} has no vae/diffusion_pytorch_model.safetensors")
        return folder / "transformer", folder / "vae"
    return model.dit_file.locate(folder, model.name), VAE_FILE.locate(folder, model.name)


def _text_encoder_folder(folder: Path) -> Path:
    """The text encoder folder: a diffusers pipeline folder itself, else its `text_encoder/`."""
    if (folder / "transformer").is_dir():
        return folder
    return folder / TEXT_ENCODER_FOLDER
