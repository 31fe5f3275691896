"""The engine of the 3-camera robot model (`2B/robot/multiview-agibot`, family "camera-multiview"): an `AgibotSpec` in,
the three views stacked in height out (the official mp4).

    engine = RobotMultiviewEngine.from_options(EngineOptions(source="tiny", model="2B/robot/multiview-agibot"))
    result = engine(spec)        # spec: cosmos_ray.core.agibot_spec.AgibotSpec
    result.frames                # uint8 (93, 3 H, W, 3): head, hand_0, hand_1 from top to bottom, 30 fps
    result.metadata["views"]     # [{"camera": "head", "rows": [0, H]}, ...]: where each view is

Built on a base `Generator` holding the camera net (`cosmos_ray.models.camera_dit.CameraDiT`). What the official
inference does (cosmos_predict2/robot_multiview.py, `_src/predict2/camera/models/
multiview_camera_frameinit_video2world_model.py` and `.../configs/multiview_camera/conditioner.py` at 7e5ffc83):

- each view's image, scaled and cropped to 704 x 1280, repeated 93 frames, is encoded on its own; only its first
  latent is held (the frameinit condition mask: frames 0, 24, 48), so the first frame is encoded here (causal VAE);
- the views run as one sequence in the net's order hand_0, head, hand_1 (the model reorders the loader's head,
  hand_0, hand_1), with the Plücker rays of each latent frame's camera (`camera_tensors`, `plucker_tokens`);
- one text embedding (the prompt; the negative prompt for the unconditional pass), guidance `cond + g (cond - uncond)`;
- the "frameinit" sampler recipe (shift-5 UniPC, held frames at timestep 0.1); every view's initial noise is the
  seed's (the same for all views);
- each view decoded on its own, back in the loader's order, concatenated in height; written at 30 fps.
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from functools import partial

import numpy as np
import torch
from PIL import Image

from cosmos_ray.core.agibot_spec import FPS, VIEWS, AgibotSpec, read_camera_rows
from cosmos_ray.core.progress import Progress
from cosmos_ray.core.result import GenerationResult
from cosmos_ray.core.spec_errors import SpecError
from cosmos_ray.core.spec_formats import Spec
from cosmos_ray.core.storage import StorageError
from cosmos_ray.family_engine import FamilyEngine
from cosmos_ray.models.attention_8bit import scheduled
from cosmos_ray.models.camera_dit import CameraDiT
from cosmos_ray.models.plucker import invert_pose, plucker_tokens
from cosmos_ray.records import video_record
from cosmos_ray.sampling import HeldFrames
from cosmos_ray.stages import step_reporter, to_uint8_frames

# (H, W) of the pictures the camera files' intrinsics describe (the AgiBot data's 480p, 768 x 432); the official
# loader rescales them to the generated size (`load_agibot_camera_fn`, cosmos_predict2/robot_multiview.py, 7e5ffc83).
CAMERA_FILE_SIZE = (432, 768)


def camera_tensors(
    extrinsic_rows: Sequence[Sequence[Sequence[float]]],
    intrinsic_rows: Sequence[Sequence[Sequence[float]]],
    size: tuple[int, int] = (704, 1280),
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cameras of every view's latent frames as the official loader hands them on, bf16.

    extrinsic_rows: per view, per latent frame, the 12 values of a camera-to-world [R | t] (row-major) of its file;
    intrinsic_rows: per view, per latent frame, (fx, fy, cx, cy) for a 768 x 432 picture. Returns world-to-camera
    poses (V * L, 3, 4) and intrinsics rescaled to `size` (H, W) (V * L, 4), the views one after another.
    """
    poses = torch.tensor([row for view in extrinsic_rows for row in view], dtype=torch.float64).to(torch.bfloat16)
    intrinsics = torch.tensor([row for view in intrinsic_rows for row in view], dtype=torch.float64)
    intrinsics = intrinsics.to(torch.bfloat16)
    height, width = size
    intrinsics[:, [0, 2]] *= width / CAMERA_FILE_SIZE[1]
    intrinsics[:, [1, 3]] *= height / CAMERA_FILE_SIZE[0]
    return invert_pose(poses.view(-1, 3, 4)), intrinsics


def read_view_image(data: bytes, size: tuple[int, int]) -> torch.Tensor:
    """An input image as the official dataset prepares it (`TextImageCameraDataset.load_images`): scaled (PIL bilinear)
    to cover `size` (H, W), centre-cropped, to [0, 1], normalized to [-1, 1]: float32 (3, H, W)."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    height, width = size
    scale = max(width / image.width, height / image.height)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
    top, left = int(round((image.height - height) / 2.0)), int(round((image.width - width) / 2.0))
    pixels = torch.from_numpy(np.asarray(image.crop((left, top, left + width, top + height)), dtype=np.uint8).copy())
    return (pixels.permute(2, 0, 1).float() / 255 - 0.5) / 0.5


class RobotMultiviewEngine(FamilyEngine[AgibotSpec]):
    """The three cameras of one `AgibotSpec`, on the device of its `Generator` (model `2B/robot/multiview-agibot` with
    its `CameraDiT`; `from_options` builds one; in a GPU group the DiT runs context-parallel, its rays sliced with
    its frames, and the decode is spread over the group)."""

    net = CameraDiT
    spec_type = AgibotSpec

    def __call__(self, spec: Spec, progress: Progress | None = None) -> GenerationResult | None:
        """The scene's three views stacked in height (head, hand_0, hand_1, top to bottom) as the official mp4:
        uint8 (93, 3 H, W, 3) at 30 fps. The metadata lists each view's rows (`views`) and its cameras."""
        spec = self.accept(spec)
        generator = self.generator
        size = generator.info.trained_resolution
        timings: dict[str, float] = {}
        start = time.perf_counter()
        with generator.timed("text_encode", timings):
            texts = [spec.prompt, spec.negative_prompt] if generator.guided(spec) else [spec.prompt]
            prompt, *negative = generator.encode_texts(texts)
        with generator.timed("conditioning", timings):
            first_latents = self.encode_first_frames(spec, size)  # (V, C, 1, h, w), loader order
            rows = self.camera_rows(spec)
            poses, intrinsics = (net_order(t) for t in camera_tensors(*rows, size=size))
            rays = plucker_tokens(poses, intrinsics, size)[None]  # (1, V state_t, H/16, W/16, 1536) bf16
        with generator.timed("sampling", timings):
            latents = self.sample(spec, (prompt, negative[0] if negative else None), first_latents, rays, progress)
        with generator.timed("decode", timings):
            views = net_order(latents[0].unflatten(1, (len(VIEWS), -1)).transpose(0, 1))  # net order is its own inverse
            video = torch.cat([generator.decode(view[None]) for view in views], dim=3)  # (1, 3, T, V H, W)
        if not generator.is_output_rank:
            return None
        frames = to_uint8_frames(video[0])
        timings["total"] = time.perf_counter() - start
        metadata = video_record(generator, spec, frames, timings)
        height = size[0]
        metadata["views"] = [
            {"camera": view, "rows": [index * height, (index + 1) * height]} for index, view in enumerate(VIEWS)
        ]
        metadata["stack_mode"] = "height"
        metadata["cameras"] = {
            view: {"extrinsics_camera_to_world": rows[0][index], "intrinsics_768x432": rows[1][index]}
            for index, view in enumerate(VIEWS)
        }
        return GenerationResult(frames, FPS, metadata)

    def encode_first_frames(self, spec: AgibotSpec, size: tuple[int, int]) -> torch.Tensor:
        """The clean first latent of each view, (V, C, 1, h, w) in the loader's order. The VAE is causal: the first
        frame alone gives the first latent of the official 93-frame encode of the repeated image."""
        generator = self.generator
        pixels = []
        for view, url in spec.image_paths.items():
            try:
                pixels.append(read_view_image(generator.storage.read_bytes(url), size))
            except (StorageError, OSError) as error:
                raise SpecError(repr(spec.name), f"input_images/{view}", f"cannot read {url}: {error}") from None
        video = torch.stack(pixels)[:, :, None].to(generator.device, generator.vae.dtype)  # (V, 3, 1, H, W)
        with generator.offloader.running(generator.vae.encoding_modules, generator.offload.tokenizer):
            return torch.cat([generator.vae.encode(view[None]) for view in video]).float()

    def camera_rows(self, spec: AgibotSpec) -> tuple[list[list[list[float]]], list[list[list[float]]]]:
        """Per view (loader order), per latent frame: the extrinsic rows and the intrinsic rows of the camera files."""
        frames, storage = self.generator.info.state_t, self.generator.storage
        extrinsic = [read_camera_rows(spec, "extrinsic", view, storage, frames) for view in VIEWS]
        intrinsic = [read_camera_rows(spec, "intrinsic", view, storage, frames) for view in VIEWS]
        return extrinsic, intrinsic

    def sample(
        self,
        spec: AgibotSpec,
        prompts: tuple[torch.Tensor, torch.Tensor | None],
        first_latents: torch.Tensor,
        rays: torch.Tensor,
        progress: Progress | None,
    ) -> torch.Tensor:
        """Denoised latents (1, C, V state_t, h, w) in the net's order, each view's first latent held clean.

        The initial noise is the official one: every view the noise of the seed, its first frame replaced by the first
        latent of the view of the same index in the loader's order (not the net's: the official code does so; those
        frames are held, so it changes only rounding)."""
        generator = self.generator
        state_t, views = generator.info.state_t, len(VIEWS)
        _, channels, _, h, w = first_latents.shape
        noise = generator.sampler.initial_noise(spec.seed, (1, channels, state_t, h, w), self.device)
        noise = torch.cat([torch.cat([first, noise[:, :, 1:]], dim=2) for first in first_latents[:, None]], dim=2)
        # each view's first latent held: frames 0, state_t, 2 state_t of the sequence, in the net's order
        clean = torch.zeros_like(noise)
        clean[:, :, ::state_t] = net_order(first_latents).transpose(0, 2)  # (1, C, V, h, w)
        mask = torch.zeros(views * state_t, dtype=torch.bool, device=noise.device)
        mask[::state_t] = True
        model = partial(generator.velocity_model, camera=rays.to(self.device))
        evaluations = generator.sampler.num_evaluations(spec.num_steps)
        with generator.offloader.running([generator.dit], generator.offload.diffusion_model):
            return generator.sampler.sample(
                scheduled(model, generator.dit.quantized_attention, evaluations),
                noise,
                *prompts,
                num_steps=spec.num_steps,
                held=HeldFrames(clean, mask),
                guidance=spec.guidance,
                timestep_scale=generator.dit.cfg.timestep_scale,
                model_dtype=generator.dtype,
                progress=step_reporter(progress),
            )


def net_order(tensor: torch.Tensor) -> torch.Tensor:
    """(V n, ...) in the loader's view order (head, hand_0, hand_1) -> the net's (hand_0, head, hand_1), and back: the
    frameinit model's chunk reorder (`CameraConditionedFrameinitVideo2WorldModelRectifiedFlow`), its own inverse."""
    chunks = tensor.chunk(len(VIEWS))
    return torch.cat([chunks[1], chunks[0], chunks[2]])
