"""The engine of the 7-camera driving model (`2B/auto/multiview`, family "multiview"): a `MultiviewSpec` in, the
seven views out, in one process.

    engine = MultiviewEngine.from_options(EngineOptions(source="tiny", model="2B/auto/multiview"))
    result = engine(spec)          # spec: cosmos_ray.core.multiview_spec.MultiviewSpec
    result.frames                  # uint8 (7 x 29, H, W, 3): the views one after another, as the official mp4
    result.metadata["views"]       # [{"camera": "front_wide", "frames": [0, 29]}, ...]: where each view is

It is built on a base `Generator` holding the multiview net (`cosmos_ray.models.multiview_dit.MultiviewDiT`), whose
text encoder and embedding cache, VAE, sampler, offloading and stage timings it uses as they are. What the official
inference does (cosmos_predict2/multiview.py and `_src/predict2_multiview/` at 7e5ffc83, the 1.5.0 tree):

- the views are one sequence in the order of `CAMERAS` (`camera_keys`), each view's `state_t` (8) latent frames
  after the previous view's, one initial noise over the whole sequence (the base model's, of the spec's seed);
- text: the one prompt's embedding conditions front_wide, the embedding of " " (one space: the "empty string"
  of `compute_empty_and_negative_text_embeddings`) every other view; the unconditional pass (the inference
  passes `use_negative_prompt` True) has the default negative prompt's embedding at front_wide and " " elsewhere
  (`compute_text_embeddings_online_multiview_single_caption`, multiview_vid2vid_model_rectified_flow.py);
- the model's sampler (`2B/auto/multiview`'s recipe in `cosmos_ray.core.registry`) denoises the whole sequence;
- the VAE decodes each view on its own (`MultiviewVid2VidModelRectifiedFlow.decode`: views folded into the batch;
  here one view after another, the same arithmetic in a seventh of the memory);
- `stack_mode` "time" writes the views one after another in time, (3, 7 x 29, H, W) (`arrange_video_visualization`).

With a `ParallelContext` (a GPU group) every rank makes the same calls: the DiT runs under `ParallelDiT` (guidance
halves and Ulysses slices of the 56-frame sequence, which may cut views), each rank decodes a run of whole views
(`decode_views_spread`), and ranks other than 0 return None.

Not built yet (issue 30): image2world / video2world (each view's first latent frames held clean), `stack_mode`
"height" and the autoregressive mode; specs asking for them get a SpecError naming the field.
"""

from __future__ import annotations

import time

import torch

from cosmos_ray.core.multiview_spec import CAMERAS, MULTIVIEW_MODEL, MultiviewSpec
from cosmos_ray.core.options import EngineOptions
from cosmos_ray.core.progress import Progress
from cosmos_ray.core.result import GenerationResult
from cosmos_ray.core.spec import DEFAULT_NEGATIVE_PROMPT, SpecError
from cosmos_ray.core.spec_formats import Spec
from cosmos_ray.generator import Generator
from cosmos_ray.models.multiview_dit import MultiviewDiT
from cosmos_ray.parallel import ParallelContext
from cosmos_ray.parallel.decode import decode_views_spread
from cosmos_ray.records import video_record
from cosmos_ray.stages import step_reporter, to_uint8_frames

# The prompt of the views other than front_wide, and of their unconditional pass: one space, the official
# `empty_string_text_embeddings` (compute_empty_and_negative_text_embeddings at 7e5ffc83).
EMPTY_PROMPT = " "
PROMPTED_CAMERA = "front_wide"  # the official `single_caption_camera_name` of cosmos_predict2/multiview.py


class MultiviewEngine:
    """The seven cameras of one `MultiviewSpec`, on the device of its `Generator`."""

    def __init__(self, generator: Generator):
        """`generator`: model `2B/auto/multiview` with its `MultiviewDiT` (`from_options` builds one)."""
        if not isinstance(generator.dit, MultiviewDiT):
            raise TypeError(
                "the multiview engine needs a generator whose DiT is a MultiviewDiT, not "
                f"{type(generator.dit).__name__}"
            )
        self.generator = generator
        self.device = generator.device

    @classmethod
    def from_options(
        cls,
        options: EngineOptions,
        *,
        device: torch.device | str | None = None,
        parallel: ParallelContext | None = None,
    ) -> MultiviewEngine:
        """The engine an entry point's `EngineOptions` describe, on one rank of `parallel`'s group if given."""
        return cls(Generator.from_options(options, device=device, parallel=parallel, net=MultiviewDiT))

    def __call__(self, spec: Spec, progress: Progress | None = None) -> GenerationResult | None:
        """The spec's seven views, stacked in time as the official mp4: frames uint8 (V x 29, H, W, 3); None on
        ranks other than 0 of a parallel group (every rank must be called).

        `progress(step)` gets a `Step` after every denoising step. The metadata lists the views in order with
        their frames (`views`: camera and [start, stop) in `frames`), so a writer can cut one video per camera.
        """
        if not isinstance(spec, MultiviewSpec):
            raise TypeError(
                f"model {MULTIVIEW_MODEL} takes a MultiviewSpec (the official multiview JSON), not a "
                f"{type(spec).__name__}; parse specs with cosmos_ray.core.spec_formats.parse_spec(..., model=...)"
            )
        generator = self.generator
        generator.info.model.check_spec(spec)
        self._check_built(spec)
        generator.use_weights_of(spec)
        timings: dict[str, float] = {}
        start = time.perf_counter()
        with generator.timed("text_encode", timings):
            prompts = self.encode_prompts(spec)
        latent_frames = generator.info.state_t
        with generator.timed("sampling", timings):
            latents = generator.sample_latents(
                spec,
                prompts,
                None,
                spec.seed,
                len(CAMERAS) * latent_frames,
                generator.info.trained_resolution,
                step_reporter(progress),
            )  # (1, C, V * state_t, H/8, W/8), the views in the order of CAMERAS
        with generator.timed("decode", timings):
            video = self.decode_views(latents)  # (V, 3, T, H, W)
        if not generator.is_output_rank:
            return None
        # (V, 3, T, H, W) -> uint8 (V * T, H, W, 3), the views one after another
        frames = to_uint8_frames(video.transpose(0, 1).flatten(1, 2))
        timings["total"] = time.perf_counter() - start
        metadata = video_record(generator, spec, frames, timings)
        per_view = video.shape[2]
        metadata["views"] = [
            {"camera": camera, "frames": [index * per_view, (index + 1) * per_view]}
            for index, camera in enumerate(CAMERAS)
        ]
        metadata["stack_mode"] = spec.stack_mode
        return GenerationResult(frames, spec.fps, metadata)

    def decode_views(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (1, C, V * state_t, h, w) -> the views (V, 3, T, H, W) in [-1, 1], float32, each decoded on its
        own; spread over the group in a parallel one (every rank must call this, and gets every view)."""
        generator = self.generator
        views = latents[0].unflatten(1, (-1, generator.info.state_t)).transpose(0, 1)  # (V, C, state_t, h, w)
        with generator.offloader.running(generator.vae.decoding_modules, generator.offload.tokenizer):
            return decode_views_spread(generator.vae, views.to(generator.vae.dtype), generator.parallel).float()

    def encode_prompts(self, spec: MultiviewSpec) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The text context of every view, (1, V x 512, D) in the order of `CAMERAS`: the prompt's embedding at
        front_wide, the empty prompt's elsewhere; and the unconditional pass's (the default negative prompt at
        front_wide) when the spec is guided, else None."""
        guided = self.generator.guided(spec)
        texts = [spec.prompt, EMPTY_PROMPT] + ([DEFAULT_NEGATIVE_PROMPT] if guided else [])
        prompt, empty, *negative = self.generator.encode_texts(texts)

        def per_view(front: torch.Tensor) -> torch.Tensor:
            return torch.cat([front if camera == PROMPTED_CAMERA else empty for camera in CAMERAS], dim=1)

        return per_view(prompt), per_view(negative[0]) if negative else None

    @staticmethod
    def _check_built(spec: MultiviewSpec) -> None:
        """SpecError for what the official inference does and this engine does not yet (issue 30)."""
        sample = repr(spec.name)
        if spec.inference_type != "text2world":
            raise SpecError(
                sample,
                "inference_type",
                f"{spec.inference_type} is not built yet for model {MULTIVIEW_MODEL} in cosmos-ray (issue 30); "
                "text2world is",
            )
        if spec.stack_mode != "time":
            raise SpecError(
                sample, "stack_mode", f'"{spec.stack_mode}" is not built yet in cosmos-ray (issue 30); use "time"'
            )
        if spec.enable_autoregressive:
            raise SpecError(
                sample,
                "enable_autoregressive",
                f"the autoregressive mode of model {MULTIVIEW_MODEL} is not built yet in cosmos-ray (issue 30)",
            )
