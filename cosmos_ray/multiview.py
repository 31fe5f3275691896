"""The engine of the 7-camera driving model (`2B/auto/multiview`, family "multiview"): a `MultiviewSpec` in, the
seven views out, in one process.

    engine = MultiviewEngine.from_options(EngineOptions(source="tiny", model="2B/auto/multiview"))
    result = engine(spec)          # spec: cosmos_ray.core.multiview_spec.MultiviewSpec
    result.frames                  # uint8 (7 x 29, H, W, 3): the views one after another, as the official mp4
    result.metadata["views"]       # [{"camera": "front_wide", "frames": [0, 29]}, ...]: where each view is
                                   # ("rows" [start, stop) in place of "frames" for stack_mode "height")

It is built on a base `Generator` holding the multiview net (`cosmos_ray.models.multiview_dit.MultiviewDiT`), whose
text encoder and embedding cache, VAE, sampler, offloading and stage timings it uses as they are. What the official
inference does (cosmos_predict2/multiview.py and `_src/predict2_multiview/` at 7e5ffc83, the 1.5.0 tree):

- the views are one sequence in the order of `CAMERAS` (`camera_keys`), each view's `state_t` (8) latent frames
  after the previous view's, one initial noise over the whole sequence (the base model's, of the spec's seed);
- text: the one prompt's embedding conditions front_wide, the embedding of " " (one space: the "empty string"
  of `compute_empty_and_negative_text_embeddings`) every other view; the unconditional pass (the inference
  passes `use_negative_prompt` True) has the default negative prompt's embedding at front_wide and " " elsewhere
  (`compute_text_embeddings_online_multiview_single_caption`, multiview_vid2vid_model_rectified_flow.py);
- image2world / video2world: each camera's video (`cosmos_ray.multiview_inputs`: its first frames every rate / fps,
  stretched to the resolution) is VAE-encoded view by view, and each view's first 1 / 2 latent frames are held clean
  in the sequence (`view_held_frames`: the official condition location "first_random_n", the mask 1 on those
  frames of every view); they share the noisy frames' timestep (no `conditional_frame_timestep`);
- the model's sampler (the "multiview" recipe: the shift-5 UniPC loop, guided from the unconditional pass,
  uncond + g (cond - uncond), both passes at every guidance) denoises the whole sequence;
- the VAE decodes each view on its own (`MultiviewVid2VidModelRectifiedFlow.decode`: views folded into the batch;
  here one view after another, the same arithmetic in a seventh of the memory);
- `stack_mode` "time" writes the views one after another in time, (3, 7 x T, H, W); "height" one above another,
  (3, T, 7 x H, W), in the official layout's order (`HEIGHT_ORDER`; `arrange_video_visualization`, whose names the
  1.5.0 inference does not find: see docs/reference-notes.md);
- the autoregressive mode (`generate_from_batch_autoregressive`): `num_chunks` chunks of 29 frames per view, chunk
  k > 0 conditioned on `chunk_overlap` latent frames encoded from the previous chunk's last `chunk_overlap` frames
  of each view (uint8, then black), every chunk with the spec's seed; each view is chunk 0 then every later chunk
  from frame `chunk_overlap`: 29 + (num_chunks - 1) (29 - chunk_overlap) frames. It runs through the base mode's
  `autoregressive.windows` / `generate`, with a frame of all seven views.

With a `ParallelContext` (a GPU group) every rank makes the same calls: the DiT runs under `ParallelDiT` (guidance
halves and Ulysses slices of the 56-frame sequence, which may cut views), each rank decodes a run of whole views
(`decode_views_spread`) and gets every view (a chunk conditions the next on every rank), and ranks other than 0
return None.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from cosmos_ray import autoregressive
from cosmos_ray.autoregressive import Chunk, InputClip
from cosmos_ray.core.multiview_spec import CAMERAS, FRAMES_PER_VIEW, MultiviewSpec
from cosmos_ray.core.progress import Progress
from cosmos_ray.core.result import GenerationResult
from cosmos_ray.core.spec import DEFAULT_NEGATIVE_PROMPT
from cosmos_ray.core.spec_formats import Spec
from cosmos_ray.family_engine import FamilyEngine
from cosmos_ray.models.multiview_dit import MultiviewDiT
from cosmos_ray.multiview_inputs import read_view_frames
from cosmos_ray.parallel.decode import decode_views_spread
from cosmos_ray.records import video_record
from cosmos_ray.sampling import HeldFrames
from cosmos_ray.stages import step_reporter, to_uint8_frames

# The prompt of the views other than front_wide, and of their unconditional pass: one space, the official
# `empty_string_text_embeddings` (compute_empty_and_negative_text_embeddings at 7e5ffc83).
EMPTY_PROMPT = " "
PROMPTED_CAMERA = "front_wide"  # the official `single_caption_camera_name` of cosmos_predict2/multiview.py
# `stack_mode` "height": the views from top to bottom, the official layout `VISUALIZE_LAYOUTS_MADS["height"]`
# (scripts/mv_visualize_helper.py at 7e5ffc83), whose older camera names are read as the 1.5.0 keys
# (camera_rear_tele_30fov is "rear"); see docs/reference-notes.md for what the official code does with them.
HEIGHT_ORDER = ("rear_left", "cross_left", "front_wide", "cross_right", "rear_right", "rear", "front_tele")


class MultiviewEngine(FamilyEngine[MultiviewSpec]):
    """The seven cameras of one `MultiviewSpec`, on the device of its `Generator` (model `2B/auto/multiview` with its
    `MultiviewDiT`; `from_options` builds one, on one rank of a GPU group if given)."""

    net = MultiviewDiT
    spec_type = MultiviewSpec

    def __call__(self, spec: Spec, progress: Progress | None = None) -> GenerationResult | None:
        """The spec's seven views as the official mp4: `stack_mode` "time" gives frames uint8 (V x T, H, W, 3),
        "height" (T, V x H, W, 3); T = `spec.frames_per_view` (29, more in the autoregressive mode). None on ranks
        other than 0 of a parallel group (every rank must be called).

        `progress(step)` gets a `Step` after every denoising step (of every chunk). The metadata lists the views
        in the order of the video (`views`: camera and [start, stop) of its `frames`, or of its `rows` for
        "height"), so a writer can cut one video per camera.
        """
        spec = self.accept(spec)
        generator = self.generator
        timings: dict[str, float] = {}
        chunks: list[dict] = []
        start = time.perf_counter()
        height, width = generator.info.trained_resolution
        with generator.timed("text_encode", timings):
            prompts = self.encode_prompts(spec)
        layout = self.plan(spec)
        with generator.timed("conditioning", timings):
            inputs = self.read_inputs(spec, layout[0].num_conditional, height, width)
        r = generator.vae.cfg.temporal_compression

        def window(chunk: Chunk, conditioning: np.ndarray | None) -> np.ndarray:
            begin = time.perf_counter()
            frames = self.generate_chunk(spec, prompts, chunk, conditioning, timings, progress, len(layout))
            chunks.append(
                {
                    "frames": [chunk.start, chunk.end],
                    "seed": chunk.seed,
                    "conditional_frames": chunk.num_conditional,
                    "seconds": round(time.perf_counter() - begin, 4),
                }
            )
            return frames

        views = autoregressive.generate(
            layout,
            window,
            InputClip(inputs, repeat_last=False),
            frame_shape=(len(CAMERAS), height, width),
            temporal_compression=r,
        )  # (T, V, H, W, 3)
        if not generator.is_output_rank:
            return None
        frames, placement = stack_views(views, spec.stack_mode)
        timings["total"] = time.perf_counter() - start
        metadata = video_record(generator, spec, frames, timings, chunks if spec.enable_autoregressive else ())
        metadata["views"] = placement
        metadata["stack_mode"] = spec.stack_mode
        return GenerationResult(frames, spec.fps, metadata)

    def plan(self, spec: MultiviewSpec) -> list[Chunk]:
        """The spec's chunks of 29 frames per view: one, or `num_chunks` in the autoregressive mode, chunk k > 0
        starting `chunk_overlap` frames before chunk k - 1 ends, conditioned on `chunk_overlap` latent frames, all
        with the spec's seed (`Vid2VidInference.generate_from_batch_autoregressive` at 7e5ffc83)."""
        return autoregressive.windows(
            spec.frames_per_view, FRAMES_PER_VIEW, spec.chunk_overlap, spec.num_conditional_frames, spec.seed, 0
        )

    def read_inputs(self, spec: MultiviewSpec, num_latent: int, height: int, width: int) -> np.ndarray:
        """The pixel frames of every view that its first `num_latent` latent frames encode, uint8
        (1 + 4 (n - 1), V, H, W, 3); none (0 frames) for text2world (`cosmos_ray.multiview_inputs`)."""
        if num_latent == 0:
            return np.zeros((0, len(CAMERAS), height, width, 3), np.uint8)
        num_pixel = 1 + self.generator.vae.cfg.temporal_compression * (num_latent - 1)
        generator = self.generator
        return read_view_frames(
            spec, num_pixel, height, width, storage=generator.storage, limits=generator.media_limits
        )

    def generate_chunk(
        self,
        spec: MultiviewSpec,
        prompts: tuple[torch.Tensor, torch.Tensor | None],
        chunk: Chunk,
        conditioning: np.ndarray | None,
        timings: dict[str, float],
        progress: Progress | None,
        num_chunks: int,
    ) -> np.ndarray:
        """One chunk of every view, uint8 (29, V, H, W, 3): each view's first `chunk.num_conditional` latent frames
        held clean, encoded from `conditioning` (uint8 (1 + 4 (n - 1), V, H, W, 3), None for n = 0)."""
        generator = self.generator
        state_t = generator.info.state_t
        held = None
        if conditioning is not None:
            with generator.timed("conditioning", timings):
                # each view on its own, the views in the batch (as the official encode)
                held = view_held_frames(generator.encode_frames(conditioning.swapaxes(0, 1)), state_t)
        with generator.timed("sampling", timings):
            latents = generator.sample_latents(
                spec,
                prompts,
                held,
                chunk.seed,
                len(CAMERAS) * state_t,
                generator.info.trained_resolution,
                step_reporter(progress, chunk.index + 1, num_chunks),
            )  # (1, C, V * state_t, H/8, W/8), the views in the order of CAMERAS
        with generator.timed("decode", timings):
            video = self.decode_views(latents)  # (V, 3, T, H, W)
        # (V, 3, T, H, W) -> uint8 (T, V, H, W, 3)
        frames = to_uint8_frames(video.transpose(0, 1).flatten(1, 2))  # (V * T, H, W, 3)
        return frames.reshape(len(CAMERAS), -1, *frames.shape[1:]).swapaxes(0, 1)[: chunk.length]

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


def view_held_frames(latents: torch.Tensor, state_t: int) -> HeldFrames:
    """Each view's first n latent frames held in the sequence of V views of `state_t` frames: `latents`
    (V, C, n, H, W) are their clean latents, the views in sequence order (the official `set_video_condition` with
    condition location "first_random_n" and n frames per view: the mask 1 on frames [v state_t, v state_t + n))."""
    views, channels, held, height, width = latents.shape
    clean = latents.new_zeros(views, channels, state_t, height, width)
    clean[:, :, :held] = latents
    mask = torch.zeros(views, state_t, dtype=torch.bool, device=latents.device)
    mask[:, :held] = True
    return HeldFrames(clean.transpose(0, 1).flatten(1, 2)[None], mask.flatten())  # (1, C, V * state_t, H, W)


def stack_views(views: np.ndarray, stack_mode: str) -> tuple[np.ndarray, list[dict]]:
    """The written video of uint8 views (T, V, H, W, 3) in the order of `CAMERAS`, and where each view is in it.

    "time": the views one after another, (V x T, H, W, 3), each view's `frames` [start, stop); "height": the views
    one above another in the order of `HEIGHT_ORDER`, (T, V x H, W, 3), each view's `rows` [start, stop).
    """
    num_frames, num_views, height, width, _ = views.shape
    if stack_mode == "time":
        frames = views.swapaxes(0, 1).reshape(num_views * num_frames, height, width, 3)
        return frames, [
            {"camera": camera, "frames": [index * num_frames, (index + 1) * num_frames]}
            for index, camera in enumerate(CAMERAS)
        ]
    if stack_mode == "height":
        order = [CAMERAS.index(camera) for camera in HEIGHT_ORDER]
        frames = np.ascontiguousarray(views[:, order]).reshape(num_frames, num_views * height, width, 3)
        return frames, [
            {"camera": camera, "rows": [slot * height, (slot + 1) * height]} for slot, camera in enumerate(HEIGHT_ORDER)
        ]
    raise ValueError(f"unknown stack_mode {stack_mode!r}; expected time or height")
