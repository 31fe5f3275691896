"""Reason1 text encoder: prompts -> the cross-attention context of the Cosmos-Predict2.5 DiT.

Reason1 is a Qwen2.5-VL-7B model; only its language model runs here (the vision tower is never loaded).
As the official pipeline does, each prompt is
  1. wrapped in Qwen2.5-VL's chat template as a user turn after a fixed system turn (no generation prompt),
  2. tokenized, truncated to 512 tokens and right-padded with the pad token to 512,
  3. run through the language model WITHOUT an attention mask (padding tokens are attended to, causally),
  4. and every layer's output (all hidden states but the embedding output; the last one is after the final
     RMSNorm) is normalized per token to zero mean / unit (unbiased) std and concatenated on the channels:
     (B, 512, num_layers * hidden_size) = (B, 512, 28 * 3584 = 100352) for Reason1.
     The normalization runs in the model's dtype, as the official `TextEncoder.mean_normalize` (bf16 in inference).

Embeddings are cached by (model id, prompt) in an `EmbeddingCache`, so a prompt (e.g. the negative prompt)
is encoded once per worker, or once per dataset with an fsspec cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoTokenizer,
    PreTrainedTokenizerBase,
    Qwen2_5_VLTextConfig,
    Qwen2_5_VLTextModel,
    Qwen2Tokenizer,
)

from cosmos_ray.core.dtypes import default_dtype_name
from cosmos_ray.models.text_cache import EmbeddingCache
from cosmos_ray.models.weights import load_into

SYSTEM_PROMPT = "You are a helpful assistant who will provide prompts to an image generator."
MAX_LENGTH = 512

# Qwen2.5-VL's chat format for messages whose content is text (a string or a list of {"type": "text"} parts).
# The official pipeline always uses Qwen2.5-VL-7B-Instruct's template, whatever folder the weights come from;
# for text-only messages that template renders exactly this.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TINY_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TINY_VOCAB_SIZE = 256 + len(TINY_SPECIAL_TOKENS)  # one token per byte, then the special tokens


@dataclass(frozen=True)
class TextEncoderConfig:
    """Architecture of the Qwen2.5-VL language model and how prompts are turned into embeddings."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    mrope_section: tuple[int, int, int]  # halves of the head dim given to the (t, h, w) position ids
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 128_000
    max_length: int = MAX_LENGTH
    system_prompt: str = SYSTEM_PROMPT

    @property
    def embed_dim(self) -> int:
        """Width of the output: one normalized hidden state per layer, concatenated."""
        return self.num_layers * self.hidden_size

    @classmethod
    def preset(cls, name: str) -> TextEncoderConfig:
        presets = {
            "reason1": cls(
                vocab_size=152_064,
                hidden_size=3584,
                intermediate_size=18_944,
                num_layers=28,
                num_heads=28,
                num_kv_heads=4,
                mrope_section=(16, 24, 24),
            ),
            "tiny": cls(
                vocab_size=TINY_VOCAB_SIZE,
                hidden_size=32,
                intermediate_size=64,
                num_layers=3,
                num_heads=4,
                num_kv_heads=2,
                mrope_section=(2, 1, 1),
                max_position_embeddings=MAX_LENGTH,
            ),
        }
        if name not in presets:
            raise ValueError(f"unknown text encoder preset {name!r}; expected one of {sorted(presets)}")
        return presets[name]

    @classmethod
    def from_transformers(cls, text_config: Qwen2_5_VLTextConfig) -> TextEncoderConfig:
        """Reads the language-model fields of a Qwen2.5-VL checkpoint's config."""
        if getattr(text_config, "use_sliding_window", False):
            raise ValueError("Qwen2.5-VL configs with use_sliding_window=True are not supported")
        rope: dict[str, Any] = dict(text_config.rope_parameters or {})
        return cls(
            vocab_size=text_config.vocab_size,
            hidden_size=text_config.hidden_size,
            intermediate_size=text_config.intermediate_size,
            num_layers=text_config.num_hidden_layers,
            num_heads=text_config.num_attention_heads,
            num_kv_heads=text_config.num_key_value_heads or text_config.num_attention_heads,
            mrope_section=tuple(rope["mrope_section"]),
            rope_theta=rope["rope_theta"],
            rms_norm_eps=text_config.rms_norm_eps,
            max_position_embeddings=text_config.max_position_embeddings,
        )

    def to_transformers(self) -> Qwen2_5_VLTextConfig:
        return Qwen2_5_VLTextConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads,
            rms_norm_eps=self.rms_norm_eps,
            max_position_embeddings=self.max_position_embeddings,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": self.rope_theta,
                "mrope_section": list(self.mrope_section),
            },
            bos_token_id=None,
            eos_token_id=None,
            use_cache=False,
        )


def build_tiny_tokenizer() -> Qwen2Tokenizer:
    """A byte-level Qwen2 tokenizer without merges (one token per UTF-8 byte) plus the chat special tokens.

    Built in code so tests and the `tiny` preset work offline; it pre-tokenizes, pads and templates like
    the real Qwen2.5 tokenizer, only its vocabulary is tiny.
    """
    from tokenizers import pre_tokenizers

    vocab = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab.update({token: len(vocab) + i for i, token in enumerate(TINY_SPECIAL_TOKENS)})
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], extra_special_tokens=list(TINY_SPECIAL_TOKENS[1:]))
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer


def normalize_per_token(hidden: torch.Tensor) -> torch.Tensor:
    """(x - mean) / (unbiased std + 1e-8) over the channels, in the hidden states' own dtype (as official)."""
    return (hidden - hidden.mean(dim=-1, keepdim=True)) / (hidden.std(dim=-1, keepdim=True) + 1e-8)


class TextEncoder(nn.Module):
    """Reason1 (Qwen2.5-VL language model) prompt encoder: `encode(prompts) -> (B, 512, embed_dim)`."""

    def __init__(
        self,
        config: TextEncoderConfig,
        model: Qwen2_5_VLTextModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        model_id: str,
        cache: EmbeddingCache | None = None,
    ):
        super().__init__()
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; Reason1 pads prompts with it to 512 tokens")
        self.config = config
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.cache = cache if cache is not None else EmbeddingCache()

    @property
    def device(self) -> torch.device:
        return self.model.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.embed_tokens.weight.dtype

    @classmethod
    def from_pretrained(
        cls,
        source: str = "tiny",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        cache: EmbeddingCache | None = None,
    ) -> TextEncoder:
        """Builds the encoder from "tiny" (random weights, seed 0) or a local checkpoint folder.

        A folder is either a Qwen2.5-VL / Reason1 folder in Hugging Face layout (config.json, safetensors
        weights, tokenizer files) or a diffusers pipeline folder with `text_encoder/` and `tokenizer/`.
        Defaults: CUDA in bfloat16 when available, else CPU in float32; `cache`: a private in-memory one.
        """
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or getattr(torch, default_dtype_name(device.type))
        cache = cache if cache is not None else EmbeddingCache()
        if source == "tiny":
            # Drawn on the CPU so that seed 0 gives the same tiny model on every device.
            encoder = cls.from_random(
                TextEncoderConfig.preset("tiny"),
                build_tiny_tokenizer(),
                seed=0,
                device="cpu",
                dtype=dtype,
                model_id="tiny",
                cache=cache,
            )
            return encoder.to(device)
        if not Path(source).is_dir():
            raise FileNotFoundError(
                f"text encoder source {source!r} is neither 'tiny' nor an existing checkpoint folder"
            )
        return cls._from_folder(Path(source), device, dtype, cache)

    @classmethod
    def from_random(
        cls,
        config: TextEncoderConfig,
        tokenizer: PreTrainedTokenizerBase,
        *,
        seed: int = 0,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        model_id: str | None = None,
        cache: EmbeddingCache | None = None,
    ) -> TextEncoder:
        """Random weights (transformers' Qwen2.5-VL init) drawn on `device` from `seed`."""
        device = torch.device(device)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.device(device):
            torch.manual_seed(seed)
            model = Qwen2_5_VLTextModel._from_config(config.to_transformers(), dtype=dtype)
        model_id = model_id or f"random-{_digest(asdict(config))}-seed{seed}"
        return cls(config, model, tokenizer, model_id=model_id, cache=cache)

    @classmethod
    def _from_folder(cls, folder: Path, device: torch.device, dtype: torch.dtype, cache: EmbeddingCache) -> TextEncoder:
        model_dir, tokenizer_dir = _locate_checkpoint(folder)
        hf_config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
        config = TextEncoderConfig.from_transformers(getattr(hf_config, "text_config", hf_config))
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
        weight_files = _weight_files(model_dir)

        with torch.device("meta"):
            model = Qwen2_5_VLTextModel._from_config(config.to_transformers(), dtype=dtype)
        state = _read_language_model(weight_files, device, dtype)
        load_into(model, state, what=f"language model weights in {model_dir}")
        # Non-persistent buffers (the RoPE frequencies) are not in the checkpoint: rebuild them on `device`.
        model.rotary_emb = type(model.rotary_emb)(model.config).to(device)

        model_id = "qwen2.5-vl-" + _digest(
            {
                "config": (model_dir / "config.json").read_text(),
                "weights": [(p.name, p.stat().st_size) for p in weight_files],
            }
        )
        return cls(config, model, tokenizer, model_id=model_id, cache=cache)

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """Chat-templated prompts -> token ids (B, max_length), truncated and right-padded with the pad token."""
        rows = []
        for prompt in prompts:
            conversation: list[dict[str, Any]] = [
                {"role": "system", "content": [{"type": "text", "text": self.config.system_prompt}]},
                {"role": "user", "content": [{"type": "text", "text": prompt}]},
            ]
            text = self.tokenizer.apply_chat_template(
                conversation, chat_template=QWEN_CHAT_TEMPLATE, tokenize=False, add_generation_prompt=False
            )
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][: self.config.max_length]
            rows.append(ids + [self.tokenizer.pad_token_id] * (self.config.max_length - len(ids)))
        return torch.tensor(rows, dtype=torch.long)

    @torch.no_grad()
    def encode(
        self, prompts: Sequence[str], running: Callable[[], AbstractContextManager[None]] = nullcontext
    ) -> torch.Tensor:
        """Prompts -> (B, max_length, embed_dim) in the model's dtype, on its device; cached per prompt.

        `running()` is entered around the model call, which happens only for prompts not in the cache (the
        generator uses it to bring an offloaded encoder to the GPU only when it has work).
        """
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise TypeError(f"encode expects a list of prompt strings, got {type(prompts).__name__}")
        if not prompts:
            raise ValueError("encode got an empty list of prompts")
        cache_id = f"{self.model_id}/{str(self.dtype).removeprefix('torch.')}"
        cached = {prompt: self.cache.get(cache_id, prompt) for prompt in dict.fromkeys(prompts)}
        found = {prompt: embedding for prompt, embedding in cached.items() if embedding is not None}
        missing = [prompt for prompt in cached if prompt not in found]
        if missing:
            with running():
                embeddings = self(self.tokenize(missing))
            for prompt, embedding in zip(missing, embeddings):
                embedding = embedding.clone()  # not a view: the cache must not keep the whole batch alive
                self.cache.put(cache_id, prompt, embedding)
                found[prompt] = embedding
        return torch.stack([found[prompt].to(self.device, self.dtype) for prompt in prompts])

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token ids (B, L) -> normalized, concatenated layer outputs (B, L, num_layers * hidden_size)."""
        # No attention mask, as in the official pipeline: padding tokens are attended to (causally).
        outputs = self.model(input_ids=input_ids.to(self.device), output_hidden_states=True, use_cache=False)
        layers = outputs.hidden_states[1:]  # num_layers x (B, L, hidden); the last is after the final norm
        if len(layers) != self.config.num_layers:
            raise RuntimeError(
                f"expected {self.config.num_layers + 1} hidden states from transformers, got {len(layers) + 1}"
            )
        return torch.cat([normalize_per_token(hidden.to(self.dtype)) for hidden in layers], dim=-1)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _locate_checkpoint(folder: Path) -> tuple[Path, Path]:
    """(model folder, tokenizer folder) of a Hugging Face or diffusers-pipeline layout; clear errors if absent."""
    if (folder / "text_encoder").is_dir():
        model_dir, tokenizer_dir = folder / "text_encoder", folder / "tokenizer"
    else:
        model_dir = tokenizer_dir = folder
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"text encoder checkpoint {model_dir} has no config.json")
    has_tokenizer = (tokenizer_dir / "tokenizer.json").is_file() or all(
        (tokenizer_dir / name).is_file() for name in ("vocab.json", "merges.txt")
    )
    if not has_tokenizer:
        raise FileNotFoundError(
            f"no tokenizer in {tokenizer_dir}: expected tokenizer.json (or vocab.json + merges.txt)"
        )
    return model_dir, tokenizer_dir


def _weight_files(model_dir: Path) -> list[Path]:
    """The safetensors files of a checkpoint: the shards its index names, or its single model.safetensors."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        absent = [name for name in names if not (model_dir / name).is_file()]
        if absent:
            raise FileNotFoundError(
                f"text encoder checkpoint {model_dir} lacks shards listed in {index.name}: " + ", ".join(absent)
            )
        return [model_dir / name for name in names]
    single = model_dir / "model.safetensors"
    if not single.is_file():
        raise FileNotFoundError(
            f"no weights in {model_dir}: expected model.safetensors or model.safetensors.index.json"
        )
    return [single]


def language_model_key(key: str) -> str | None:
    """Checkpoint key -> Qwen2_5_VLTextModel key; None for the vision tower and the LM head.

    Current transformers saves the language model under `model.language_model.`, older checkpoints
    (Qwen2.5-VL-7B-Instruct, Cosmos-Reason1-7B) under `model.`, with the vision tower under `visual.`.
    """
    for prefix in ("model.language_model.", "model."):
        if key.startswith(prefix):
            key = key[len(prefix) :]
            return None if key.startswith("visual.") else key
    return None


def _read_language_model(files: Sequence[Path], device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Reads only the language-model tensors, straight onto `device`, cast to `dtype`."""
    from safetensors import safe_open

    state = {}
    for path in files:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            for key in f.keys():
                name = language_model_key(key)
                if name is not None:
                    state[name] = f.get_tensor(key).to(dtype)
    return state
