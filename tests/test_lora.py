"""LoRA adapters (`cosmos_ray.models.lora`): peft itself is the oracle of the math (official targets on the tiny
DiT), diffusers' own loader the oracle of its file format; blending, exact switching back, the host cache, and
every way an adapter can fail to fit (one line, before any weight changes)."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch

from cosmos_ray.core.adapters import LoraRef
from cosmos_ray.core.fetch_cache import FetchCache
from cosmos_ray.core.result import GenerationResult
from cosmos_ray.generator import Generator
from cosmos_ray.models.dit import official_to_diffusers_key
from cosmos_ray.models.lora import (
    OFFICIAL_ALPHA,
    Adapter,
    AdapterCache,
    AdapterMerger,
    DiTAdapters,
    LoraLayer,
    read_adapter,
    unmerged,
)
from cosmos_ray.models.weights import CheckpointMismatchError
from tests.dit_helpers import TINY, random_dit, random_inputs, rel_error
from tests.generator_helpers import make_spec
from tests.lora_helpers import official_lora_keys, peft_dit, save

pytest.importorskip("peft")

MODEL = "model 2B/post-trained (DiT 128 wide, 2 blocks)"


def adapters_of(dit, tmp_path, cache=None) -> DiTAdapters:
    return DiTAdapters(dit, MODEL, FetchCache(root=str(tmp_path / "cache")), cache)


def generate(generator: Generator, spec) -> GenerationResult:
    result = generator(spec)
    assert result is not None  # one process: always the output rank
    return result


def outputs(net, inputs):
    with torch.no_grad():
        return net(**inputs)


def test_merged_and_unmerged_match_peft_on_the_official_targets(tmp_path):
    dit = random_dit()
    oracle = peft_dit(dit, [("default", 4, OFFICIAL_ALPHA, 1.0)])
    path = save(official_lora_keys(oracle, "default"), tmp_path / "adapter.pt")
    adapter = read_adapter(path)
    assert len(adapter.layers) == 2 * 10  # q, k, v, output of both attentions and the two MLP layers, per block
    inputs = random_inputs(TINY, 2, 3, 8, 12)
    expected = outputs(oracle, inputs)
    assert rel_error(outputs(dit, inputs), expected) > 0.1  # the adapter changes the output

    with unmerged(dit, [(adapter, 1.0)]):
        assert rel_error(outputs(dit, inputs), expected) < 1e-6
    adapters_of(dit, tmp_path).set([LoraRef(path)])
    assert rel_error(outputs(dit, inputs), expected) < 1e-5


def test_several_adapters_blend_with_their_scales_as_peft_does(tmp_path):
    dit = random_dit()
    oracle = peft_dit(dit, [("a", 4, OFFICIAL_ALPHA, 0.7), ("b", 8, OFFICIAL_ALPHA, -0.4)])
    refs = [
        LoraRef(save(official_lora_keys(oracle, "a"), tmp_path / "a.pt"), 0.7),
        LoraRef(save(official_lora_keys(oracle, "b", prefix="net_ema."), tmp_path / "b.safetensors"), -0.4),
    ]
    inputs = random_inputs(TINY, 1, 3, 8, 12)
    adapters = adapters_of(dit, tmp_path)
    adapters.set(refs)
    assert rel_error(outputs(dit, inputs), outputs(oracle, inputs)) < 1e-5
    assert [record["scale"] for record in adapters.records] == [0.7, -0.4]


def test_the_diffusers_format_loads_as_diffusers_loads_it(tmp_path):
    """A `pytorch_lora_weights.safetensors` saved by diffusers' CosmosLoraLoaderMixin, with its LoraConfig
    (alpha 16, rank 4: scale 4) in the metadata; diffusers' twin of the net loads it with its own loader."""
    pytest.importorskip("diffusers")
    from diffusers.loaders.lora_pipeline import CosmosLoraLoaderMixin
    from peft import LoraConfig

    from tests.oracles import diffusers_dit

    dit = random_dit()
    oracle = peft_dit(dit, [("default", 4, 16.0, 1.0)])
    layers = {
        official_to_diffusers_key(key.replace(".default.", ".")): value
        for key, value in oracle.state_dict().items()
        if ".lora_" in key
    }
    config = LoraConfig(
        r=4, lora_alpha=16, target_modules=["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"]
    )
    CosmosLoraLoaderMixin.save_lora_weights(
        tmp_path, transformer_lora_layers=layers, transformer_lora_adapter_metadata=config.to_dict()
    )
    path = tmp_path / "pytorch_lora_weights.safetensors"
    twin = diffusers_dit(dit)  # loaded as Cosmos2_5_PredictBasePipeline.load_lora_weights does
    state, metadata = CosmosLoraLoaderMixin.lora_state_dict(str(path), return_lora_metadata=True)
    CosmosLoraLoaderMixin.load_lora_into_transformer(state, transformer=twin, adapter_name="x", metadata=metadata)
    inputs = random_inputs(TINY, 1, 3, 8, 12)
    with torch.no_grad():
        h, w = inputs["x"].shape[-2:]
        expected = twin(
            inputs["x"],
            inputs["timesteps"] * TINY.timestep_scale,
            inputs["crossattn_emb"],
            condition_mask=torch.zeros_like(inputs["x"][:, :1]),
            padding_mask=inputs["x"].new_zeros(1, 1, h, w),
            return_dict=False,
        )[0]

    assert {layer.alpha for layer in read_adapter(path).layers.values()} == {16.0}
    adapters_of(dit, tmp_path).set([LoraRef(str(path))])
    assert rel_error(outputs(dit, inputs), expected) < 1e-4
    assert rel_error(outputs(dit, inputs), outputs(oracle, inputs)) < 1e-5


def test_a_diffusers_file_without_metadata_has_alpha_equal_to_rank(tmp_path):
    layers = {"transformer.transformer_blocks.0.attn1.to_q.lora_A.weight": torch.zeros(4, 128)}
    layers["transformer.transformer_blocks.0.attn1.to_q.lora_B.weight"] = torch.zeros(128, 4)
    adapter = read_adapter(save(layers, tmp_path / "pytorch_lora_weights.safetensors"))
    assert list(adapter.layers) == ["blocks.0.self_attn.q_proj"]
    assert adapter.layers["blocks.0.self_attn.q_proj"].alpha == 4.0


def test_switching_back_restores_the_base_bit_for_bit(tmp_path):
    dit = random_dit()
    base = {key: value.clone() for key, value in dit.state_dict().items()}
    oracle = peft_dit(dit, [("a", 4, OFFICIAL_ALPHA, 1.0), ("b", 2, OFFICIAL_ALPHA, 1.0)])
    a = LoraRef(save(official_lora_keys(oracle, "a"), tmp_path / "a.pt"))
    b = LoraRef(save(official_lora_keys(oracle, "b"), tmp_path / "b.pt"), 0.5)
    adapters = adapters_of(dit, tmp_path)

    adapters.set([b])
    only_b = {key: value.clone() for key, value in dit.state_dict().items()}
    adapters.set([a, b])
    assert not torch.equal(dit.state_dict()["blocks.0.mlp.layer1.weight"], only_b["blocks.0.mlp.layer1.weight"])
    adapters.set([b])
    assert all(torch.equal(dit.state_dict()[key], value) for key, value in only_b.items())
    adapters.set(())
    assert all(torch.equal(dit.state_dict()[key], value) for key, value in base.items())
    assert adapters.current == () and adapters.records == []


def test_the_generator_switches_adapters_and_records_them(tmp_path, monkeypatch):
    monkeypatch.setenv("COSMOS_RAY_CACHE_DIR", str(tmp_path / "cache"))
    spec = make_spec("text2world", cosmos_ray_num_frames=5, num_steps=2)
    plain = Generator.from_pretrained("tiny", device="cpu")
    base_frames = generate(plain, spec).frames
    oracle = peft_dit(plain.dit, [("a", 4, OFFICIAL_ALPHA, 1.0)])
    path = save(official_lora_keys(oracle, "a"), tmp_path / "a.pt")

    generator = Generator.from_pretrained("tiny", device="cpu", loras=[LoraRef.parse(f"{path}:0.5")])
    assert generator.adapters == (LoraRef(path, 0.5),)
    result = generate(generator, spec)
    assert not (result.frames == base_frames).all()
    sha256 = FetchCache(root=str(tmp_path / "cache")).file(path).sha256
    assert result.metadata["loras"] == [{"path": path, "scale": 0.5, "sha256": sha256}]
    assert "checkpoint" not in result.metadata

    generator.set_adapters(())
    assert not generator.adapters
    for name, weight in plain.dit.state_dict().items():  # the loaded weights again, bit for bit
        assert torch.equal(generator.dit.state_dict()[name], weight), name
    # a spec that leaves its adapters unset runs with the generator's own; `[]` runs with none
    assert generate(generator, spec).metadata["loras"] == result.metadata["loras"]
    assert generator.adapters == (LoraRef(path, 0.5),)
    result = generate(generator, spec.model_copy(update={"cosmos_ray_loras": ()}))
    assert (result.frames == base_frames).all() and "loras" not in result.metadata


def test_the_same_set_again_is_a_no_op(tmp_path, monkeypatch):
    dit = random_dit()
    path = save(official_lora_keys(peft_dit(dit, [("a", 2, OFFICIAL_ALPHA, 1.0)]), "a"), tmp_path / "a.pt")
    adapters = adapters_of(dit, tmp_path)
    merges = []
    monkeypatch.setattr(AdapterMerger, "merge", lambda self, blend: merges.append(blend))
    adapters.set([LoraRef(path)])
    adapters.set((LoraRef(path, 1.0),))
    assert len(merges) == 1


def test_a_bad_adapter_changes_no_weight(tmp_path):
    dit = random_dit()
    good = save(official_lora_keys(peft_dit(dit, [("a", 2, OFFICIAL_ALPHA, 1.0)]), "a"), tmp_path / "good.pt")
    adapters = adapters_of(dit, tmp_path)
    adapters.set([LoraRef(good)])
    merged = {key: value.clone() for key, value in dit.state_dict().items()}
    bad = save({"net.blocks.5.self_attn.q_proj.lora_A.default.weight": torch.zeros(2, 128)}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointMismatchError):
        adapters.set([LoraRef(good), LoraRef(bad)])
    assert all(torch.equal(dit.state_dict()[key], value) for key, value in merged.items())
    assert adapters.current == (LoraRef(good),)


def lora_keys(layer: str, rank_a: int = 2, rank_b: int = 2, width: int = 128) -> dict[str, torch.Tensor]:
    return {
        f"net.{layer}.lora_A.default.weight": torch.zeros(rank_a, width),
        f"net.{layer}.lora_B.default.weight": torch.zeros(width, rank_b),
    }


MISMATCHES = {
    # case: (file content, what the one-line message must say)
    "target-does-not-exist": (
        lora_keys("blocks.7.self_attn.q_proj"),
        ["1 LoRA target layer(s) do not exist", "blocks.7.self_attn.q_proj", "official targets are"],
    ),
    "target-is-not-linear": (
        lora_keys("blocks.0.self_attn.q_norm"),
        ["do not exist", "blocks.0.self_attn.q_norm"],
    ),
    "rank-mismatch": (
        lora_keys("blocks.0.mlp.layer1", rank_a=4, rank_b=8, width=128),
        ["rank of lora_A (rows) differs from lora_B's", "blocks.0.mlp.layer1: lora_A (4, 128), lora_B (128, 8)"],
    ),
    "other-width": (
        lora_keys("blocks.1.self_attn.v_proj", width=64),
        ["1 layer(s) have factors of another width", "blocks.1.self_attn.v_proj", "this model size"],
    ),
    "lone-factor": (
        {"net.blocks.0.self_attn.k_proj.lora_A.default.weight": torch.zeros(2, 128)},
        ["lack one of their two factors", "blocks.0.self_attn.k_proj.lora_B"],
    ),
    "base-weights-in-an-adapter": (
        lora_keys("blocks.0.self_attn.q_proj") | {"net.blocks.0.self_attn.q_proj.weight": torch.zeros(128, 128)},
        ["1 key(s) are not LoRA factors", "blocks.0.self_attn.q_proj.weight", "--checkpoint-path"],
    ),
    "several-adapters": (
        lora_keys("blocks.0.self_attn.q_proj")
        | {"net.blocks.0.self_attn.k_proj.lora_A.other.weight": torch.zeros(2, 128)},
        ["holds several adapters (default, other)"],
    ),
    "no-factors": ({}, ["holds no LoRA factors"]),
}


@pytest.mark.parametrize("case", MISMATCHES)
def test_an_adapter_that_does_not_fit_fails_in_one_line(tmp_path, case):
    state, phrases = MISMATCHES[case]
    path = save(state, tmp_path / "adapter.pt")
    with pytest.raises(CheckpointMismatchError) as error:
        adapters_of(random_dit(), tmp_path).set([LoraRef(path)])
    message = str(error.value)
    assert "\n" not in message and f"LoRA adapter {path}" in message
    for phrase in phrases:
        assert phrase in message
    if case in ("target-does-not-exist", "other-width"):  # checked against the net: the model is named
        assert MODEL in message


def test_rslora_and_dora_scalings_are_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "pytorch_lora_weights.safetensors"
    layers = {"transformer.transformer_blocks.0.attn1.to_q.lora_A.weight": torch.zeros(2, 128)}
    layers["transformer.transformer_blocks.0.attn1.to_q.lora_B.weight"] = torch.zeros(128, 2)
    save_file(layers, str(path), metadata={"lora_adapter_metadata": json.dumps({"transformer.use_rslora": True})})
    with pytest.raises(CheckpointMismatchError, match="rsLoRA or DoRA scaling are not supported"):
        read_adapter(path)


def test_the_host_cache_keeps_recent_adapters_within_its_budget():
    def adapter(name: str, numel: int) -> Adapter:
        return Adapter(name, {"x": LoraLayer(torch.zeros(1, numel // 2), torch.zeros(numel // 2, 1), 1.0)})

    cache = AdapterCache(max_bytes=3 * 400)  # three adapters of 100 floats
    loads = []

    def load(name: str) -> Adapter:
        loads.append(name)
        return adapter(name, 100)

    for name in ("a", "b", "c", "a", "d", "a", "b"):
        cache.get(name, partial(load, name))
    # "a" was used again before "d" came, so "b" was the least recently used one to go
    assert loads == ["a", "b", "c", "d", "b"]
    assert list(cache.entries) == ["d", "a", "b"]


def test_merging_in_bfloat16_stays_within_bfloat16_rounding_of_the_unmerged_output(tmp_path):
    """The official applies the adapter unmerged; merged, each weight is rounded to bfloat16 once after the sum
    (docs/reference-notes.md states the effect measured here)."""
    dit = random_dit()
    oracle = peft_dit(dit, [("a", 4, OFFICIAL_ALPHA, 1.0)])
    adapter = read_adapter(save(official_lora_keys(oracle, "a"), tmp_path / "a.pt"))
    dit = dit.to(torch.bfloat16)
    inputs = {
        k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in random_inputs(TINY, 1, 3, 8, 12).items()
    }
    exact = outputs(oracle, random_inputs(TINY, 1, 3, 8, 12))
    with unmerged(dit, [(adapter, 1.0)]):
        official_way = outputs(dit, inputs)
    AdapterMerger(dit).merge([(adapter, 1.0)])
    merged = outputs(dit, inputs)
    assert rel_error(merged, official_way) < 0.03
    assert abs(rel_error(merged, exact) - rel_error(official_way, exact)) < 0.02  # neither is systematically off
