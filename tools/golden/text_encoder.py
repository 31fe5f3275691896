"""Fixture `text_encoder`: the official Reason1 text-encoder wrapper (`predict2/text_encoders/text_encoder.py`
`TextEncoder` holding `reason1.py`'s `QwenVLBaseModel`, the `reason1/` Qwen2.5-VL network and `Processor`) built
from the text-encoder config the 2B experiment composes, with tiny widths (`TINY`) and seeded random weights, run
by its own `compute_text_embeddings_online` (chat template with the system prompt, padding / truncation to 512,
every layer's hidden state, `mean_normalize`, the experiment's concatenation strategy) in bf16 (the composed
config's precision) and float32.

Needs the official code's pinned Python packages (its uv.lock): transformers 4.51.3, tokenizers 0.21.4,
qwen-vl-utils 0.0.14, huggingface-hub 0.36.0 and diffusers 0.35.2 first on the path (docs/reference-notes.md says
how); the piece refuses to run with another transformers.

What stands in, and nothing else of the official code is changed:
  flash_attn (GPU-only)             -> the network module imports with an inert `flash_attn`; the one call the
                                       text path makes, `_flash_attention_forward` (causal, no padding mask, no
                                       dropout, no sliding window), is `causal_sdpa`: PyTorch's scaled-dot-product
                                       attention with is_causal=True on the same (B, S, H, D) tensors
  the Qwen tokenizer files (S3)     -> a local processor folder: a byte-level tokenizer without merges (one token
                                       per UTF-8 byte, then <|endoftext|> <|im_start|> <|im_end|>: the vocabulary of
                                       cosmos-ray's `build_tiny_tokenizer`), Qwen2VLImageProcessor defaults, and
                                       cosmos-ray's QWEN_CHAT_TEMPLATE (read from cosmos_ray/models/text.py with
                                       `ast`) as its chat template, since Qwen2.5-VL-7B-Instruct's own file cannot
                                       be downloaded here
  the checkpoint (S3)               -> a local file with the seeded weights (`random_dit_weights` of each
                                       parameter's language-model name), loaded by the official __init__
  `.to(device="cuda")` of the ids   -> `CudaToCpu`: a TorchFunctionMode sending that one move to the CPU
"""

from __future__ import annotations

import ast
import copy
import hashlib
import importlib.machinery
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from tools.golden.dit import SETTINGS, random_dit_weights
from tools.golden.harness import ROOT, Official, _StubModule, pack, write
from tools.golden.model_config import BASE_CONFIG, official_experiment_config

TRANSFORMERS = "4.51.3"  # the official uv.lock's pin
TINY = {  # cosmos_ray.models.text.TextEncoderConfig.preset("tiny"); the rest from the composed config
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 3,
    "max_window_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 259,
    "rope_scaling": {"mrope_section": [2, 1, 1], "rope_type": "default", "type": "default"},
}
TINY_VISION = {"depth": 1, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2, "out_hidden_size": 32}
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
PROMPTS = [
    "",
    "A robot arm picks up a red cube and places it in a bowl.",
    "Kamera fährt über die Kreuzung in 東京, Regen.",
    " ".join(f"step {i}: the camera pans slowly over the warehouse shelves." for i in range(12)),  # > 512 tokens
]
CALLS: list[torch.Size] = []  # causal_sdpa's calls: the tool checks that every layer made one
POSITIONS = (0, 1, 5, 40, 80, 200, 511)  # token positions stored in full (all channels)
PROJECTIONS = 2  # every position is also stored as PROJECTIONS seeded projections of its channels


def projection_matrix(channels: int) -> torch.Tensor:
    """(channels, PROJECTIONS) seeded float64 directions; cosmos-ray's test projects its embeddings the same way."""
    return torch.from_numpy(np.random.RandomState(7).standard_normal((channels, PROJECTIONS)) / np.sqrt(channels))


def summarize(embeddings: torch.Tensor) -> dict:
    """What the fixture keeps of (B, 512, C) embeddings: every channel at POSITIONS, every position projected,
    and the sha256 of all the bytes (bit-identity in bf16)."""
    raw = embeddings.contiguous()
    raw = raw.view(torch.uint16) if raw.dtype == torch.bfloat16 else raw
    return {
        "positions": pack(embeddings[:, list(POSITIONS)]),
        "projected": pack((embeddings.double() @ projection_matrix(embeddings.shape[-1])).float()),
        "sha256": hashlib.sha256(raw.numpy().tobytes()).hexdigest(),
    }


def causal_sdpa(query, key, value, attention_mask, query_length, dropout=0.0, sliding_window=None, is_causal=True, **_):
    """Stand-in for transformers' `_flash_attention_forward` on the text path: (B, S, H, D) in and out."""
    CALLS.append(query.shape)
    assert attention_mask is None and dropout == 0.0 and sliding_window is None and is_causal
    assert query.shape[1] == key.shape[1] == query_length  # top-left and bottom-right causal masks coincide
    out = F.scaled_dot_product_attention(
        query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), is_causal=True
    )
    return out.transpose(1, 2)


class CudaToCpu(TorchFunctionMode):
    """The official wrapper moves the token ids with `.to(device="cuda")`; here they stay on the CPU."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.Tensor.to and kwargs.get("device") == "cuda":
            kwargs["device"] = "cpu"
        return func(*args, **kwargs)


def chat_template() -> str:
    """cosmos-ray's QWEN_CHAT_TEMPLATE, read without importing cosmos_ray (it needs a newer transformers)."""
    tree = ast.parse((ROOT / "cosmos_ray" / "models" / "text.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "QWEN_CHAT_TEMPLATE":
            return ast.literal_eval(node.value)
    raise SystemExit("QWEN_CHAT_TEMPLATE not found in cosmos_ray/models/text.py")


def tiny_processor(folder: Path) -> Path:
    """A Qwen2.5-VL processor folder with the byte-level tiny tokenizer (what `Processor` loads from S3)."""
    from tokenizers import pre_tokenizers

    # transformers 4.51.3 (the official pin), not cosmos-ray's: mypy sees the newer one
    from transformers import Qwen2_5_VLProcessor, Qwen2TokenizerFast, Qwen2VLImageProcessor  # type: ignore[attr-defined]

    vocab = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab.update({token: len(vocab) + i for i, token in enumerate(SPECIAL_TOKENS)})
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = Qwen2TokenizerFast(
        vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt"), pad_token=SPECIAL_TOKENS[0]
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    processor = Qwen2_5_VLProcessor(Qwen2VLImageProcessor(), tokenizer, chat_template=chat_template())
    processor.save_pretrained(folder / "processor")
    return folder / "processor"


def import_network(official: Official):
    """Imports the official Qwen2.5-VL network (it asserts flash-attention at import) with an inert flash_attn,
    then puts `causal_sdpa` where it calls flash-attention."""
    import transformers
    import transformers.utils

    if transformers.__version__ != TRANSFORMERS:
        raise SystemExit(
            f"the text_encoder piece needs transformers {TRANSFORMERS} (the official pin), found "
            f"{transformers.__version__}: put the official pins first on PYTHONPATH (docs/reference-notes.md)"
        )
    for name in ("flash_attn", "flash_attn.layers", "flash_attn.layers.rotary", "flash_attn.bert_padding"):
        stub = _StubModule(name)
        stub.__path__ = []
        stub.__spec__ = importlib.machinery.ModuleSpec(name, None)
        sys.modules[name] = stub
    sys.modules.pop("cosmos_predict2._src.reason1.networks.qwen2_5_vl", None)  # the harness's stub
    available = transformers.utils.is_flash_attn_2_available
    transformers.utils.is_flash_attn_2_available = lambda: True
    try:
        network = official.module("reason1.networks.qwen2_5_vl")
    finally:
        transformers.utils.is_flash_attn_2_available = available
    network._flash_attention_forward = causal_sdpa  # type: ignore[attr-defined]
    return network


def language_model_name(key: str) -> str:
    """Official parameter name -> the name the weights are seeded by (cosmos-ray's Qwen2_5_VLTextModel's)."""
    return key.removeprefix("model.")


def official_encoder(official: Official, folder: Path, dtype: torch.dtype):
    """The official TextEncoder, built by its own __init__ from the composed config with the tiny widths."""
    import omegaconf  # type: ignore[import-not-found]  # the official code's dependency, not cosmos-ray's

    import_network(official)
    text_encoder = official.module("predict2.text_encoders.text_encoder")
    official.module("predict2.text_encoders.reason1")
    official.module("reason1.models.vlm_qwen")
    official.module("reason1.models.vlm_base")
    official.module("reason1.tokenizer.processor")
    checkpoint_db = official.module("imaginaire.utils.checkpoint_db")
    lazy = official.module("imaginaire.lazy_config")

    experiment = official_experiment_config(official, SETTINGS["2B"][0], BASE_CONFIG)
    config = copy.deepcopy(experiment.model.config.text_encoder_config)
    with omegaconf.open_dict(config):
        model_config = config.model_config.model_config
        model_config.update(TINY)
        model_config.vision_config.update(TINY_VISION)
        model_config.precision = str(dtype).removeprefix("torch.")
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in lazy.instantiate(_without_tokenizer(config)).state_dict().items()}
    seeded = random_dit_weights({language_model_name(k): shape for k, shape in shapes.items()})
    torch.save({k: seeded[language_model_name(k)] for k in shapes if language_model_name(k) in seeded}, folder / "w.pt")

    tokenizer_uri = (
        f"s3://bucket/cosmos_reasoning1/pretrained/Qwen_tokenizer/{config.model_config.tokenizer.tokenizer_type}/"
    )
    local = {config.ckpt_path: str(folder / "w.pt"), tokenizer_uri: str(folder / "processor")}
    checkpoint_db.get_checkpoint_path = lambda uri: local[uri]  # type: ignore[attr-defined]
    encoder = text_encoder.TextEncoder(text_encoder.TextEncoderConfig(**config), device="cpu")
    loaded = encoder.model.state_dict()
    for key, value in torch.load(folder / "w.pt").items():  # strict=False in the official load: check it took
        assert torch.equal(loaded[key], value.to(loaded[key].dtype)), key
    attention = {type(layer.self_attn).__name__ for layer in encoder.model.model.layers}
    assert attention == {"Qwen2_5_VLFlashAttention2"}, attention  # the official path, with causal_sdpa inside
    return encoder, experiment.model.config.text_encoder_class


def _without_tokenizer(config):
    """The lazy model config, for shapes only (no tokenizer is built on meta)."""
    import omegaconf

    model = copy.deepcopy(config.model_config)
    with omegaconf.open_dict(model):
        model.tokenizer = None
    return model


def text_encoder(official: Official, out: Path) -> None:
    cases = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        tiny_processor(folder)
        for dtype in (torch.bfloat16, torch.float32):
            encoder, encoder_class = official_encoder(official, folder, dtype)
            ran = []  # the token ids the network got (the wrapper's own tokenization, padding, truncation)
            hook = encoder.model.register_forward_pre_hook(lambda module, args: ran.append(args[0].clone()))
            with CudaToCpu():
                embeddings = encoder.compute_text_embeddings_online({"prompt": list(PROMPTS)}, "prompt")
            hook.remove()
            assert len(CALLS) == TINY["num_hidden_layers"], CALLS
            CALLS.clear()
            cases[str(dtype).removeprefix("torch.")] = {
                "dtype": str(embeddings.dtype).removeprefix("torch."),
                "shape": list(embeddings.shape),
                **summarize(embeddings),
            }
    content = {
        "text_encoder_class": encoder_class,
        "embedding_concat_strategy": str(encoder.config.embedding_concat_strategy),
        "widths": TINY,
        "pad_id": encoder.model.tokenizer.pad_id,
        "prompts": PROMPTS,
        "token_ids": pack(ran[0]),
        "positions": list(POSITIONS),
        "weights": "random_dit_weights() in tools/golden/dit.py, by language-model name (official name minus 'model.')",
        "projection": "projection_matrix() in tools/golden/text_encoder.py",
        "stand_ins": {
            "flash_attn / _flash_attention_forward": "causal_sdpa: torch scaled_dot_product_attention, is_causal",
            "Qwen tokenizer folder (S3)": "byte-level tiny tokenizer + Qwen2VLImageProcessor + QWEN_CHAT_TEMPLATE",
            "checkpoint (S3)": "seeded random weights, loaded by the official TextEncoder.__init__",
            "Tensor.to(device='cuda')": "CudaToCpu: the token ids stay on the CPU",
        },
        "cases": cases,
    }
    write(out, "text_encoder", official, content)
