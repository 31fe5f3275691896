"""Generator: a validated spec in, a decoded video out, in one process (or one rank of a GPU group).

    generator = Generator.from_pretrained("tiny", model="2B/post-trained")   # or a checkpoint folder
    result = generator(spec, progress=lambda step: ...)                      # a `cosmos_ray.core.progress.Step`
    result.frames   # uint8 (T, H, W, 3); result.fps; result.metadata

`model` is an official model name (`cosmos_ray.core.registry`): it picks the DiT checkpoint of a folder, the
net's precision and the sampler (35-step UniPC with guidance, or the distilled 4-step sampler). Stages,
each timed in the metadata: the prompt and (when the model uses guidance and `guidance` is not 0) the
negative prompt are encoded one at a time (so an embedding never depends on what else was in a batch);
image2world / video2world read their conditioning frames and encode them with the VAE; the sampler
denoises the initial noise; the VAE decodes. A spec with `enable_autoregressive` runs these per window of
the official sliding-window layout (`cosmos_ray.autoregressive`), each window conditioned on frames of the
previous ones. With a `ParallelContext` every rank of the group makes the same calls, the DiT and the
decode run spread over the group, and ranks other than 0 return None. With an `OffloadConfig`, offloaded
models wait on the CPU and are on the GPU only during their stage.

Checkpoint folders (`source`) come in two layouts:
- official: the Hugging Face downloads in one folder (`cosmos_ray.core.registry` has the layout): the model's
  DiT at its official path (e.g. `base/post-trained/81edfebe-..._ema_bf16.pt`), `tokenizer.pth` (the
  Wan2.1 VAE), and the Reason1 text encoder in `text_encoder/` (a Hugging Face Qwen2.5-VL folder);
- diffusers: `transformer/`, `vae/`, `text_encoder/` and `tokenizer/` of a Cosmos-Predict2.5 pipeline
  (the weights of the model named by `model`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from cosmos_ray import autoregressive
from cosmos_ray.conditioning import read_conditioning
from cosmos_ray.core import media
from cosmos_ray.core.dtypes import default_dtype_name
from cosmos_ray.core.offload_config import NO_OFFLOAD, OffloadConfig
from cosmos_ray.core.options import EngineOptions
from cosmos_ray.core.presets import RANDOM_PRESETS, RandomPreset
from cosmos_ray.core.progress import Progress, Step
from cosmos_ray.core.registry import (
    DEFAULT_MODEL,
    TEXT_ENCODER_FOLDER,
    VAE_FILE,
    OfficialModel,
    check_source,
    get_model,
)
from cosmos_ray.core.result import GenerationResult
from cosmos_ray.core.spec import GenerationSpec, SpecError
from cosmos_ray.core.storage import Storage
from cosmos_ray.models.dit import DiTConfig, MiniTrainDiT, load_dit
from cosmos_ray.models.text import TextEncoder, TextEncoderConfig, build_tiny_tokenizer
from cosmos_ray.models.text_cache import EmbeddingCache
from cosmos_ray.models.vae import VAEConfig, WanVAE, load_vae
from cosmos_ray.offload import Offloader
from cosmos_ray.parallel import ParallelContext, ParallelDiT
from cosmos_ray.parallel.dit import split_sizes
from cosmos_ray.sampling import few_step, recipe_config
from cosmos_ray.sampling.few_step import FewStepConfig, sample_few_step
from cosmos_ray.sampling.sampler import SamplerConfig, initial_noise, sample

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


class Generator:
    """Text encoder, DiT, VAE and sampler settings for one model, on one device."""

    def __init__(
        self,
        dit: MiniTrainDiT,
        vae: WanVAE,
        text_encoder: TextEncoder,
        info: ModelInfo,
        sampler_config: SamplerConfig | FewStepConfig,
        *,
        device: torch.device,
        dtype: torch.dtype,
        parallel: ParallelContext | None = None,
        offload: OffloadConfig = NO_OFFLOAD,
        storage: Storage = Storage(),
    ):
        """The models are on `device`; those `offload` names are moved to the CPU, to wait there between
        their stages."""
        self.dit = dit
        self.vae = vae
        self.text_encoder = text_encoder
        self.info = info
        self.sampler_config = sampler_config
        self.device = device
        self.dtype = dtype
        self.parallel = parallel
        self.offload = offload
        self.offloader = Offloader(device)
        self.offloader.place([dit], offload.diffusion_model)
        self.offloader.place([*vae.encoding_modules, *vae.decoding_modules], offload.tokenizer)
        self.offloader.place([text_encoder], offload.text_encoder)
        self.velocity_model = ParallelDiT(dit, parallel) if parallel is not None else dit
        self.storage = storage

    @classmethod
    def from_pretrained(
        cls,
        source: str = "tiny",
        *,
        model: str = DEFAULT_MODEL,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        parallel: ParallelContext | None = None,
        offload: OffloadConfig = NO_OFFLOAD,
        embedding_cache: str | None = None,
        sampler_config: SamplerConfig | FewStepConfig | None = None,
        storage: Storage = Storage(),
        compile: bool = False,
        attention_backend: str = "auto",
    ) -> Generator:
        """Loads official model `model` from a random-weight preset (`RANDOM_PRESETS`) or a checkpoint folder.

        Defaults: the parallel context's device, else CUDA in bfloat16 when available, else CPU in
        float32. `model` (an official name, `cosmos_ray.core.registry.MODELS`) picks the DiT file of a folder,
        the net's precision and the sampling recipe, which `sampler_config` overrides. `offload` keeps
        models on the CPU between their stages; offloaded models are also loaded there. `embedding_cache`
        (an fsspec folder) shares prompt embeddings; `storage` reaches it and the conditioning inputs;
        `compile` torch.compiles the DiT's blocks; `attention_backend` picks the DiT's attention kernel
        (`cosmos_ray.models.attention`).
        """
        check_source(source, model)
        official = get_model(model)
        if parallel is not None:
            device = parallel.device
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or getattr(torch, default_dtype_name(device.type))
        home = torch.device("cpu")
        cache = EmbeddingCache(url=embedding_cache, storage=storage)
        if source in RANDOM_PRESETS:
            preset = RANDOM_PRESETS[source]
            dit, vae, text_encoder = _random_models(preset, official, device, dtype, cache, offload)
            resolution = preset.trained_resolution or official.trained_resolution
            info = ModelInfo(official, source, resolution, official.state_t)
        else:
            folder = Path(source)
            dit_path, vae_path = _locate_weights(folder, official)
            dit = load_dit(
                dit_path, DiTConfig.of_model(official), device=home if offload.diffusion_model else device, dtype=dtype
            )
            vae = load_vae(
                vae_path, VAEConfig.preset("wan2.1"), device=home if offload.tokenizer else device, dtype=dtype
            )
            text_encoder = TextEncoder.from_pretrained(
                str(_text_encoder_folder(folder)),
                device=home if offload.text_encoder else device,
                dtype=dtype,
                cache=cache,
            )
            info = ModelInfo(official, dit_path.name, official.trained_resolution, official.state_t)
        dit.attention_backend = attention_backend
        if compile:
            dit.compile_blocks()
        return cls(
            dit,
            vae,
            text_encoder,
            info,
            sampler_config or recipe_config(official),
            device=device,
            dtype=dtype,
            parallel=parallel,
            offload=offload,
            storage=storage,
        )

    @classmethod
    def from_options(
        cls,
        options: EngineOptions,
        *,
        device: torch.device | str | None = None,
        parallel: ParallelContext | None = None,
    ) -> Generator:
        """The engine an entry point's `EngineOptions` describe (`from_pretrained` has the defaults)."""
        return cls.from_pretrained(
            options.source,
            model=options.model,
            device=device,
            dtype=getattr(torch, options.dtype) if options.dtype else None,
            parallel=parallel,
            offload=options.offload,
            embedding_cache=options.embedding_cache,
            storage=options.storage,
            compile=options.compile,
            attention_backend=options.attention_backend,
        )

    @property
    def is_output_rank(self) -> bool:
        return self.parallel is None or self.parallel.rank == 0

    @property
    def window_frames(self) -> int:
        """Pixel frames of one window, what the model generates at once (93 for state_t 24)."""
        return 1 + self.vae.cfg.temporal_compression * (self.info.state_t - 1)

    def __call__(self, spec: GenerationSpec, progress: Progress | None = None) -> GenerationResult | None:
        """Generates the spec's video; None on ranks other than 0 of a parallel group.

        `progress(step)` gets a `Step` after every denoising step (of every window). A spec that asks for
        several videos (`num_generations`) is refused: callers generate each of `spec.generations()`.
        """
        if spec.num_generations != 1:
            raise SpecError(
                repr(spec.name),
                "num_generations",
                f"asks for {spec.num_generations} videos; one call makes one (generate each of spec.generations())",
            )
        timings: dict[str, float] = {}
        chunks: list[dict] = []
        start = time.perf_counter()
        frames: np.ndarray | None
        if spec.enable_autoregressive:
            frames = self.generate_long_video(spec, progress, timings, chunks)
        else:
            latents = self.generate_latents(spec, progress, timings)
            with self._timed("decode", timings):
                video = self.decode(latents)
            frames = to_uint8_frames(video[0]) if self.is_output_rank else None
        if frames is None or not self.is_output_rank:  # a rank other than the group's rank 0
            return None
        timings["total"] = time.perf_counter() - start
        return GenerationResult(frames, spec.fps, self._metadata(spec, frames, timings, chunks))

    def resolution(self, spec: GenerationSpec) -> tuple[int, int]:
        """(H, W) of the spec's video: its `resolution`, or the model's trained one for "none"."""
        return spec.height_width or self.info.trained_resolution

    def num_frames(self, spec: GenerationSpec) -> int:
        """Pixel frames of the spec's video: the model's native 1 + 4 (state_t - 1), as the official
        non-autoregressive inference (whatever `num_output_frames` says), or `cosmos_ray_num_frames`."""
        if spec.cosmos_ray_num_frames is not None:
            return spec.cosmos_ray_num_frames
        return self.window_frames

    def generate_latents(
        self, spec: GenerationSpec, progress: Progress | None = None, timings: dict[str, float] | None = None
    ) -> torch.Tensor:
        """The spec's clean latents (1, C, T, H/8, W/8), float32; identical on every rank of a group."""
        if spec.enable_autoregressive:
            raise ValueError(f"spec {spec.name!r} is autoregressive: one latent tensor per window; use __call__")
        self.info.model.check_spec(spec)
        timings = {} if timings is None else timings
        height, width = self.resolution(spec)
        vae_cfg = self.vae.cfg
        num_frames = self.num_frames(spec)
        latent_frames = (num_frames - 1) // vae_cfg.temporal_compression + 1
        if (spec.num_conditional_frames or 0) > latent_frames:
            raise SpecError(
                repr(spec.name),
                "cosmos_ray_num_frames",
                f"{num_frames} frames make {latent_frames} latent frame(s), fewer than the "
                f"{spec.num_conditional_frames} conditional latent frames of {spec.inference_type}",
            )
        with self._timed("text_encode", timings):
            prompts = self.encode_prompts(spec)
        with self._timed("conditioning", timings):
            conditional = self.encode_conditioning(spec, height, width)
        with self._timed("sampling", timings):
            return self.sample_latents(
                spec, prompts, conditional, spec.seed, latent_frames, (height, width), _step_reporter(progress)
            )

    def generate_long_video(
        self,
        spec: GenerationSpec,
        progress: Progress | None = None,
        timings: dict[str, float] | None = None,
        chunks: list[dict] | None = None,
    ) -> np.ndarray:
        """An autoregressive spec's video, uint8 (num_output_frames, H, W, 3) on the CPU, on every rank.

        One window after another (`cosmos_ray.autoregressive`): a window's latents and decoded frames live
        on the device only while it runs, finished frames are kept as uint8 on the CPU. `chunks` receives
        one record per window (frames, seed, conditional frames, seconds).
        """
        self.info.model.check_spec(spec)
        timings = {} if timings is None else timings
        chunks = [] if chunks is None else chunks
        height, width = self.resolution(spec)
        layout = autoregressive.plan(spec)
        self._check_windows(spec, layout)
        r = self.vae.cfg.temporal_compression
        with self._timed("text_encode", timings):
            prompts = self.encode_prompts(spec)
        with self._timed("conditioning", timings):
            inputs = self.read_conditioning_frames(spec, height, width)
        clip = autoregressive.InputClip(
            np.zeros((0, height, width, 3), np.uint8) if inputs is None else inputs,
            repeat_last=spec.input_path is not None and media.is_video(spec.input_path),
        )

        def window(chunk: autoregressive.Chunk, conditioning: np.ndarray | None) -> np.ndarray:
            start = time.perf_counter()
            report = _step_reporter(progress, chunk.index + 1, len(layout))
            with self._timed("conditioning", timings):
                conditional = None if conditioning is None else self.encode_frames(conditioning)
            with self._timed("sampling", timings):
                latents = self.sample_latents(
                    spec, prompts, conditional, chunk.seed, self.info.state_t, (height, width), report
                )
            with self._timed("decode", timings):
                # The decoder is causal: the first latent frames decode to the first pixel frames exactly,
                # so only those that cover the window's frames are decoded.
                video = self.decode(latents[:, :, : 1 + math.ceil((chunk.length - 1) / r)])
                frames = to_uint8_frames(video[0])[: chunk.length]
            chunks.append(
                {
                    "frames": [chunk.start, chunk.end],
                    "seed": chunk.seed,
                    "conditional_frames": chunk.num_conditional,
                    "seconds": round(time.perf_counter() - start, 4),
                }
            )
            return frames

        return autoregressive.generate(layout, window, clip, frame_shape=(height, width), temporal_compression=r)

    def _check_windows(self, spec: GenerationSpec, layout: list[autoregressive.Chunk]) -> None:
        """The layout fits the model's window: SpecError naming the field otherwise."""
        if spec.chunk_size > self.window_frames:
            raise SpecError(
                repr(spec.name),
                "chunk_size",
                f"must be at most {self.window_frames}, the frames this model generates at once, got {spec.chunk_size}",
            )
        for chunk in layout:
            if chunk.num_conditional > self.info.state_t:
                field = "num_conditional_frames" if chunk.index == 0 else "chunk_overlap"
                raise SpecError(
                    repr(spec.name),
                    field,
                    f"conditions a window on {chunk.num_conditional} latent frames, more than the "
                    f"{self.info.state_t} this model generates at once",
                )

    @property
    def is_few_step(self) -> bool:
        """Whether the sampler is the distilled few-step one (no guidance, no negative prompt)."""
        return isinstance(self.sampler_config, FewStepConfig)

    def encode_prompts(self, spec: GenerationSpec) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The prompt's embedding (1, 512, D) on the device, and the negative prompt's when the sampler uses
        guidance and `guidance` is not 0 (else None). An offloaded text encoder comes to the GPU only if a
        prompt is not in the embedding cache, once for both."""
        prompts = [spec.prompt] if self.is_few_step or spec.guidance == 0 else [spec.prompt, spec.negative_prompt]
        with self.offloader.on_demand([self.text_encoder], self.offload.text_encoder) as bring:
            encode = (
                partial(self.text_encoder.encode, running=bring)
                if self.offload.text_encoder
                else self.text_encoder.encode
            )
            prompt, *negative = [encode([text]).to(self.device) for text in prompts]
        return prompt, negative[0] if negative else None

    def sample_latents(
        self,
        spec: GenerationSpec,
        prompts: tuple[torch.Tensor, torch.Tensor | None],
        conditional: torch.Tensor | None,
        seed: int,
        latent_frames: int,
        size: tuple[int, int],
        progress: Callable[[int, int], None] | None = None,
    ) -> torch.Tensor:
        """Denoises the official initial noise of `seed`, (1, C, latent_frames, H/8, W/8) for `size` (H, W),
        with the spec's steps and guidance, holding the `conditional` latents clean on the first frames. The
        distilled model's few-step sampler takes no guidance and holds no frames. An offloaded DiT is on the
        GPU for this call only."""
        if self.is_few_step and conditional is not None:
            raise SpecError(
                repr(spec.name), "inference_type", "the few-step (distilled) sampler holds no conditional frames"
            )
        vae_cfg = self.vae.cfg
        height, width = size
        shape = (
            1,
            vae_cfg.latent_channels,
            latent_frames,
            height // vae_cfg.spatial_compression,
            width // vae_cfg.spatial_compression,
        )
        config = self.sampler_config
        with self.offloader.running([self.dit], self.offload.diffusion_model):
            if isinstance(config, FewStepConfig):
                return sample_few_step(
                    self.velocity_model,
                    few_step.initial_noise(seed, shape, self.device),
                    prompts[0],
                    config=config,
                    num_steps=spec.num_steps,
                    timestep_scale=self.dit.cfg.timestep_scale,
                    model_dtype=self.dtype,
                    progress=progress,
                )
            return sample(
                self.velocity_model,
                initial_noise(seed, shape, self.device),
                *prompts,
                config=config,
                num_steps=spec.num_steps,
                guidance=spec.guidance,
                conditional_latents=conditional,
                model_dtype=self.dtype,
                progress=progress,
            )

    def encode_conditioning(self, spec: GenerationSpec, height: int, width: int) -> torch.Tensor | None:
        """Clean latents (1, C, n, H/8, W/8) of the spec's n conditional frames, or None for text2world.

        The VAE is causal, so encoding just the 1 + 4 (n - 1) conditioning pixel frames gives the same
        first n latents as the reference, which encodes them padded to the whole clip.
        """
        frames = self.read_conditioning_frames(spec, height, width)
        return None if frames is None else self.encode_frames(frames)

    def read_conditioning_frames(self, spec: GenerationSpec, height: int, width: int) -> np.ndarray | None:
        """The spec's conditioning pixel frames, uint8 (1 + 4 (n - 1), H, W, 3) for its n latent conditional
        frames; None for text2world."""
        num_latent = spec.num_conditional_frames or 0  # never None once the spec is built
        if num_latent == 0:
            return None
        num_pixel = 1 + self.vae.cfg.temporal_compression * (num_latent - 1)
        return read_conditioning(spec, num_pixel, height, width, storage=self.storage)

    def encode_frames(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 (1 + 4 k, H, W, 3) pixel frames -> clean latents (1, C, 1 + k, H/8, W/8), float32."""
        video = torch.from_numpy(frames).to(self.device).permute(3, 0, 1, 2)[None]  # (1, 3, T, H, W)
        video = video.to(self.vae.dtype) / 127.5 - 1.0  # the reference's uint8 -> [-1, 1], in the model dtype
        with self.offloader.running(self.vae.encoding_modules, self.offload.tokenizer):
            return self.vae.encode(video).float()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> video (1, 3, T, H, W) in [-1, 1], float32.

        In a parallel group every rank must call this: each decodes a strip of columns (the same pixels a
        whole decode gives there) and the strips are gathered, so the decode is spread over the group.
        """
        latents = latents.to(self.vae.dtype)
        if self.parallel is None or self.parallel.world_size == 1:
            with self.offloader.running(self.vae.decoding_modules, self.offload.tokenizer):
                return self.vae.decode(latents).float()
        widths = split_sizes(latents.shape[-1], self.parallel.world_size)  # latent columns per rank
        start = sum(widths[: self.parallel.rank])
        with self.offloader.running(self.vae.decoding_modules, self.offload.tokenizer):
            strip = self.vae.decode(latents, columns=slice(start, start + widths[self.parallel.rank]))
        scale = self.vae.cfg.spatial_compression
        strip = F.pad(strip, (0, widths[0] * scale - strip.shape[-1]))  # equal shapes for the all-gather
        strips = strip.new_empty(self.parallel.world_size, *strip.shape[1:])  # (N, 3, T, H, W / N)
        dist.all_gather_into_tensor(strips, strip.contiguous())
        video = torch.cat([s[..., : w * scale] for s, w in zip(strips, widths)], dim=-1)  # (3, T, H, W)
        return video[None].float()

    def _metadata(
        self, spec: GenerationSpec, frames: np.ndarray, timings: dict[str, float], chunks: list[dict]
    ) -> dict:
        num_frames, height, width, _ = frames.shape
        metadata = {
            "sample_id": spec.sample_id,
            "spec": spec.to_dict(),
            "seed": spec.seed,
            "model": self.info.model.name,
            "weights": self.info.weights,
            "resolution": [height, width],
            "num_frames": num_frames,
            "fps": spec.fps,
            "num_steps": spec.num_steps,
            "evaluations": self.sampler_config.num_evaluations(spec.num_steps),
            "guidance": 0 if self.is_few_step else spec.guidance,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "world_size": 1 if self.parallel is None else self.parallel.world_size,
            "offload": str(self.offload),
            "timings_s": {stage: round(seconds, 4) for stage, seconds in timings.items()},
        }
        if chunks:  # autoregressive: one record per window
            metadata["chunks"] = chunks
        return metadata

    @contextmanager
    def _timed(self, stage: str, timings: dict[str, float]) -> Iterator[None]:
        """Adds the wall time of a stage to `timings[stage]`, with the device's queued work finished at both
        ends."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def _step_reporter(progress: Progress | None, chunk: int = 1, num_chunks: int = 1) -> Callable[[int, int], None] | None:
    """The sampler's `(step, total)` callback that hands `progress` a `Step` of window `chunk`."""
    if progress is None:
        return None
    return lambda step, total: progress(Step(step, total, chunk, num_chunks))


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """(3, T, H, W) in [-1, 1] -> uint8 (T, H, W, 3), truncating like the reference's video writer."""
    video = ((video.float() + 1.0) / 2.0).clamp(0.0, 1.0) * 255.0
    return video.to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()


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


def _locate_weights(folder: Path, model: OfficialModel) -> tuple[Path, Path]:
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
