"""The engine of the action-conditioned Bridge robot model (`2B/robot/action-cond`, family "action-cond"): one
episode (`ActionSpec`) in, its rollout video out, in one process.

    engine = ActionEngine.from_options(EngineOptions(source="tiny", model="2B/robot/action-cond"))
    result = engine(spec)          # spec: cosmos_ray.core.action_spec.ActionSpec
    result.frames                  # uint8 (T, H, W, 3), the official stitched video; result.fps: save_fps (20)
    result.metadata["actions"]     # the (N, 7) actions derived from the episode's states
    result.metadata["chunks"]      # per chunk: its seed, the actions it took ([start, stop)), its frames

It is built on a base `Generator` holding the action-conditioned net (`cosmos_ray.models.action_dit.ActionDiT`),
whose text encoder and embedding cache, VAE, sampler ("pre-trained": shift 5, conditional frames at the noisy
timestep), offloading and stage timings it uses as they are. The rollout follows the official inference
(`inference` of cosmos_predict2/action_conditioned.py and `Video2WorldInference.generate_vid2world` of
`_src/predict2/inference/video2world.py`, both at 7e5ffc83):

- the episode's actions (`cosmos_ray.core.robot_episode`) are cut into chunks of `chunk_size` (12) starting at
  action `start_frame_idx`, the last chunk padded with zero actions; `single_chunk` stops after the first;
- chunk i (i: the index of its first action) generates `chunk_size + 1` frames (13: 4 latent frames) from the
  clip [conditioning frame, then black frames], holding its first `num_latent_conditional_frames` latent frames
  clean, with the chunk's actions (B, 12, 7) entering the net, the prompt (default empty) and the negative
  prompt with `guidance`, `num_steps` steps, seed i (here `seed + i`: see `ActionSpec`);
- the first chunk's conditioning frame is the episode's start frame, each later chunk's the last frame of the
  chunk before (as uint8, after the video's conversion to uint8);
- the video is the first chunk's frames, then the first `chunk_size` frames of each later chunk, written at
  `save_fps`.

Episodes are rolled out one at a time (a batch of episodes would need per-sample actions and seeds in the
sampler's batch; not built), on one GPU (the official script has no context parallelism for this model).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Self

import numpy as np
import torch

from cosmos_ray.core.action_spec import ActionSpec
from cosmos_ray.core.options import EngineOptions
from cosmos_ray.core.progress import Progress
from cosmos_ray.core.result import GenerationResult
from cosmos_ray.core.robot_episode import Episode, read_episode
from cosmos_ray.core.spec_base import TEMPORAL_COMPRESSION
from cosmos_ray.core.spec_formats import Spec
from cosmos_ray.family_engine import FamilyEngine
from cosmos_ray.models.action_dit import ActionDiT
from cosmos_ray.parallel import ParallelContext
from cosmos_ray.records import video_record
from cosmos_ray.stages import step_reporter, to_uint8_frames


class ActionEngine(FamilyEngine[ActionSpec]):
    """The rollouts of `ActionSpec`s, on the device of its `Generator` (model `2B/robot/action-cond` with its
    `ActionDiT`; `from_options` builds one)."""

    net = ActionDiT
    spec_type = ActionSpec

    @classmethod
    def from_options(
        cls,
        options: EngineOptions,
        *,
        device: torch.device | str | None = None,
        parallel: ParallelContext | None = None,
    ) -> Self:
        """The engine an entry point's `EngineOptions` describe; one process only."""
        if parallel is not None and parallel.world_size > 1:
            raise NotImplementedError(
                f"model {options.model} runs on one GPU per episode (the official inference has no context "
                "parallelism for it): use groups of one GPU"
            )
        return super().from_options(options, device=device, parallel=parallel)

    def __call__(self, spec: Spec, progress: Progress | None = None) -> GenerationResult:
        """The episode's rollout, stitched as the official video: frames uint8 (T, H, W, 3) at `save_fps`.

        `progress(step)` gets a `Step` after every denoising step of every chunk. The metadata holds the actions
        (`actions`, (N, 7)), the episode's files (`episode`) and one record per chunk (`chunks`)."""
        spec = self.accept(spec)
        generator = self.generator
        timings: dict[str, float] = {}
        start = time.perf_counter()
        with generator.timed("episode", timings):
            episode = read_episode(spec, storage=generator.storage, limits=generator.media_limits)
        with generator.timed("text_encode", timings):
            prompts = generator.encode_prompts(spec)  # type: ignore[arg-type]  # reads prompt and negative_prompt
        frames, chunks = self.rollout(spec, episode, prompts, progress, timings)
        timings["total"] = time.perf_counter() - start
        metadata = video_record(generator, spec, frames, timings, chunks)
        metadata["actions"] = episode.actions.tolist()
        metadata["episode"] = {"annotation": episode.annotation_url, "video": episode.video_url}
        return GenerationResult(frames, spec.fps, metadata)

    def rollout(
        self,
        spec: ActionSpec,
        episode: Episode,
        prompts: tuple[torch.Tensor, torch.Tensor | None],
        progress: Progress | None,
        timings: dict[str, float],
    ) -> tuple[np.ndarray, list[dict]]:
        """The chunks of the episode one after another; the stitched frames uint8 (T, H, W, 3) and one record per
        chunk."""
        starts = chunk_starts(spec, len(episode.actions))
        frame = episode.start_frame  # (H, W, 3): what conditions the next chunk
        videos: list[np.ndarray] = []
        chunks: list[dict] = []
        for index, first in enumerate(starts):
            actions = chunk_actions(episode.actions, first, spec.chunk_size)  # (chunk_size, 7)
            reporter = step_reporter(progress, index + 1, len(starts))
            video = self.generate_chunk(spec, frame, actions, spec.seed + first, prompts, reporter, timings)
            frame = video[-1]
            kept = video if index == 0 else video[: spec.chunk_size]
            stitched = sum(len(v) for v in videos)
            videos.append(kept)
            chunks.append(
                {
                    "chunk": index,
                    "seed": spec.seed + first,
                    "actions": [first, min(first + spec.chunk_size, len(episode.actions))],
                    "frames": [stitched, stitched + len(kept)],
                }
            )
        return np.concatenate(videos), chunks

    def generate_chunk(
        self,
        spec: ActionSpec,
        frame: np.ndarray,
        actions: np.ndarray,
        seed: int,
        prompts: tuple[torch.Tensor, torch.Tensor | None],
        progress: Callable[[int, int], None] | None,
        timings: dict[str, float],
    ) -> np.ndarray:
        """One chunk: frame uint8 (H, W, 3) and actions (chunk_size, 7) -> its frames uint8 (chunk_size + 1, H, W,
        3), the official `generate_vid2world` of the clip [frame, black frames]."""
        generator = self.generator
        with generator.timed("conditioning", timings):
            conditional = self.encode_conditioning(spec, frame)
        with generator.timed("sampling", timings):
            latents = generator.sample_latents(
                spec,
                prompts,
                conditional,
                seed,
                spec.chunk_size // TEMPORAL_COMPRESSION + 1,
                frame.shape[:2],
                progress,
                net_inputs={"actions": torch.from_numpy(actions).float()[None].to(self.device)},
            )  # (1, C, 1 + chunk_size / 4, H/8, W/8)
        with generator.timed("decode", timings):
            return to_uint8_frames(generator.decode(latents)[0])

    def encode_conditioning(self, spec: ActionSpec, frame: np.ndarray) -> torch.Tensor | None:
        """Clean latents (1, C, n, H/8, W/8) of a chunk's n conditional latent frames, or None for n = 0: the
        VAE is causal, so encoding the first 1 + 4 (n - 1) frames of [frame, black frames] gives the first n
        latents of the official clip of chunk_size + 1 frames."""
        n = spec.num_latent_conditional_frames
        if n == 0:
            return None
        clip = np.zeros((1 + TEMPORAL_COMPRESSION * (n - 1), *frame.shape), dtype=np.uint8)
        clip[0] = frame
        return self.generator.encode_frames(clip)


def chunk_starts(spec: ActionSpec, num_actions: int) -> list[int]:
    """The first action of each chunk: start_frame_idx, + chunk_size, ... below `num_actions` (one with
    `single_chunk`)."""
    starts = list(range(spec.start_frame_idx, num_actions, spec.chunk_size))
    return starts[:1] if spec.single_chunk else starts


def chunk_actions(actions: np.ndarray, first: int, size: int) -> np.ndarray:
    """`size` actions from `first`, padded with zero actions past the end: (size, action values)."""
    chunk = actions[first : first + size]
    return np.concatenate([chunk, np.zeros((size - len(chunk), actions.shape[1]), dtype=actions.dtype)])
