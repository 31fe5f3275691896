"""diffusers built as twins of our modules: the second oracle of the rule of fidelity.

The official repository defines the right video (docs/reference-notes.md; `tests/golden/`); diffusers 0.42.1 is
the second oracle. Each constructor here builds diffusers' counterpart of one of our modules holding the same
weights (through our key tables, or diffusers' own converter), so a test compares the two on the same inputs.
The benches (`bench.dit_step`, `bench.parallel`, `bench.vae`, `bench.generator`) time the same twins as the
speed peer: one copy, so the model a bench races is the one these tests check.

diffusers is imported inside the constructors: importing this module needs only torch and our models (a test
can skip without diffusers, and processes that never build a twin never load it).
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from cosmos_ray.models.dit import MiniTrainDiT, diffusers_config, official_to_diffusers_key
from cosmos_ray.models.vae import WanVAE
from cosmos_ray.models.weights import rename_keys

if TYPE_CHECKING:
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler
    from diffusers.pipelines.cosmos.pipeline_cosmos2_5_predict import Cosmos2_5_PredictBasePipeline


def diffusers_dit(model: MiniTrainDiT) -> nn.Module:
    """diffusers' CosmosTransformer3DModel holding `model`'s weights, on its device, in float32.

    Its q/k RMSNorm eps is set to the reference's 1e-6. Its padding-mask resize needs torchvision;
    where that is missing, `F.interpolate(mode="nearest")` (what torchvision runs for NEAREST on
    tensors) stands in for it.
    """
    from diffusers.models.transformers import transformer_cosmos

    if not transformer_cosmos.is_torchvision_available():
        resize = lambda img, size, interpolation: F.interpolate(img, size=size, mode=interpolation)  # noqa: E731
        transformer_cosmos.transforms = types.SimpleNamespace(
            functional=types.SimpleNamespace(resize=resize), InterpolationMode=types.SimpleNamespace(NEAREST="nearest")
        )
    device = next(model.parameters()).device
    with torch.device(device):
        twin = transformer_cosmos.CosmosTransformer3DModel(**diffusers_config(model.cfg))
    for block in twin.transformer_blocks:
        for attn in (block.attn1, block.attn2):
            attn.norm_q.eps = attn.norm_k.eps = 1e-6
    twin.load_state_dict(rename_keys(model.state_dict(), official_to_diffusers_key), strict=True)
    return twin.eval().requires_grad_(False)


def diffusers_vae(vae: WanVAE) -> AutoencoderKLWan:
    """diffusers' AutoencoderKLWan holding `vae`'s weights (diffusers' own converter) and latent statistics, on
    the CPU in float32."""
    from diffusers import AutoencoderKLWan
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    cfg = vae.cfg
    twin = AutoencoderKLWan(
        base_dim=cfg.base_channels,
        z_dim=cfg.latent_channels,
        dim_mult=list(cfg.channel_multipliers),
        num_res_blocks=cfg.num_res_blocks,
        temperal_downsample=list(cfg.temporal_downsample),
        latents_mean=list(cfg.latent_mean),
        latents_std=list(cfg.latent_std),
    ).eval()
    twin.load_state_dict(convert_wan_vae_to_diffusers(vae.state_dict()), strict=True)
    return twin


def diffusers_scheduler() -> UniPCMultistepScheduler:
    """The scheduler diffusers' conversion script gives Cosmos-Predict2.5."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(
        use_karras_sigmas=True, use_flow_sigmas=True, prediction_type="flow_prediction", sigma_max=200.0, sigma_min=0.01
    )


class NoSafetyChecker:
    """Stands in for diffusers' cosmos_guardrail checker, which is not installed (latents and videos only)."""

    def to(self, *args: Any, **kwargs: Any) -> NoSafetyChecker:
        return self


def diffusers_pipeline(dit: MiniTrainDiT, vae: WanVAE) -> Cosmos2_5_PredictBasePipeline:
    """diffusers' Cosmos2_5_PredictBasePipeline holding our DiT's and VAE's weights, on the VAE's device and in its
    dtype (the DiT twin in the VAE's dtype too)."""
    from diffusers.pipelines.cosmos.pipeline_cosmos2_5_predict import Cosmos2_5_PredictBasePipeline

    vae_twin = diffusers_vae(vae).to(device=vae.conv2.weight.device, dtype=vae.dtype).requires_grad_(False)
    pipeline = Cosmos2_5_PredictBasePipeline(
        text_encoder=None,
        tokenizer=None,
        transformer=diffusers_dit(dit).to(vae.dtype),
        vae=vae_twin,
        scheduler=diffusers_scheduler(),
        safety_checker=NoSafetyChecker(),
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
