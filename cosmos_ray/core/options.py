"""`EngineOptions`: everything an engine run needs besides its specs, as one object.

Each entry point builds one (the local CLI and the batch job from their flags, `jobs.options.engine_options_of`;
Serve from its arguments, `ServeArgs.engine_options`; the benches from theirs) and hands it down unchanged: the
batch job and Serve carry it in `GroupConfig.engine` to every rank worker, where `Generator.from_options` builds
the engine from it. Plain data, no torch, so the Ray driver side can hold it.

An option has one name everywhere: the field name here is the Serve argument, and the command-line flag is the
same name with dashes (`embedding_cache` -> `--embedding-cache`). The fields whose metadata has a `help` get
their flag from `jobs.options.add_engine_options` without further code (a repeatable one, such as `loras`, names
its singular flag and how one value is parsed: `--lora PATH[:SCALE]`); `source`, `offload` and `storage` have
flags of their own shape (`--preset` / `--checkpoint-dir`, the three official offload flags, the storage
options). docs/architecture.md, "Where to add an engine option", has the steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cosmos_ray.core.adapters import LoraRef
from cosmos_ray.core.attention_precision import ATTENTION_PRECISIONS, AttentionPrecision
from cosmos_ray.core.dtypes import DTYPE_NAMES
from cosmos_ray.core.guardrails import Guardrails, GuardrailSetting, guardrail_setting
from cosmos_ray.core.media import MediaLimits
from cosmos_ray.core.offload_config import NO_OFFLOAD, OffloadConfig
from cosmos_ray.core.registry import DEFAULT_MODEL, MODELS, check_source, get_model
from cosmos_ray.core.storage import Storage

# The attention kernels the DiT can be told to use (`cosmos_ray.models.attention`): "auto" is cuDNN first on
# CUDA (the fastest measured), the math kernel elsewhere.
ATTENTION_BACKENDS = ("auto", "cudnn", "flash", "efficient", "math")
# The GEMMs of the DiT blocks' large linears (`cosmos_ray.models.fp8_linear`).
LINEAR_PRECISIONS = ("bf16", "fp8")


def _option(
    help: str,
    choices: Callable[[], tuple[str, ...]] | None = None,
    metavar: str | None = None,
    *,
    repeat: tuple[str, Callable[[str], Any]] | None = None,
) -> dict[str, Any]:
    """Field metadata of an option that gets its command-line flag generically (`choices` is read when a
    parser is built, so models registered after import are offered too). A tuple-valued option gives
    `repeat`: its flag, given once per value, and how one value is parsed from the command line."""
    return {"help": help, "choices": choices, "metavar": metavar, "repeat": repeat}


@dataclass(frozen=True)
class EngineOptions:
    """What the engine runs and how: the model and its weights, precision, kernels, offloading, caches."""

    source: str = "tiny"  # a random-weight preset (`cosmos_ray.core.presets`) or a checkpoint folder
    model: str = field(
        default=DEFAULT_MODEL,
        metadata=_option(
            "official model: its checkpoint, net and sampler (listed below)", lambda: tuple(MODELS), "NAME"
        ),
    )
    dtype: str | None = field(
        default=None,
        metadata=_option("compute dtype (default: bfloat16 on CUDA, float32 on CPU)", lambda: DTYPE_NAMES),
    )
    compile: bool = field(default=False, metadata=_option("torch.compile the DiT blocks: a slower start, faster steps"))
    attention_backend: str = field(
        default="auto",
        metadata=_option("attention kernel of the DiT (auto: cuDNN first on CUDA)", lambda: ATTENTION_BACKENDS),
    )
    attention_precision: str = field(
        default="bf16",
        metadata=_option(
            "the DiT's self-attention kernel: bf16 (the model dtype's SDPA, as the official default) or an 8-bit "
            "one. Measured on an H100 (docs/performance.md): sage2 (SageAttention 2, the official inference's "
            "kernel, compiled by you) makes a guided 2B step 1.20x faster at a velocity error of 9e-3; int8 "
            "(ours, Triton) is not faster yet; fp8 (cuDNN, the fp8-attention extra) is 1.26x at a 0.18 error",
            lambda: ATTENTION_PRECISIONS,
        ),
    )
    attention_bf16_first_steps: int = field(
        default=1,
        metadata=_option(
            "with an 8-bit attention: the first N denoising evaluations (of each autoregressive window) keep bf16 "
            "attention",
            metavar="N",
        ),
    )
    attention_bf16_last_steps: int = field(
        default=1,
        metadata=_option(
            "with an 8-bit attention: the last N denoising evaluations (of each window) keep bf16 attention",
            metavar="N",
        ),
    )
    attention_bf16_blocks: tuple[int, ...] = field(
        default=(),
        metadata=_option(
            "with an 8-bit attention: a DiT block (0-based) whose self-attention stays bf16, repeatable",
            metavar="BLOCK",
            repeat=("--attention-bf16-block", int),
        ),
    )
    linear_precision: str = field(
        default="bf16",
        metadata=_option(
            "the DiT blocks' large linears (attention projections, MLP): bf16, or fp8 GEMMs (e4m3, rowwise "
            "scales; Hopper or newer), faster at a measured error (docs/performance.md)",
            lambda: LINEAR_PRECISIONS,
        ),
    )
    offload: OffloadConfig = NO_OFFLOAD  # models that wait on the CPU between their stages (the official flags)
    embedding_cache: str | None = field(
        default=None,
        metadata=_option(
            "fsspec folder where prompt embeddings are shared (between runs and replicas), so each distinct "
            "prompt is encoded once (a Reason1 embedding is about 100 MB); default: in memory only",
            metavar="URL",
        ),
    )
    guardrails: bool | None = field(
        default=None,
        metadata=_option(
            "run NVIDIA's safety checks (cosmos-ray[guardrails]): the prompt before generation, the video "
            "after it (blocked samples are recorded, never written). Default: on with NVIDIA weights, as the "
            "official inference, whose license ends your rights if you disable them without a substantially "
            "similar guardrail; off with the random-weight presets (README: Guardrails)"
        ),
    )
    checkpoint_path: str | None = field(
        default=None,
        metadata=_option(
            "your own DiT checkpoint, post-trained from --model (as the official --checkpoint-path with "
            "--experiment): a consolidated official .pt (EMA or not, bf16 or fp32, with or without LoRA keys), a "
            ".safetensors file or a diffusers transformer/ folder; a local path or any fsspec URL (fetched once "
            "per node). It replaces only the DiT: the VAE and text encoder come from --preset / --checkpoint-dir "
            "(docs/own-models.md)",
            metavar="PATH_OR_URL",
        ),
    )
    loras: tuple[LoraRef, ...] = field(
        default=(),
        metadata=_option(
            "a LoRA adapter to merge into the DiT, at SCALE (default 1), repeatable: several blend as W + sum("
            "scale * alpha / rank * B A); official (.pt) or diffusers (pytorch_lora_weights.safetensors) format, "
            "a local path or any fsspec URL (docs/own-models.md)",
            metavar="PATH[:SCALE]",
            repeat=("--lora", LoraRef.parse),
        ),
    )
    storage: Storage = field(default_factory=Storage)  # reaches conditioning inputs and the embedding cache
    # the largest conditioning input decoded (bytes, pixels, frames, duration), checked before decoding
    media_limits: MediaLimits = field(default_factory=MediaLimits)

    def __post_init__(self) -> None:
        # a list (argparse's append, JSON) or strings `PATH[:SCALE]` become the tuple of `LoraRef`s
        loras = tuple(ref if isinstance(ref, LoraRef) else LoraRef.parse(ref) for ref in self.loras)
        object.__setattr__(self, "loras", loras)
        object.__setattr__(self, "attention_bf16_blocks", tuple(self.attention_bf16_blocks))
        get_model(self.model)  # ValueError naming the official models
        check_source(self.source, self.model)  # a preset of another model size
        if self.dtype is not None and self.dtype not in DTYPE_NAMES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPE_NAMES)} or None, got {self.dtype!r}")
        if self.attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(
                f"attention_backend must be one of {', '.join(ATTENTION_BACKENDS)}, got {self.attention_backend!r}"
            )
        self.attention()  # ValueError naming the bad attention field
        if self.linear_precision not in LINEAR_PRECISIONS:
            raise ValueError(
                f"linear_precision must be one of {', '.join(LINEAR_PRECISIONS)}, got {self.linear_precision!r}"
            )

    def attention(self) -> AttentionPrecision:
        """The DiT's self-attention precision and its full-precision schedule."""
        return AttentionPrecision(
            self.attention_precision,
            self.attention_bf16_first_steps,
            self.attention_bf16_last_steps,
            self.attention_bf16_blocks,
        )

    def guardrail_setting(self, checks: Guardrails | None = None) -> GuardrailSetting:
        """Whether this run has guardrails and why (the flag, else the default for the source); `checks` is
        the implementation to run when on (default: NVIDIA's)."""
        return guardrail_setting(self.guardrails, self.source, checks)
