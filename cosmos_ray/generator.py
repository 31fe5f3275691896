"""Generator: a validated spec in, a decoded video out, in one process (or one rank of a GPU group).

    generator = Generator.from_pretrained("tiny", model="2B/post-trained")   # or a checkpoint folder
    result = generator(spec, progress=lambda step: ...)                      # a `cosmos_ray.core.progress.Step`
    result.frames   # uint8 (T, H, W, 3); result.fps; result.metadata

`model` is an official model name (`cosmos_ray.core.registry`): it picks the DiT checkpoint of a folder
(`cosmos_ray.loading` reads presets and folders), the net's precision and the sampler: its `sampler_recipe`
names one of `cosmos_ray.sampling.SAMPLERS` (35-step UniPC with guidance, or the distilled 4-step sampler).
Stages, each timed in the metadata: the prompt and (when the sampler uses guidance and `guidance` is not 0)
the negative prompt are encoded one at a time (so an embedding never depends on what else was in a batch);
image2world / video2world read their conditioning frames and encode them with the VAE; the sampler
denoises its initial noise; the VAE decodes. A spec with `enable_autoregressive` runs these per window of
the official sliding-window layout (`cosmos_ray.autoregressive`), each window conditioned on frames of the
previous ones. With a `ParallelContext` every rank of the group makes the same calls, the DiT and the
decode run spread over the group, and ranks other than 0 return None. With an `OffloadConfig`, offloaded
models wait on the CPU and are on the GPU only during their stage.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from functools import partial

import numpy as np
import torch

from cosmos_ray import autoregressive
from cosmos_ray.conditioning import normalize_pixels, read_conditioning
from cosmos_ray.core.adapters import LoraRef
from cosmos_ray.core.attention_precision import BF16_ATTENTION, AttentionPrecision
from cosmos_ray.core.dtypes import default_dtype_name
from cosmos_ray.core.fetch_cache import FetchCache
from cosmos_ray.core.media import MediaLimits
from cosmos_ray.core.offload_config import NO_OFFLOAD, OffloadConfig
from cosmos_ray.core.options import EngineOptions
from cosmos_ray.core.progress import Progress
from cosmos_ray.core.registry import DEFAULT_MODEL, check_source, get_model
from cosmos_ray.core.result import GenerationResult
from cosmos_ray.core.spec import GenerationSpec, SpecError
from cosmos_ray.core.spec_formats import Spec
from cosmos_ray.core.storage import Storage
from cosmos_ray.loading import ModelInfo, check_adapters, describe_net, load_models
from cosmos_ray.models.attention_8bit import scheduled
from cosmos_ray.models.dit import MiniTrainDiT
from cosmos_ray.models.lora import AdapterCache, DiTAdapters
from cosmos_ray.models.text import TextEncoder
from cosmos_ray.models.text_cache import EmbeddingCache
from cosmos_ray.models.vae import WanVAE
from cosmos_ray.offload import Offloader
from cosmos_ray.parallel import ParallelContext, ParallelDiT
from cosmos_ray.parallel.decode import decode_spread
from cosmos_ray.records import video_record
from cosmos_ray.sampling import HeldFrames, Sampler, get_sampler
from cosmos_ray.stages import step_reporter, timed, to_uint8_frames, with_net_inputs


class Generator:
    """Text encoder, DiT, VAE and sampler for one model, on one device."""

    def __init__(
        self,
        dit: MiniTrainDiT,
        vae: WanVAE,
        text_encoder: TextEncoder,
        info: ModelInfo,
        sampler: Sampler,
        *,
        device: torch.device,
        dtype: torch.dtype,
        parallel: ParallelContext | None = None,
        offload: OffloadConfig = NO_OFFLOAD,
        storage: Storage = Storage(),
        media_limits: MediaLimits = MediaLimits(),
        adapter_cache: AdapterCache | None = None,
    ):
        """The models are on `device`; those `offload` names are moved to the CPU, to wait there between
        their stages. `storage` reaches the conditioning inputs, each checked against `media_limits`; LoRA
        adapters (`set_adapters`) are read through it into `adapter_cache`."""
        self.dit = dit
        self.vae = vae
        self.text_encoder = text_encoder
        self.info = info
        self.sampler = sampler
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
        self.media_limits = media_limits
        self._adapters = DiTAdapters(
            dit, describe_net(info.model, dit.cfg), FetchCache(storage), adapter_cache, device=device
        )
        self.default_adapters: tuple[LoraRef, ...] = ()  # what a spec that names no adapters runs with

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
        sampler: Sampler | None = None,
        storage: Storage = Storage(),
        media_limits: MediaLimits = MediaLimits(),
        compile: bool = False,
        attention_backend: str = "auto",
        attention_precision: AttentionPrecision = BF16_ATTENTION,
        linear_precision: str = "bf16",
        checkpoint_path: str | None = None,
        loras: Sequence[LoraRef] = (),
        net: type[MiniTrainDiT] = MiniTrainDiT,
    ) -> Generator:
        """Loads official model `model` (`cosmos_ray.core.registry.MODELS`: its DiT file, net precision and
        sampler, which `sampler` overrides) from a random-weight preset or a checkpoint folder `source`.

        Defaults: the parallel context's device, else CUDA in bfloat16, else CPU in float32. The DiT options
        (`compile`, `attention_backend`, `attention_precision`, `linear_precision`, `checkpoint_path`, `net`: the
        family's DiT class) go to `cosmos_ray.loading.load_models`; `loras` are merged (`set_adapters`); a
        checkpoint or adapter that does not fit, or a kernel that cannot run, fails before any model is on the
        device. `offload`, `embedding_cache`, `storage` and `media_limits` are `EngineOptions`' fields."""
        check_source(source, model)
        official = get_model(model)
        if parallel is not None:
            device = parallel.device
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or getattr(torch, default_dtype_name(device.type))
        fetch = FetchCache(storage)
        adapter_cache = AdapterCache()
        check_adapters(loras, source, official, fetch, adapter_cache, net)  # before any model is loaded
        models = load_models(
            source,
            official,
            device=device,
            dtype=dtype,
            offload=offload,
            cache=EmbeddingCache(url=embedding_cache, storage=storage),
            compile=compile,
            attention_backend=attention_backend,
            attention_precision=attention_precision,
            linear_precision=linear_precision,
            checkpoint_path=checkpoint_path,
            fetch=fetch,
            net=net,
        )
        generator = cls(
            *models,
            sampler or get_sampler(official.sampler_recipe),
            device=device,
            dtype=dtype,
            parallel=parallel,
            offload=offload,
            storage=storage,
            media_limits=media_limits,
            adapter_cache=adapter_cache,
        )
        generator.default_adapters = tuple(loras)
        generator.set_adapters(loras)
        return generator

    @classmethod
    def from_options(
        cls,
        options: EngineOptions,
        *,
        device: torch.device | str | None = None,
        parallel: ParallelContext | None = None,
        net: type[MiniTrainDiT] = MiniTrainDiT,
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
            media_limits=options.media_limits,
            compile=options.compile,
            attention_backend=options.attention_backend,
            attention_precision=options.attention(),
            linear_precision=options.linear_precision,
            checkpoint_path=options.checkpoint_path,
            loras=options.loras,
            net=net,
        )

    @property
    def adapters(self) -> tuple[LoraRef, ...]:
        """The LoRA adapters merged into the DiT now (beside a checkpoint's own LoRA, which is part of it)."""
        return self._adapters.current

    @property
    def adapter_records(self) -> list[dict]:
        """How the records name the adapters merged now (path, scale, SHA-256)."""
        return list(self._adapters.records)

    def set_adapters(self, loras: Sequence[LoraRef]) -> None:
        """Makes the DiT's weights the loaded ones plus exactly `loras`, merged (W + sum(scale * alpha / rank * B A);
        `()` restores the loaded weights bit for bit; a bad adapter raises before any weight changes). Every rank
        of a parallel group must make the same calls."""
        self._adapters.set(loras)

    def use_weights_of(self, spec: Spec) -> None:
        """Sets the DiT's adapters to the spec's (`__call__`); SpecError for a spec of several videos."""
        if spec.num_generations != 1:
            raise SpecError(
                repr(spec.name),
                "num_generations",
                f"asks for {spec.num_generations} videos; one call makes one (generate each of spec.generations())",
            )
        self.set_adapters(self.default_adapters if spec.cosmos_ray_loras is None else spec.cosmos_ray_loras)

    @property
    def is_output_rank(self) -> bool:
        return self.parallel is None or self.parallel.rank == 0

    @property
    def window_frames(self) -> int:
        """Pixel frames of one window, what the model generates at once (93 for state_t 24)."""
        return 1 + self.vae.cfg.temporal_compression * (self.info.state_t - 1)

    def __call__(self, spec: Spec, progress: Progress | None = None) -> GenerationResult | None:
        """Generates the spec's video; None on ranks other than 0 of a parallel group.

        `progress(step)` gets a `Step` after every denoising step (of every window). A spec that asks for
        several videos (`num_generations`) is refused: callers generate each of `spec.generations()`. The DiT
        runs with exactly the spec's adapters (`cosmos_ray_loras`; `[]`: none), or with `default_adapters`
        (the `loras` it was built with) when the spec leaves them unset (the entry points fill in the run's
        default adapters first, `GenerationSpec.for_weights`, so that they count in the sample id).
        """
        if not isinstance(spec, GenerationSpec):
            raise TypeError(
                f"model {self.info.model.name} takes the base models' spec format, not a {type(spec).__name__}; "
                "parse specs with cosmos_ray.core.spec_formats.parse_spec(..., model=...)"
            )
        self.use_weights_of(spec)
        timings: dict[str, float] = {}
        chunks: list[dict] = []
        start = time.perf_counter()
        frames: np.ndarray | None
        if spec.enable_autoregressive:
            frames = autoregressive.generate_long_video(self, spec, progress, timings, chunks)
        else:
            latents = self.generate_latents(spec, progress, timings)
            with self.timed("decode", timings):
                video = self.decode(latents)
            frames = to_uint8_frames(video[0]) if self.is_output_rank else None
        if frames is None or not self.is_output_rank:  # a rank other than the group's rank 0
            return None
        timings["total"] = time.perf_counter() - start
        return GenerationResult(frames, spec.fps, video_record(self, spec, frames, timings, chunks))

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
        with self.timed("text_encode", timings):
            prompts = self.encode_prompts(spec)
        with self.timed("conditioning", timings):
            conditional = self.encode_conditioning(spec, height, width)
        with self.timed("sampling", timings):
            return self.sample_latents(
                spec, prompts, conditional, spec.seed, latent_frames, (height, width), step_reporter(progress)
            )

    def encode_prompts(self, spec: GenerationSpec) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The prompt's embedding (1, 512, D) on the device, and the negative prompt's when the sampler uses
        guidance and `guidance` is not 0 (else None). An offloaded text encoder comes to the GPU only if a
        prompt is not in the embedding cache, once for both."""
        prompt, *negative = self.encode_texts(
            [spec.prompt, spec.negative_prompt] if self.guided(spec) else [spec.prompt]
        )
        return prompt, negative[0] if negative else None

    def guided(self, spec: Spec) -> bool:
        """Whether the spec's sampling runs an unconditional pass, so needs the negative prompt's embedding."""
        return self.sampler.runs_unconditional(spec.guidance)

    def encode_texts(self, texts: Sequence[str]) -> list[torch.Tensor]:
        """Each text's embedding (1, 512, D) on the device, encoded one at a time (through the embedding cache).
        An offloaded text encoder comes to the GPU only if a text is not in the cache, once for all."""
        with self.offloader.on_demand([self.text_encoder], self.offload.text_encoder) as bring:
            encode = (
                partial(self.text_encoder.encode, running=bring)
                if self.offload.text_encoder
                else self.text_encoder.encode
            )
            return [encode([text]).to(self.device) for text in texts]

    def sample_latents(
        self,
        spec: Spec,
        prompts: tuple[torch.Tensor, torch.Tensor | None],
        conditional: torch.Tensor | HeldFrames | None,
        seed: int,
        latent_frames: int,
        size: tuple[int, int],
        progress: Callable[[int, int], None] | None = None,
        net_inputs: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Denoises the sampler's initial noise of `seed`, (1, C, latent_frames, H/8, W/8) for `size` (H, W),
        with the spec's steps and guidance, holding `conditional` clean (latents (1, C, n, H/8, W/8) of the first n
        frames, or `HeldFrames`); `net_inputs`: (1, ...) inputs of a family's DiT. An offloaded DiT comes to the GPU."""
        if isinstance(conditional, torch.Tensor):
            conditional = HeldFrames.leading(conditional, latent_frames)
        if conditional is not None and not self.sampler.holds_conditional_frames:
            reason = f"the sampler ({type(self.sampler).__name__}) holds no conditional frames"
            raise SpecError(repr(spec.name), "inference_type", reason)
        c = self.vae.cfg
        height, width = size
        shape = (1, c.latent_channels, latent_frames, height // c.spatial_compression, width // c.spatial_compression)
        with self.offloader.running([self.dit], self.offload.diffusion_model):
            evaluations = self.sampler.num_evaluations(spec.num_steps)
            model = with_net_inputs(self.velocity_model, net_inputs) if net_inputs else self.velocity_model
            return self.sampler.sample(
                scheduled(model, self.dit.quantized_attention, evaluations),
                self.sampler.initial_noise(seed, shape, self.device),
                *prompts,
                num_steps=spec.num_steps,
                guidance=spec.guidance,
                held=conditional,
                timestep_scale=self.dit.cfg.timestep_scale,
                model_dtype=self.dtype,
                progress=progress,
            )

    def encode_conditioning(self, spec: GenerationSpec, height: int, width: int) -> torch.Tensor | None:
        """Clean latents (1, C, n, H/8, W/8) of the spec's n conditional frames, None for text2world: the causal VAE
        gives the reference's first n latents (of the padded clip) from the 1 + 4 (n - 1) pixel frames alone."""
        frames = self.read_conditioning_frames(spec, height, width)
        return None if frames is None else self.encode_frames(frames)

    def read_conditioning_frames(self, spec: GenerationSpec, height: int, width: int) -> np.ndarray | None:
        """The spec's conditioning pixel frames, uint8 (1 + 4 (n - 1), H, W, 3) for its n latent conditional
        frames; None for text2world."""
        num_latent = spec.num_conditional_frames or 0  # never None once the spec is built
        if num_latent == 0:
            return None
        num_pixel = 1 + self.vae.cfg.temporal_compression * (num_latent - 1)
        return read_conditioning(spec, num_pixel, height, width, storage=self.storage, limits=self.media_limits)

    def encode_frames(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 ([B,] 1 + 4 k, H, W, 3) pixel frames -> clean latents (B, C, 1 + k, H/8, W/8), float32, B = 1
        without a batch; each clip (a multiview view) encoded on its own."""
        video = torch.from_numpy(frames).to(self.device).movedim(-1, -4)  # ([B,] 3, T, H, W)
        video = video if video.ndim == 5 else video[None]  # (B, 3, T, H, W)
        video = normalize_pixels(video, self.vae.dtype)
        with self.offloader.running(self.vae.encoding_modules, self.offload.tokenizer):
            return self.vae.encode(video).float()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> video (1, 3, T, H, W) in [-1, 1], float32. In a parallel group every rank must call this:
        the decode is spread over the group (`decode_spread`: each rank decodes a strip of columns)."""
        with self.offloader.running(self.vae.decoding_modules, self.offload.tokenizer):
            return decode_spread(self.vae, latents.to(self.vae.dtype), self.parallel).float()

    def timed(self, stage: str, timings: dict[str, float]) -> AbstractContextManager[None]:
        """Adds the wall time of a stage to `timings[stage]`, the device's queued work finished at both ends."""
        return timed(stage, timings, self.device)
