"""Fixture `tiny_runs`: whole runs of the official loop with cosmos-ray's tiny DiT as the network and the official
Wan2.1 VAE code holding the tiny preset's VAE weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from tools.golden.harness import ROOT, Official, pack, write
from tools.golden.sampling import data_batch, official_model


def tiny_models():
    """cosmos-ray's tiny DiT and VAE with the tiny preset's random weights (seed 0, DiT drawn first), float32."""
    from cosmos_ray.models.dit import DiTConfig, MiniTrainDiT
    from cosmos_ray.models.vae import VAEConfig, WanVAE

    with torch.random.fork_rng():
        torch.manual_seed(0)
        dit = MiniTrainDiT(DiTConfig.preset("tiny"))
        vae = WanVAE(VAEConfig.preset("tiny"))
    return dit.eval().requires_grad_(False), vae.eval().requires_grad_(False)


def tiny_embeddings() -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt and negative-prompt embeddings (1, 16, 96) for the tiny runs: seeded, since the Reason1 text
    encoder cannot run outside the official framework (it needs flash-attention)."""
    prompt, negative = (
        torch.from_numpy(np.random.RandomState(seed).standard_normal((1, 16, 96)).astype(np.float32))
        for seed in (11, 12)
    )
    return prompt, negative


class DiTNet(torch.nn.Module):
    """cosmos-ray's DiT behind the official network call: the same inputs, by the official names."""

    is_context_parallel_enabled = False

    def __init__(self, dit):
        super().__init__()
        self.dit = dit

    def disable_context_parallel(self):
        pass

    def forward(
        self, x_B_C_T_H_W, timesteps_B_T, crossattn_emb, condition_video_input_mask_B_C_T_H_W, padding_mask, **_
    ):
        return self.dit(
            x_B_C_T_H_W.float(),
            timesteps_B_T.float(),
            crossattn_emb.float(),
            padding_mask=padding_mask.float(),
            condition_mask=condition_video_input_mask_B_C_T_H_W.float(),
        )


def official_vae(official: Official, weights: dict, dtype: torch.dtype):
    """The official WanVAE (tokenizers/wan2pt1.py) built by its own constructors with the tiny preset's widths,
    holding `weights` (official parameter names) in `dtype`, and the tokenizer interface the model uses."""
    wan = official.module("predict2.tokenizers.wan2pt1")
    original = wan._video_vae

    def tiny_video_vae(pretrained_path=None, **kwargs):  # the official builder, with the tiny width and no S3
        built = original(pretrained_path=None, dim=8, **kwargs)
        built[0].load_state_dict(weights, assign=False)
        return built

    wan._video_vae = tiny_video_vae  # type: ignore[attr-defined]  # a patch of the official module
    try:
        vae = wan.WanVAE(dtype=dtype, device="cpu", is_amp=False, temporal_window=16)
    finally:
        wan._video_vae = original  # type: ignore[attr-defined]
    interface = wan.Wan2pt1VAEInterface.__new__(wan.Wan2pt1VAEInterface)
    interface.keep_decoder_cache = interface.keep_encoder_cache = False
    interface.model = vae
    interface.chunk_duration = 81
    return vae, interface


def tiny_runs(official: Official, out: Path) -> None:
    dit, our_vae = tiny_models()
    _, tokenizer = official_vae(official, our_vae.state_dict(), torch.float32)
    prompt, negative = tiny_embeddings()
    inference = official.module("predict2.inference.video2world")
    media = ROOT / "examples" / "media"
    state_t, resolution = 3, (16, 32)
    num_frames = 1 + 4 * (state_t - 1)
    cases = {}
    for name, num_conditional, source, seed in (
        ("text2world", 0, None, 0),
        ("image2world", 1, media / "square.png", 1),
        ("video2world", 2, media / "square.mp4", 2),
    ):
        video = official_input(inference, source, resolution, num_frames, num_conditional)
        model = official_model(official, "post-trained", state_t, DiTNet(dit), tokenizer)
        batch = data_batch(video, num_conditional, prompt, negative)
        cases[name] = official_case(model, batch, num_conditional, source, seed)
    content = {
        "model": "cosmos-ray tiny preset (DiT as the network; its VAE weights in the official VAE code)",
        "state_t": state_t,
        "resolution": list(resolution),
        "embeddings": "tiny_embeddings() in tools/official_golden.py",
        "cases": cases,
    }
    write(out, "tiny_runs", official, content)


def official_input(
    inference: Any, source: Path | None, resolution: tuple[int, int], num_frames: int, num_conditional: int
) -> torch.Tensor:
    """The conditioning video (1, 3, T, H, W) uint8 as the official inference reads `source` (zeros for none)."""
    if source is None:
        return torch.zeros(1, 3, num_frames, *resolution, dtype=torch.uint8)
    if source.suffix == ".png":
        return inference.read_and_process_image(str(source), list(resolution), num_frames, resize=True)
    return inference.read_and_process_video(str(source), list(resolution), num_frames, num_conditional)


def official_case(model: Any, batch: dict, num_conditional: int, source: Path | None, seed: int) -> dict:
    """One 3-step guided run of the official model on `batch`: its latents and decoded frames 0, 4 and 8."""
    latents = model.generate_samples_from_batch(
        batch, n_sample=1, guidance=7, seed=seed, is_negative_prompt=True, num_steps=3
    )
    decoded = model.decode(latents)  # (1, 3, T, H, W), the official VAE decode
    return {
        "num_conditional_frames": num_conditional,
        "input": None if source is None else f"examples/media/{source.name}",
        "seed": seed,
        "num_steps": 3,
        "guidance": 7,
        "latents": pack(latents),
        "video_frames_0_4_8": pack(decoded[:, :, ::4]),
    }
