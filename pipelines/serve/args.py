"""The Serve app's arguments: `serve run pipelines.serve:app key=value ...` or `args:` in a Serve config file.

Every default of the app lives here; the request policy, the storage handle, the engine's options, the
guardrail setting and the deployments are built from one `ServeArgs` (`RequestPolicy.from_args`,
`ServeArgs.storage`, `ServeArgs.engine_options`, `build_app`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from pydantic import BaseModel, Field, field_validator

from cosmos_ray.core.adapters import LoraRef
from cosmos_ray.core.attention_precision import ATTENTION_PRECISIONS
from cosmos_ray.core.dtypes import DTYPE_NAMES
from cosmos_ray.core.limits import TRAINED_PIXELS_720P, SpecLimits, native_cost
from cosmos_ray.core.media import MediaLimits
from cosmos_ray.core.offload_config import OffloadConfig
from cosmos_ray.core.options import ATTENTION_BACKENDS, LINEAR_PRECISIONS, EngineOptions
from cosmos_ray.core.registry import DEFAULT_MODEL, MODEL_NAMES, get_model
from cosmos_ray.core.storage import HTTP_SCHEMES, Storage, url_scheme

DEFAULT_MAX_COST = 3.0  # reference clips of one request: a base 720p clip with room for longer or larger ones
DEFAULT_REQUEST_S = 1800.0  # a generation's time limit for up to DEFAULT_MAX_COST clips of work


class ServeArgs(BaseModel):
    """Arguments of `serve run pipelines.serve:app key=value ...` and of `args:` in a Serve config file."""

    model_config = {"extra": "forbid"}

    preset: str = Field("tiny", description="model preset; ignored when checkpoint_dir is set")
    checkpoint_dir: str | None = Field(None, description="folder with the official checkpoint files")
    model: str = Field(DEFAULT_MODEL, description=f"official model name: {', '.join(MODEL_NAMES)}")
    offload_diffusion_model: bool = Field(False, description="keep the DiT on the CPU except while it runs")
    offload_tokenizer: bool = Field(False, description="keep the VAE on the CPU except while it runs")
    offload_text_encoder: bool = Field(False, description="keep the text encoder on the CPU except while it runs")
    dtype: str | None = Field(None, description=f"one of {', '.join(DTYPE_NAMES)}; default: the generator's")
    compile: bool = Field(False, description="torch.compile the DiT blocks: a slower start, faster steps")
    attention_backend: str = Field("auto", description=f"one of {', '.join(ATTENTION_BACKENDS)}")
    attention_precision: str = Field(
        "bf16", description=f"the DiT's self-attention kernel, one of {', '.join(ATTENTION_PRECISIONS)} (8-bit: faster)"
    )
    attention_bf16_first_steps: int = Field(1, ge=0, description="with 8-bit attention: first N evaluations in bf16")
    attention_bf16_last_steps: int = Field(1, ge=0, description="with 8-bit attention: last N evaluations in bf16")
    attention_bf16_blocks: list[int] = Field([], description="with 8-bit attention: DiT blocks kept in bf16")
    linear_precision: str = Field("bf16", description=f"the DiT's large linears, one of {', '.join(LINEAR_PRECISIONS)}")
    embedding_cache: str | None = Field(None, description="fsspec folder where replicas share prompt embeddings")
    checkpoint_path: str | None = Field(
        None,
        description="your own DiT checkpoint (file, diffusers transformer/ folder, or their URL), post-trained from "
        "`model`; replaces only the DiT of the preset or checkpoint_dir (docs/own-models.md)",
    )
    loras: list[str] = Field(
        [], description="LoRA adapters merged into the DiT for every request, each 'PATH[:SCALE]' (docs/own-models.md)"
    )
    gpus_per_replica: int = Field(1, ge=1, description="GPUs in each replica's group (context parallel)")
    use_gpus: bool = Field(
        True, description="false: replicas ask for no GPU and run on CPU (the tiny preset on a laptop)"
    )
    min_replicas: int = Field(1, ge=0, description="autoscaling lower bound (0 scales to zero)")
    max_replicas: int = Field(1, ge=1, description="autoscaling upper bound")
    max_queued_requests: int = Field(4, ge=0, description="requests waiting for a replica before 503")
    retry_after_s: int = Field(30, ge=1, description="Retry-After sent with 503")
    output_url: str | None = Field(None, description="where results are stored (always an allowed output)")
    allowed_output_prefixes: list[str] = Field([], description="further URL prefixes `?output=` may use")
    allowed_input_prefixes: list[str] = Field([], description="URL prefixes `input_path` may read from")
    allow_private_http: bool = Field(
        False,
        description="let http(s) inputs reach loopback, private and link-local addresses (off: public addresses "
        "only; redirects are never followed)",
    )
    allowed_loras: dict[str, str] = Field(
        {},
        description="LoRA adapters a request may name in `cosmos_ray_loras`, by name: name -> the adapter's file "
        "(an absolute path on every GPU node, or an fsspec URL); requests send the name, never a path",
    )
    storage_options: dict[str, Any] = Field({}, description="fsspec options for inputs and outputs")
    media_limits: dict[str, float] = Field(
        {},
        description="limits on conditioning inputs, checked before decoding (a request over one gets a 422): "
        + ", ".join(f"{limit.name} (default {limit.default})" for limit in dataclasses.fields(MediaLimits)),
    )
    api_tokens_file: str | None = Field(
        None,
        description="file of bearer tokens, one per line (e.g. a mounted Secret); with COSMOS_RAY_API_TOKENS "
        "(comma-separated) the accepted tokens; neither set: no authentication, allowed only on a loopback "
        "address or with allow_unauthenticated",
    )
    allow_unauthenticated: bool = Field(
        False,
        description="serve without tokens although Serve listens beyond loopback (anyone who reaches the port "
        "may generate); without it such a deployment fails to start",
    )
    max_active_per_token: int | None = Field(
        None,
        ge=1,
        description="generations (requests and jobs) one token may have queued or running at once, else 429; "
        "null: no quota",
    )
    max_request_bytes: int = Field(64 * 1024, ge=1024, description="largest accepted request body")
    max_num_frames: int = Field(
        93,
        ge=1,
        description="largest frame count of a request: its `cosmos_ray_num_frames` (a spec without it gets the "
        "model's native 93 frames) or `num_output_frames`",
    )
    max_pixels: int = Field(TRAINED_PIXELS_720P, ge=1, description="largest height x width of `resolution`")
    max_num_steps: int = Field(50, ge=1, description="largest `num_steps` of a request")
    max_cost: float | None = Field(
        None,
        gt=0,
        description="largest DiT work of a request, in reference clips (one 93-frame 704x1280 window at 35 guided "
        "steps): covers windows, steps, frames and resolution together; null: 3, or 1.5 samples of the model's "
        "official defaults where that is more (the 7-camera model: 7.8, the 3-camera robot model: 12.2)",
    )
    max_request_s: float | None = Field(
        None,
        gt=0,
        description="time limit of one generation once its GPUs begin; past it the generation stops between steps "
        "and the request fails (504); null: 1800 s, times a third of the model's official sample in reference "
        "clips where that is more than one (the 7-camera model: 52 min, the 3-camera robot model: 81 min)",
    )
    max_jobs: int = Field(64, ge=1, description="async jobs queued or running at once; finished ones kept")
    guardrails: bool | None = Field(
        None,
        description="NVIDIA's safety checks on prompts and videos; default: on with a checkpoint (as the official "
        "inference; the weights' license), off with a random-weight preset (README: Guardrails)",
    )

    @field_validator("allowed_loras")
    @classmethod
    def _adapter_files_are_absolute(cls, allowed: dict[str, str]) -> dict[str, str]:
        for name, path in allowed.items():
            if not name.strip():
                raise ValueError("allowed_loras: an adapter name must not be empty")
            if url_scheme(path) is None and not os.path.isabs(os.path.expanduser(path)):
                raise ValueError(
                    f"allowed_loras: adapter {name!r} is at {path!r}, a relative path; give an absolute path or a URL"
                )
        return allowed

    def spec_limits(self) -> SpecLimits:
        """The per-request limits: the shared `SpecLimits` with this server's bounds."""
        return SpecLimits(
            max_num_output_frames=self.max_num_frames,
            max_pixels=self.max_pixels,
            max_num_steps=self.max_num_steps,
            max_cost=self.max_cost or max(DEFAULT_MAX_COST, 1.5 * native_cost(get_model(self.model)).clips),
        )

    def request_time_limit_s(self) -> float:
        """`max_request_s`, or its default for this deployment's model: 1800 s per 3 reference clips of one
        official sample, at least 1800 s (the base models' sample is one clip: about 4 minutes of an H100)."""
        if self.max_request_s is not None:
            return self.max_request_s
        return DEFAULT_REQUEST_S * max(1.0, native_cost(get_model(self.model)).clips / DEFAULT_MAX_COST)

    def engine_options(self) -> EngineOptions:
        """What every replica's ranks run: the `EngineOptions` of these arguments (ValueError if invalid)."""
        return EngineOptions(
            source=self.checkpoint_dir or self.preset,
            model=self.model,
            dtype=self.dtype,
            compile=self.compile,
            attention_backend=self.attention_backend,
            attention_precision=self.attention_precision,
            attention_bf16_first_steps=self.attention_bf16_first_steps,
            attention_bf16_last_steps=self.attention_bf16_last_steps,
            attention_bf16_blocks=tuple(self.attention_bf16_blocks),
            linear_precision=self.linear_precision,
            offload=OffloadConfig(self.offload_diffusion_model, self.offload_tokenizer, self.offload_text_encoder),
            embedding_cache=self.embedding_cache,
            checkpoint_path=self.checkpoint_path,
            loras=tuple(LoraRef.parse(text) for text in self.loras),
            guardrails=self.guardrails,
            storage=self.storage(),
            media_limits=MediaLimits.from_mapping(self.media_limits),
        )

    def storage(self) -> Storage:
        """The app's one storage handle: its fsspec options, and http(s) inputs only where an allowed input
        prefix is an http(s) URL (the allow-list already decides which ones)."""
        allow_http = any(url_scheme(prefix) in HTTP_SCHEMES for prefix in self.allowed_input_prefixes)
        return Storage(
            options=self.storage_options or None, allow_http=allow_http, allow_private_http=self.allow_private_http
        )
