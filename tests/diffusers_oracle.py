"""diffusers' Cosmos-Predict2.5 pipeline, built tiny and runnable without torchvision or guardrails.

diffusers' Cosmos transformer resizes its padding mask with torchvision (nearest); when torchvision is not
installed, `patch_padding_mask_resize` gives that module the same nearest resize through torch.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLWan, CosmosTransformer3DModel, UniPCMultistepScheduler
from diffusers.models.transformers import transformer_cosmos
from diffusers.pipelines.cosmos.pipeline_cosmos2_5_predict import Cosmos2_5_PredictBasePipeline


def _nearest_resize(image: torch.Tensor, size: list[int], interpolation=None) -> torch.Tensor:
    return F.interpolate(image, size=size, mode="nearest")


def patch_padding_mask_resize(monkeypatch) -> None:
    if not hasattr(transformer_cosmos, "transforms"):
        shim = SimpleNamespace(functional=SimpleNamespace(resize=_nearest_resize),
                               InterpolationMode=SimpleNamespace(NEAREST="nearest"))
        monkeypatch.setattr(transformer_cosmos, "transforms", shim, raising=False)


class NoSafetyChecker:
    """Stands in for the cosmos_guardrail checker (not installed); the tests only ask for latents."""

    def to(self, *args, **kwargs):
        return self


def post_trained_scheduler() -> UniPCMultistepScheduler:
    """The scheduler diffusers' conversion script builds for Cosmos-Predict2.5."""
    return UniPCMultistepScheduler(use_karras_sigmas=True, use_flow_sigmas=True, prediction_type="flow_prediction",
                                   sigma_max=200.0, sigma_min=0.01)


def make_pipeline(transformer: CosmosTransformer3DModel, vae: AutoencoderKLWan) -> Cosmos2_5_PredictBasePipeline:
    return Cosmos2_5_PredictBasePipeline(text_encoder=None, tokenizer=None, transformer=transformer, vae=vae,
                                         scheduler=post_trained_scheduler(), safety_checker=NoSafetyChecker())
