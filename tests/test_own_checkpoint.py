"""Your own DiT checkpoint (`checkpoint_path`): the official consolidated layouts (`net.`, `net_ema.`, LoRA keys
beside the base weights; fp32 and bf16), safetensors and a diffusers folder replace only the DiT of the source;
a remote one is fetched once by concurrent loaders; the records name it; one that does not fit fails in one line."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import torch

from cosmos_ray.core import fetch_cache
from cosmos_ray.core.fetch_cache import FetchCache
from cosmos_ray.core.registry import get_model
from cosmos_ray.core.result import GenerationResult
from cosmos_ray.core.storage import Storage
from cosmos_ray.generator import Generator
from cosmos_ray.loading import load_checkpoint_dit
from cosmos_ray.models.dit import DiTConfig, MiniTrainDiT, official_to_diffusers_key
from cosmos_ray.models.lora import OFFICIAL_ALPHA, AdapterMerger, adapter_from_state
from cosmos_ray.models.weights import CheckpointMismatchError, rename_keys, select_prefix
from tests.dit_helpers import random_dit
from tests.generator_helpers import make_spec
from tests.lora_helpers import official_lora_checkpoint, official_lora_keys, peft_dit, save

TINY_2B = DiTConfig.of_model(get_model("2B/post-trained"), "tiny")
MODEL = get_model("2B/post-trained")
SPEC = make_spec("text2world", cosmos_ray_num_frames=5, num_steps=2)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("COSMOS_RAY_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def tiny_run() -> tuple[dict[str, torch.Tensor], GenerationResult]:
    """The tiny preset's DiT weights and its video of SPEC: a checkpoint of the same weights must give it."""
    generator = Generator.from_pretrained("tiny", device="cpu")
    return {k: v.clone() for k, v in generator.dit.state_dict().items()}, generate(generator)


def generate(generator: Generator) -> GenerationResult:
    result = generator(SPEC)
    assert result is not None
    return result


def load(path, **kwargs) -> Generator:
    return Generator.from_pretrained("tiny", device="cpu", checkpoint_path=str(path), **kwargs)


def load_dit_only(path, cfg: DiTConfig = TINY_2B) -> MiniTrainDiT:
    dit, _ = load_checkpoint_dit(str(path), cfg, MODEL, FetchCache(), device=torch.device("cpu"), dtype=torch.float32)
    return dit


def test_a_training_checkpoint_replaces_only_the_dit_with_its_ema_weights(tmp_path, tiny_run):
    """`model.pt` of scripts/convert_distcp_to_pt.py: regular and EMA nets, counters; the EMA net is loaded."""
    weights, video = tiny_run
    regular = {f"net.{k}": torch.randn_like(v) for k, v in weights.items()}
    state = regular | {f"net_ema.{k}": v for k, v in weights.items()} | {"net.accum_iteration": torch.tensor(7)}
    path = save(state, tmp_path / "model.pt")

    result = generate(load(path))
    assert (result.frames == video.frames).all()  # the same DiT, and the tiny preset's VAE and text encoder
    sha256 = FetchCache().file(path).sha256
    assert result.metadata["checkpoint"] == {"path": path, "sha256": sha256}
    assert result.metadata["weights"] == "model.pt"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_ema_exports_in_fp32_and_bf16(tmp_path, tiny_run, dtype):
    """`model_ema_fp32.pt` / `model_ema_bf16.pt`: the EMA net renamed to `net.`, in that precision."""
    weights, _ = tiny_run
    path = save({f"net.{k}": v.to(dtype) for k, v in weights.items()}, tmp_path / "model_ema.pt")
    dit = load_dit_only(path)
    for key, value in dit.state_dict().items():
        assert torch.equal(value, weights[key].to(dtype).float()), key


def test_a_lora_trained_checkpoint_loads_as_base_plus_its_lora(tmp_path):
    """The official LoRA post-training's checkpoint: base weights beside `lora_A.default` / `lora_B.default`
    (alpha 32 of the official experiment); its model is what peft computes."""
    base = random_dit(TINY_2B)
    oracle = peft_dit(base, [("default", 4, OFFICIAL_ALPHA, 1.0)])
    path = save(official_lora_checkpoint(oracle, "default"), tmp_path / "model_ema_bf16.pt")
    loaded = load_dit_only(path)

    expected = random_dit(TINY_2B)
    adapter = adapter_from_state(select_prefix(official_lora_keys(oracle, "default"), ("net.",)), "lora")
    AdapterMerger(expected).merge([(adapter, 1.0)])
    for key, value in expected.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    key = "blocks.0.mlp.layer1.weight"
    assert not torch.equal(loaded.state_dict()[key], base.state_dict()[key])


def test_peft_wrapped_names_are_accepted(tmp_path):
    """A checkpoint saved with peft's wrapping left in (`.base_layer.`), as LoRA checkpoints were before the
    official checkpointer stripped it."""
    oracle = peft_dit(random_dit(TINY_2B), [("default", 2, OFFICIAL_ALPHA, 1.0)])
    state = {f"net.{k}": v for k, v in oracle.state_dict().items()}
    reference = load_dit_only(save(official_lora_checkpoint(oracle, "default"), tmp_path / "stripped.pt"))
    loaded = load_dit_only(save(state, tmp_path / "wrapped.pt"))
    for key, value in reference.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_safetensors_and_a_diffusers_folder(tmp_path, tiny_run):
    weights, video = tiny_run
    official = save(weights, tmp_path / "model.safetensors")
    folder = tmp_path / "transformer"
    folder.mkdir()
    diffusers = rename_keys(weights, official_to_diffusers_key)
    keys = sorted(diffusers)
    for i, part in enumerate((keys[: len(keys) // 2], keys[len(keys) // 2 :])):
        save({k: diffusers[k] for k in part}, folder / f"diffusion_pytorch_model-0000{i + 1}-of-00002.safetensors")
    for path in (official, folder):
        dit = load_dit_only(path)
        assert all(torch.equal(dit.state_dict()[k], v) for k, v in weights.items())
    result = generate(load(folder))
    assert (result.frames == video.frames).all() and len(result.metadata["checkpoint"]["sha256"]) == 64


def test_a_remote_checkpoint_is_fetched_once_by_concurrent_loaders(s3_bucket, tiny_run, monkeypatch, tmp_path):
    root, options = s3_bucket
    weights, video = tiny_run
    url = f"{root}/run-7/model_ema_bf16.pt"
    local = save({f"net.{k}": v for k, v in weights.items()}, tmp_path / "model_ema_bf16.pt")
    Storage(options=options).write_bytes_atomic(url, open(local, "rb").read())
    downloads = []
    real_download = fetch_cache._download

    def counting(*args):
        downloads.append(args[-1])
        return real_download(*args)

    monkeypatch.setattr(fetch_cache, "_download", counting)
    barrier, generators = threading.Barrier(2), []

    def loader() -> None:
        barrier.wait()
        generators.append(load(url, storage=Storage(options=options)))

    threads = [threading.Thread(target=loader) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert downloads == [url] and len(generators) == 2
    for generator in generators:
        assert all(torch.equal(generator.dit.state_dict()[k], v) for k, v in weights.items())
    assert generate(generators[0]).metadata["checkpoint"]["path"] == url


def mismatch(tmp_path, state: dict[str, torch.Tensor]) -> str:
    path = save(state, tmp_path / "mine.pt")
    with pytest.raises(CheckpointMismatchError) as error:
        load(path)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"DiT checkpoint {path} does not fit model 2B/post-trained (DiT 128 wide, 2 blocks)")
    return message


def test_missing_keys_fail_in_one_line(tmp_path, tiny_run):
    weights, _ = tiny_run
    message = mismatch(tmp_path, {k: v for k, v in weights.items() if not k.startswith("blocks.1.mlp")})
    assert "2 missing key(s): blocks.1.mlp.layer1.weight, blocks.1.mlp.layer2.weight" in message
    assert "pass the whole consolidated checkpoint" in message


def test_unexpected_keys_fail_in_one_line(tmp_path, tiny_run):
    weights, _ = tiny_run
    message = mismatch(tmp_path, weights | {"blocks.0.action_embedder.weight": torch.zeros(2)})
    assert "1 unexpected key(s): blocks.0.action_embedder.weight" in message


def test_a_net_of_another_size_is_named_with_the_models_to_pass(tmp_path):
    """A 64-wide net's checkpoint for the 128-wide tiny net (as a 14B file for a 2B model)."""
    wide = dataclasses.replace(TINY_2B, model_channels=64, num_heads=2)
    message = mismatch(tmp_path, random_dit(wide).state_dict())
    assert (
        "mis-shaped key(s): blocks.0.adaln_modulation_cross_attn.1.weight: file (32, 64) vs model (32, 128)" in message
    )
    assert "--model names the model it was trained from" in message


def test_a_lora_for_layers_the_net_lacks_fails_before_loading(tmp_path, tiny_run):
    weights, _ = tiny_run
    lora = {
        "net.blocks.4.self_attn.q_proj.lora_A.default.weight": torch.zeros(2, 128),
        "net.blocks.4.self_attn.q_proj.lora_B.default.weight": torch.zeros(128, 2),
    }
    path = save({f"net.{k}": v for k, v in weights.items()} | lora, tmp_path / "mine.pt")
    with pytest.raises(CheckpointMismatchError, match=r"LoRA target layer\(s\) do not exist in the net: blocks.4"):
        load(path)


def test_a_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(OSError, match="absent.pt: not found"):
        load(tmp_path / "absent.pt")
