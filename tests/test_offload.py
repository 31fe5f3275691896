"""Offloading: which models move where between the stages of a generation, and that nothing else changes.

On a CPU-only machine the GPU and the CPU are the same memory, so the generator here runs on the device
"cpu:0" (tensors land on the CPU): the offloader's moves to the compute device ("cpu:0") and back home
("cpu") are then told apart in the calls it makes. The CUDA test checks real placements where a GPU exists.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cosmos_ray.core.offload_config import NO_OFFLOAD, OffloadConfig
from cosmos_ray.generator import Generator
from cosmos_ray.offload import Offloader
from tests.generator_helpers import make_spec

DEVICE = torch.device("cpu", 0)


class FakeModule(nn.Module):
    """Records where it is asked to go."""

    def __init__(self, name: str, log: list):
        super().__init__()
        self.name, self.log = name, log

    def to(self, *args, **kwargs):  # records only: the device is the one argument the offloader passes
        self.log.append((self.name, str(args[0])))
        return self


def test_offloader_places_and_moves_only_offloaded_modules():
    log: list[tuple[str, str]] = []
    a, b = FakeModule("a", log), FakeModule("b", log)
    offloader = Offloader("cuda:0", home="cpu", keep_host_copies=False)
    offloader.place([a], offloaded=False)
    offloader.place([b], offloaded=True)
    assert log == [("b", "cpu")]  # a stays where it is: on the device
    log.clear()
    with offloader.running([a], offloaded=False):
        assert log == []
    with offloader.running([b], offloaded=True):
        assert log == [("b", "cuda:0")]
    assert log == [("b", "cuda:0"), ("b", "cpu")]


def test_on_demand_moves_once_when_needed_and_not_at_all_otherwise():
    log: list[tuple[str, str]] = []
    module = FakeModule("m", log)
    offloader = Offloader("cuda:0", keep_host_copies=False)
    with offloader.on_demand([module], offloaded=True) as bring:
        with bring():
            pass
        with bring():
            pass
    assert log == [("m", "cuda:0"), ("m", "cpu")]
    log.clear()
    with offloader.on_demand([module], offloaded=True):
        pass  # never needed (e.g. every prompt was cached)
    assert log == []
    with pytest.raises(RuntimeError), offloader.running([module], offloaded=True):
        raise RuntimeError("a stage failed")
    assert log == [("m", "cuda:0"), ("m", "cpu")]  # back home after a failure too


def _tensors(module: nn.Module) -> list[torch.Tensor]:
    return [*module.parameters(), *module.buffers()]


def test_kept_host_copies_come_back_without_a_copy(monkeypatch):
    """On a GPU the offloader brings modules over, then points them at their host tensors again (the weights
    never change) instead of copying back. Here the "device" copy is a clone on the CPU: the module's own `to`
    is replaced by one that records its target and clones every tensor, as a move to another device would."""
    module = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))  # parameters and buffers
    moves: list[str] = []

    def to(device):
        moves.append(str(device))
        return module._apply(lambda tensor: tensor.clone())

    offloader = Offloader("cpu", keep_host_copies=True)
    offloader.place([module], offloaded=True)
    monkeypatch.setattr(module, "to", to)
    host = [(tensor.data_ptr(), tensor.clone()) for tensor in _tensors(module)]
    with offloader.running([module], offloaded=True):
        assert all(tensor.data_ptr() != p for tensor, (p, _) in zip(_tensors(module), host))  # the copies run
    assert moves == ["cpu"]  # brought over once, never sent back
    assert [tensor.data_ptr() for tensor in _tensors(module)] == [p for p, _ in host]  # the host tensors again
    assert all(torch.equal(tensor, value) for tensor, (_, value) in zip(_tensors(module), host))
    with pytest.raises(RuntimeError), offloader.running([module], offloaded=True):
        raise RuntimeError("a stage failed")
    assert [tensor.data_ptr() for tensor in _tensors(module)] == [p for p, _ in host]  # after a failure too


def test_offload_config_names():
    assert str(NO_OFFLOAD) == "none"
    assert str(OffloadConfig.all()) == "diffusion_model+tokenizer+text_encoder"
    assert str(OffloadConfig(tokenizer=True)) == "tokenizer"


@pytest.fixture(scope="module")
def resident() -> Generator:
    return Generator.from_pretrained("tiny", device=DEVICE)


def offloading_generator(resident: Generator, offload: OffloadConfig) -> Generator:
    return Generator(
        resident.dit,
        resident.vae,
        resident.text_encoder,
        resident.info,
        resident.sampler,
        device=DEVICE,
        dtype=resident.dtype,
        offload=offload,
    )


@pytest.fixture
def record_stages(monkeypatch):
    """`record_stages(generator)` -> a log of its models' ("to", module, device) moves and ("run", module)
    calls; the hooks are removed after the test."""
    handles: list = []
    yield lambda generator: _record_stages(generator, monkeypatch, handles)
    for handle in handles:
        handle.remove()


def _record_stages(generator: Generator, monkeypatch, handles: list) -> list[tuple[str, ...]]:
    log: list[tuple[str, ...]] = []
    modules = {
        "text_encoder": generator.text_encoder,
        "vae.encoder": generator.vae.encoder,
        "vae.conv1": generator.vae.conv1,
        "dit": generator.dit,
        "vae.conv2": generator.vae.conv2,
        "vae.decoder": generator.vae.decoder,
    }
    for name, module in modules.items():
        original = module.to

        def to(device, _name=name, _original=original):
            log.append(("to", _name, str(device)))
            return _original(device)

        monkeypatch.setattr(module, "to", to)
    for name in ("text_encoder", "vae.encoder", "dit", "vae.conv2"):  # what each stage calls
        hook = modules[name].register_forward_pre_hook(lambda module, args, _name=name: log.append(("run", _name)))
        handles.append(hook)
    return log


def runs_collapsed(log: list[tuple]) -> list[tuple]:
    """Consecutive identical entries once (the DiT runs once per step)."""
    return [entry for i, entry in enumerate(log) if i == 0 or entry != log[i - 1]]


def test_every_flag_keeps_its_model_home_except_during_its_stage(resident, record_stages):
    generator = offloading_generator(resident, NO_OFFLOAD)
    log = record_stages(generator)
    offloading = offloading_generator(generator, OffloadConfig.all())
    assert log == [
        ("to", "dit", "cpu"),
        ("to", "vae.encoder", "cpu"),
        ("to", "vae.conv1", "cpu"),
        ("to", "vae.conv2", "cpu"),
        ("to", "vae.decoder", "cpu"),
        ("to", "text_encoder", "cpu"),
    ]
    log.clear()
    spec = make_spec("video2world", prompt="an offloaded prompt", cosmos_ray_num_frames=5, num_steps=1)
    offloading(spec)
    assert runs_collapsed(log) == [
        ("to", "text_encoder", "cpu:0"),
        ("run", "text_encoder"),  # prompt and negative prompt, one move for both
        ("to", "text_encoder", "cpu"),
        ("to", "vae.encoder", "cpu:0"),
        ("to", "vae.conv1", "cpu:0"),
        ("run", "vae.encoder"),
        ("to", "vae.encoder", "cpu"),
        ("to", "vae.conv1", "cpu"),
        ("to", "dit", "cpu:0"),
        ("run", "dit"),
        ("to", "dit", "cpu"),
        ("to", "vae.conv2", "cpu:0"),
        ("to", "vae.decoder", "cpu:0"),
        ("run", "vae.conv2"),
        ("to", "vae.conv2", "cpu"),
        ("to", "vae.decoder", "cpu"),
    ]
    log.clear()
    offloading(spec)  # both prompts are cached now: the text encoder stays on the CPU
    assert [entry for entry in log if "text_encoder" in entry] == []


@pytest.mark.parametrize(
    "offload, moved",
    [
        (NO_OFFLOAD, set()),
        (OffloadConfig(diffusion_model=True), {"dit"}),
        (OffloadConfig(tokenizer=True), {"vae.encoder", "vae.conv1", "vae.conv2", "vae.decoder"}),
        (OffloadConfig(text_encoder=True), {"text_encoder"}),
    ],
)
def test_each_flag_moves_only_its_model(resident, record_stages, offload, moved):
    generator = offloading_generator(resident, NO_OFFLOAD)
    log = record_stages(generator)
    offloading = offloading_generator(generator, offload)
    log.clear()
    offloading(make_spec("image2world", prompt=f"a prompt for {offload}", cosmos_ray_num_frames=5, num_steps=1))
    assert {name for kind, name, *_ in log if kind == "to"} == moved


def test_offloading_changes_no_result(resident):
    spec = make_spec("video2world", seed=4, cosmos_ray_num_frames=5, num_steps=2)
    expected = offloading_generator(resident, NO_OFFLOAD)(spec)
    offloaded = offloading_generator(resident, OffloadConfig.all())(spec)
    assert expected is not None and offloaded is not None  # one process is its own rank 0
    assert (offloaded.frames == expected.frames).all()
    assert offloaded.metadata["offload"] == "diffusion_model+tokenizer+text_encoder"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_on_a_gpu_offloaded_models_are_on_it_only_while_they_run():
    generator = Generator.from_pretrained("tiny", device="cuda", offload=OffloadConfig.all())
    where: dict[str, set[str]] = {}
    modules = {"text_encoder": generator.text_encoder, "dit": generator.dit, "vae.conv2": generator.vae.conv2}
    for name, module in modules.items():
        module.register_forward_pre_hook(
            lambda module, args, _name=name: where.setdefault(_name, set()).add(next(module.parameters()).device.type)
        )
    generator(make_spec("text2world"))
    assert where == {"text_encoder": {"cuda"}, "dit": {"cuda"}, "vae.conv2": {"cuda"}}
    for module in modules.values():
        assert next(module.parameters()).device.type == "cpu"


def test_clip_benchmark_smoke_runs(tmp_path):
    from bench.clip import main

    out = tmp_path / "clip.jsonl"
    main(["--device", "cpu", "--smoke", "--model", "2B/distilled", "--offload", "none,all", "--out", str(out)])
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["offload"] for r in records] == ["none", "all"]
    for record in records:
        assert (record["model"], record["evaluations"], record["guidance"]) == ("2B/distilled", 2, 0)
        assert record["total_s"] > 0 and record["decode_s"] > 0 and record["clips_per_gpu_hour"] > 0
        # the distilled sampler runs at most 4 steps: 35 projected steps are 4 evaluations
        assert record["projected_total_s"] > record["total_s"]
