"""Reason1 text encoder and its embedding cache, on the tiny random model (CPU, offline).

Parity oracle: diffusers 0.42.1 `Cosmos2_5_PredictBasePipeline._get_prompt_embeds` run on the same random
Qwen2.5-VL model and tokenizer.
"""

import json
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from cosmos_ray.models.text import (
    SYSTEM_PROMPT,
    TextEncoder,
    TextEncoderConfig,
    build_tiny_tokenizer,
    language_model_key,
    normalize_per_token,
)
from cosmos_ray.models.text_cache import EmbeddingCache, cache_key

PROMPTS = ["A robot arm picks up a red cube.", "Rain on a quiet street at night, neon signs reflecting."]
PARITY_PROMPTS = PROMPTS + ["word " * 300]  # the last one is truncated to 512 tokens


@pytest.fixture(scope="module")
def tiny():
    return TextEncoder.from_pretrained("tiny", device="cpu")


def fresh(encoder, **cache_kwargs):
    """The same model and tokenizer with an empty cache."""
    return TextEncoder(
        encoder.config,
        encoder.model,
        encoder.tokenizer,
        model_id=encoder.model_id,
        cache=EmbeddingCache(**cache_kwargs),
    )


def rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


# --- config and tokenization ---


def test_presets_output_widths():
    assert TextEncoderConfig.preset("reason1").embed_dim == 28 * 3584 == 100352
    assert TextEncoderConfig.preset("tiny").embed_dim == 96
    with pytest.raises(ValueError, match="unknown text encoder preset 'qwen'"):
        TextEncoderConfig.preset("qwen")


def test_chat_template_is_qwen_system_then_user_turn(tiny):
    conversation = [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": [{"type": "text", "text": "a cat"}]},
    ]
    text = tiny.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=False)
    assert text == f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\na cat<|im_end|>\n"


def test_tokenize_right_pads_to_512_with_pad_token(tiny):
    ids = tiny.tokenize(["a cat", "a much longer prompt about a cat"])
    assert ids.shape == (2, 512) and ids.dtype == torch.long
    pad = tiny.tokenizer.pad_token_id
    text = tiny.tokenizer.decode([t for t in ids[0].tolist() if t != pad])
    assert text == f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\na cat<|im_end|>\n"
    content = len(tiny.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert (ids[0, :content] != pad).all() and (ids[0, content:] == pad).all()


def test_tokenize_truncates_long_prompts_to_512(tiny):
    ids = tiny.tokenize(["word " * 400])  # byte-level tiny vocabulary: ~2000 tokens
    assert ids.shape == (1, 512) and (ids != tiny.tokenizer.pad_token_id).all()


# --- encoding ---


def test_encode_shape_dtype_device(tiny):
    embeds = tiny.encode(PROMPTS)
    assert embeds.shape == (2, 512, 96) and embeds.dtype == torch.float32 and embeds.device.type == "cpu"
    assert torch.isfinite(embeds).all()
    bf16 = TextEncoder.from_pretrained("tiny", device="cpu", dtype=torch.bfloat16).encode(PROMPTS)
    assert bf16.shape == (2, 512, 96) and bf16.dtype == torch.bfloat16


def test_each_layer_block_is_normalized_per_token(tiny):
    embeds = tiny.encode(PROMPTS[:1]).view(1, 512, 3, 32)  # (B, L, layers, hidden)
    torch.testing.assert_close(embeds.mean(-1), torch.zeros(1, 512, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(embeds.std(-1), torch.ones(1, 512, 3), atol=1e-5, rtol=0)


def test_layers_are_block_outputs_and_the_last_is_after_the_final_norm(tiny):
    encoder = TextEncoder.from_random(tiny.config, tiny.tokenizer, seed=1)
    model = encoder.model
    with torch.no_grad():  # a non-uniform final norm, so that applying it or not changes the embedding
        model.norm.weight.uniform_(0.5, 1.5)
    ids = encoder.tokenize(PROMPTS[:1])
    embeds = encoder(ids).view(1, 512, 3, 32)
    with torch.no_grad():
        hidden = model.embed_tokens(ids)
        position = model.rotary_emb(hidden, torch.arange(512).view(1, 1, -1).expand(3, 1, -1))
        causal = torch.full((512, 512), float("-inf")).triu(1)
        for i, layer in enumerate(model.layers):
            hidden = layer(hidden, attention_mask=causal, position_embeddings=position)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
            expected = model.norm(hidden) if i == len(model.layers) - 1 else hidden
            torch.testing.assert_close(embeds[:, :, i], normalize_per_token(expected), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(embeds[:, :, -1], normalize_per_token(hidden), atol=1e-3)


def test_padding_invariance_alone_or_with_longer_prompts(tiny):
    short = "a cat"
    alone = tiny(tiny.tokenize([short]))
    batched = tiny(tiny.tokenize(["a long prompt " * 20, short, "another, longer, prompt " * 5]))
    torch.testing.assert_close(batched[1:2], alone, atol=1e-6, rtol=1e-6)


def test_padding_positions_are_not_masked(tiny):
    # Official behaviour: pad tokens attend causally to the prompt, so their embeddings depend on it.
    a, b = tiny(tiny.tokenize(PROMPTS))
    assert not torch.allclose(a[-1], b[-1])


def test_prompts_equal_in_first_512_tokens_encode_identically(tiny):
    long = "x" * 600
    embeds = tiny(tiny.tokenize([long, long + " and then something else"]))
    assert torch.equal(embeds[0], embeds[1])


def test_encode_rejects_bad_input(tiny):
    with pytest.raises(TypeError, match="list of prompt strings"):
        tiny.encode("a single string")
    with pytest.raises(ValueError, match="empty"):
        tiny.encode([])


# --- parity with diffusers, through the checkpoint-folder loader ---


def tiny_qwen_vl(seed=0):
    """A random Qwen2.5-VL (vision tower included) shaped like the tiny preset."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    text = TextEncoderConfig.preset("tiny").to_transformers().to_dict()
    text["initializer_range"] = 0.2  # large weights, so every layer changes the hidden states
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=dict(
            depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=32, fullatt_block_indexes=[0]
        ),
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    with torch.no_grad():  # non-trivial norm weights and biases, so that loading them is checked too
        for param in model.parameters():
            if param.dim() == 1:
                param.uniform_(0.5, 1.5)
    return model


def save_legacy_sharded(model, folder):
    """Old checkpoint layout (model.layers.*, visual.*) in two shards with an index."""
    state = {}
    for key, value in model.state_dict().items():
        key = key.replace("model.language_model.", "model.").replace("model.visual.", "visual.")
        state[key] = value.contiguous()
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, names in shards.items():
        save_file({k: state[k] for k in names}, str(folder / name))
    weight_map = {k: name for name, names in shards.items() for k in names}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    model.config.save_pretrained(folder)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The same tiny Qwen2.5-VL saved in three layouts: Hugging Face, diffusers pipeline, legacy sharded."""
    model, tokenizer = tiny_qwen_vl(), build_tiny_tokenizer()
    root = tmp_path_factory.mktemp("qwen")
    folders = {"hf": root / "hf", "diffusers": root / "pipe", "legacy": root / "legacy"}
    model.save_pretrained(folders["hf"])
    tokenizer.save_pretrained(folders["hf"])
    model.save_pretrained(folders["diffusers"] / "text_encoder")
    tokenizer.save_pretrained(folders["diffusers"] / "tokenizer")
    folders["legacy"].mkdir()
    save_legacy_sharded(model, folders["legacy"])
    tokenizer.save_pretrained(folders["legacy"])
    expected = diffusers_embeds(model, tokenizer, PARITY_PROMPTS)
    return SimpleNamespace(model=model, tokenizer=tokenizer, folders=folders, expected=expected)


def diffusers_embeds(model, tokenizer, prompts):
    from diffusers import Cosmos2_5_PredictBasePipeline

    pipe = SimpleNamespace(tokenizer=tokenizer, text_encoder=model)
    with torch.no_grad():
        return Cosmos2_5_PredictBasePipeline._get_prompt_embeds(
            pipe, prompt=prompts, max_sequence_length=512, device=torch.device("cpu"), dtype=torch.float32
        )


@pytest.mark.parametrize("layout", ["hf", "diffusers", "legacy"])
def test_matches_diffusers_pipeline(checkpoint, layout):
    encoder = TextEncoder.from_pretrained(str(checkpoint.folders[layout]), device="cpu", dtype=torch.float32)
    ours = encoder.encode(PARITY_PROMPTS)
    assert ours.shape == checkpoint.expected.shape == (3, 512, 96)
    assert rel_err(ours, checkpoint.expected) < 1e-5


def test_folder_loads_only_the_language_model(checkpoint):
    encoder = TextEncoder.from_pretrained(str(checkpoint.folders["hf"]), device="cpu")
    assert not any("visual" in name for name in encoder.state_dict())
    assert language_model_key("model.visual.blocks.0.attn.qkv.weight") is None
    assert language_model_key("visual.blocks.0.attn.qkv.weight") is None
    assert language_model_key("lm_head.weight") is None
    assert language_model_key("model.layers.3.mlp.up_proj.weight") == "layers.3.mlp.up_proj.weight"
    assert language_model_key("model.language_model.norm.weight") == "norm.weight"


def test_incomplete_folders_raise_clear_errors(checkpoint, tmp_path):
    with pytest.raises(FileNotFoundError, match="neither 'tiny' nor an existing checkpoint folder"):
        TextEncoder.from_pretrained(str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        TextEncoder.from_pretrained(str(tmp_path))

    legacy = checkpoint.folders["legacy"]
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors"):
        (broken / name).write_bytes((legacy / name).read_bytes())
    with pytest.raises(FileNotFoundError, match="no tokenizer in"):
        TextEncoder.from_pretrained(str(broken))
    checkpoint.tokenizer.save_pretrained(broken)
    with pytest.raises(FileNotFoundError, match="lacks shards .*model-00002-of-00002.safetensors"):
        TextEncoder.from_pretrained(str(broken))
    (broken / "model.safetensors.index.json").unlink()
    with pytest.raises(FileNotFoundError, match="expected model.safetensors"):
        TextEncoder.from_pretrained(str(broken))


# --- cache ---


def count_forwards(encoder):
    calls = []
    encoder.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    return calls


def test_repeated_prompts_are_encoded_once(tiny):
    encoder = fresh(tiny)
    calls = count_forwards(encoder)
    first = encoder.encode([PROMPTS[0], PROMPTS[1], PROMPTS[0]])
    again = encoder.encode([PROMPTS[1]])
    assert calls == [2]  # one batch of the two distinct prompts; the second call is a hit
    assert torch.equal(first[0], first[2]) and torch.equal(again[0], first[1])
    torch.testing.assert_close(first, tiny(tiny.tokenize([PROMPTS[0], PROMPTS[1], PROMPTS[0]])), atol=1e-6, rtol=1e-6)


def test_cache_is_keyed_by_model_and_dtype(tiny):
    cache = EmbeddingCache()
    TextEncoder(tiny.config, tiny.model, tiny.tokenizer, model_id="tiny", cache=cache).encode(PROMPTS[:1])
    other = TextEncoder(tiny.config, tiny.model, tiny.tokenizer, model_id="other", cache=cache)
    calls = count_forwards(other)
    other.encode(PROMPTS[:1])
    assert calls == [1] and len(cache) == 2
    assert cache_key("tiny", "a") != cache_key("other", "a") != cache_key("tiny", "b")


@pytest.mark.parametrize("scheme", ["file", "memory"])
def test_fsspec_cache_is_shared_between_workers(tiny, tmp_path, scheme):
    import fsspec

    url = f"{scheme}://{tmp_path}/cache"
    first = fresh(tiny, url=url).encode(PROMPTS)
    worker = fresh(tiny, url=url)
    calls = count_forwards(worker)
    second = worker.encode(PROMPTS)
    assert calls == [] and torch.equal(first, second)
    assert len(fsspec.filesystem(scheme).glob(f"{tmp_path}/cache/*/*.safetensors")) == 2


def test_fsspec_cache_ignores_unreadable_or_foreign_files(tmp_path):
    cache = EmbeddingCache(url=str(tmp_path))
    embedding = torch.randn(4, 3)
    cache.put("m", "p", embedding)
    path = next(tmp_path.rglob("*.safetensors"))

    path.write_bytes(b"partial")
    assert EmbeddingCache(url=str(tmp_path)).get("m", "p") is None

    cache.put("m", "q", embedding)  # a valid file for (m, q), placed where (m, p) is looked up
    next(p for p in tmp_path.rglob("*.safetensors") if p != path).rename(path)
    assert EmbeddingCache(url=str(tmp_path)).get("m", "p") is None

    cache.put("m", "p", embedding)  # a put replaces the bad file
    stored = EmbeddingCache(url=str(tmp_path)).get("m", "p")
    assert stored is not None and torch.equal(stored, embedding)


def test_memory_cache_evicts_least_recently_used_by_bytes():
    entry = torch.zeros(256)  # 1 KiB in float32
    cache = EmbeddingCache(max_bytes=2 * 1024)
    cache.put("m", "a", entry)
    cache.put("m", "b", entry)
    assert cache.get("m", "a") is entry  # "a" is now the most recent
    cache.put("m", "c", entry)
    assert cache.get("m", "b") is None and cache.get("m", "a") is entry and cache.get("m", "c") is entry
    cache.put("m", "huge", torch.zeros(1024))  # larger than the whole cache: not kept
    assert cache.get("m", "huge") is None and len(cache) == 2
    assert (cache.hits, cache.misses) == (3, 2)
