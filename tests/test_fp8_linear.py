"""FP8 linears (cosmos_ray.models.fp8_linear): the e4m3 quantization against a float emulation of the format,
the GEMM against that emulation (on the CPU, whose `_scaled_mm` has rowwise float8 in recent torch), which linears
of the 2B and 14B nets are swapped and why (GEMM shapes from a meta-device forward at 84,480 tokens), unchanged
state dicts, re-quantization after in-place and assigned weight changes (a LoRA merge through
`cosmos_ray.models.lora`, eager and compiled), idempotence and the way back. The `gpu` tests bound the error
against bf16 on the device machine."""

from __future__ import annotations

import copy
from typing import cast

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch._dynamo.testing import CompileCounterWithBackend

from cosmos_ray.models.dit import DiTConfig, MiniTrainDiT
from cosmos_ray.models.fp8_linear import (
    FP8_LINEARS,
    FP8Linear,
    FP8Unavailable,
    check_supported,
    quantize_rows,
    use_fp8_linears,
    use_plain_linears,
)
from cosmos_ray.models.lora import Adapter, AdapterMerger, adapter_from_state
from cosmos_ray.models.weights import load_into
from cosmos_ray.offload import Offloader
from tests.dit_helpers import TINY, random_dit, random_inputs, rel_error
from tests.lora_helpers import official_lora_keys, peft_dit

GRID_720P = (24, 88, 160)  # latent frames, height, width of a 720p, 93-frame video: 84,480 patch tokens


def cpu_has_rowwise_fp8() -> bool:
    try:
        FP8Linear(16, 16, bias=False)(torch.ones(16, 16))
    except RuntimeError:
        return False
    return True


needs_cpu_fp8 = pytest.mark.skipif(not cpu_has_rowwise_fp8(), reason="this torch's CPU _scaled_mm has no rowwise fp8")


def e4m3(v: torch.Tensor) -> torch.Tensor:
    """v (|v| <= 448) rounded to the nearest e4m3 value, ties to even, in float arithmetic: 3 mantissa bits,
    normal numbers from 2^-6, subnormals in steps of 2^-9."""
    _, exponent = torch.frexp(v)  # v = m * 2^exponent, 0.5 <= |m| < 1
    step = torch.exp2((exponent - 1).clamp(min=-6) - 3.0)
    return torch.round(v / step) * step


def dequantized(t: torch.Tensor) -> torch.Tensor:
    values, scale = quantize_rows(t)
    return values.double() * scale.double()


def fro_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return ((ours.double() - reference.double()).norm() / reference.double().norm()).item()


def activations(rows: int, width: int, seed: int = 0) -> torch.Tensor:
    """Gaussian activations with eight outlier channels 30x larger, as transformer activations have."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, width, generator=g)
    x[:, torch.randperm(width, generator=g)[:8]] *= 30
    return x


def fp8_copy(dit: MiniTrainDiT) -> MiniTrainDiT:
    dit = copy.deepcopy(dit)
    use_fp8_linears(dit)
    return dit


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_quantize_rows_rounds_a_power_of_two_scaling_to_e4m3(dtype):
    x = activations(64, 256)
    x[1] *= 1e-6  # tiny values
    x[2] = 0  # a zero row
    x[3, :128] = 448.0  # a row already at the e4m3 maximum
    x = x.to(dtype)
    values, scale = quantize_rows(x)

    assert values.dtype == torch.float8_e4m3fn and values.shape == x.shape and values.is_contiguous()
    assert scale.shape == (64, 1) and scale.dtype == torch.float32
    assert torch.equal(torch.log2(scale), torch.log2(scale).round())  # powers of two
    top = x.float().abs().amax(-1, keepdim=True) / scale
    nonzero = top[torch.arange(64) != 2]
    assert (nonzero > 224).all() and (nonzero <= 448).all()
    assert torch.equal(values.float(), e4m3(x.float() / scale))  # one rounding, the format's own

    error = (values.double() * scale.double() - x.double()).abs()
    bound = torch.maximum(x.double().abs() * 2**-4, scale.double() * 2**-10)  # half a step, normal or subnormal
    assert (error <= bound).all()


@needs_cpu_fp8
def test_fp8_linear_is_the_gemm_of_the_dequantized_operands():
    x, linear = activations(256, 512).bfloat16(), nn.Linear(512, 384)
    nn.init.normal_(linear.weight, std=0.02)
    fp8 = FP8Linear.from_linear(linear)
    out = fp8(x.view(4, 64, 512))

    assert out.shape == (4, 64, 384) and out.dtype == torch.bfloat16
    emulated = dequantized(x) @ dequantized(linear.weight.detach()).T + linear.bias.detach().double()
    reference = emulated.abs().max().item()
    torch.testing.assert_close(out.view(256, 384).double(), emulated, rtol=2**-7, atol=2**-8 * reference)
    exact = F.linear(x.double(), linear.weight.double(), linear.bias.double())
    assert fro_error(out, exact.view(4, 64, 384)) < 0.05  # e4m3 rounding of both operands: ~0.038


@pytest.mark.parametrize("size", ["2B", "14B"])
def test_the_large_linears_run_in_fp8_and_hold_the_linear_flops(size):
    cfg = DiTConfig.preset(size)
    with torch.device("meta"):
        dit = MiniTrainDiT(cfg)
    keys = list(dit.state_dict())
    assert use_fp8_linears(dit) == cfg.num_blocks * len(FP8_LINEARS)
    assert list(dit.state_dict()) == keys

    gemms: dict[str, tuple[int, int, int]] = {}  # name -> (rows, in, out) of each linear's call

    def record(name: str):
        def hook(module: nn.Linear, args: tuple, output: torch.Tensor) -> None:
            gemms[name] = (args[0].numel() // module.in_features, module.in_features, module.out_features)

        return hook

    for name, module in dit.named_modules():
        if isinstance(module, nn.Linear):
            module.register_forward_hook(record(name))
    t, h, w = GRID_720P
    meta = torch.device("meta")
    with torch.no_grad():
        velocity = dit(
            torch.empty(1, 16, t, h, w, device=meta),
            torch.empty(1, device=meta),
            torch.empty(1, 512, cfg.crossattn_proj_in_channels, device=meta),
        )
    assert velocity.shape == (1, 16, t, h, w)  # _scaled_mm's shape checks passed on every FP8 linear

    fp8 = {name for name, m in dit.named_modules() if isinstance(m, FP8Linear)}
    assert fp8 == {f"blocks.{i}.{name}" for i in range(cfg.num_blocks) for name in FP8_LINEARS}
    flops = {name: 2 * rows * k * n for name, (rows, k, n) in gemms.items()}
    tokens = t * (h // 2) * (w // 2)
    assert all(gemms[name][0] == tokens and gemms[name][2] >= 2048 for name in fp8)
    assert sum(flops[name] for name in fp8) > 0.998 * sum(flops.values())
    assert max(flops[name] for name in flops.keys() - fp8) < 0.2 * min(flops[name] for name in fp8)


def test_the_state_dict_is_unchanged_and_loading_one_requantizes():
    dit, other = random_dit(seed=0), random_dit(seed=1)
    inputs = random_inputs(TINY, 1, 2, 8, 8)
    state = dit.state_dict()
    use_fp8_linears(dit)
    after = dit.state_dict()
    assert list(after) == list(state)
    assert all(after[key] is state[key] or after[key].data_ptr() == state[key].data_ptr() for key in state)

    with torch.no_grad():
        before = dit(**inputs)
        expected = fp8_copy(other)(**inputs)
        dit.load_state_dict(other.state_dict())  # copies in place: the version counters move
        assert torch.equal(dit(**inputs), expected)
        load_into(dit, random_dit(seed=0).state_dict())  # assigns new tensors: new storage
        assert torch.equal(dit(**inputs), before)


def tiny_adapter(dit: MiniTrainDiT) -> Adapter:
    """A random rank-4 adapter on the official targets of `dit`, through peft and the official file layout."""
    return adapter_from_state(official_lora_keys(peft_dit(dit, [("a", 4, 8.0, 1.0)]), "a", prefix=""), "a")


def test_a_lora_merge_and_restore_are_picked_up():
    base = random_dit()
    adapter = tiny_adapter(base)
    inputs = random_inputs(TINY, 1, 2, 8, 8)
    dit = copy.deepcopy(base)
    merger = AdapterMerger(dit)  # made before the swap: it holds the plain modules, which share the Parameters
    use_fp8_linears(dit)
    reference = copy.deepcopy(base)
    AdapterMerger(reference).merge([(adapter, 1.0)])
    with torch.no_grad():
        plain = dit(**inputs)
        merger.merge([(adapter, 1.0)])
        merged = dit(**inputs)
        assert torch.equal(merged, fp8_copy(reference)(**inputs))
        assert rel_error(merged, plain) > 0.01
        merger.merge([])
        assert torch.equal(dit(**inputs), plain)


def test_compiled_blocks_read_the_requantized_weight():
    dit = fp8_copy(random_dit())
    inputs = random_inputs(TINY, 1, 2, 8, 8)
    with torch.no_grad():
        first = dit(**inputs)  # eager: the e4m3 weights are made
    eager = copy.deepcopy(dit)
    counter = CompileCounterWithBackend("aot_eager")
    dit.compile_blocks(backend=counter)
    with torch.no_grad():
        assert torch.equal(dit(**inputs), first)
        for net in (dit, eager):
            cast(nn.Linear, net.get_submodule("blocks.0.mlp.layer1")).weight.mul_(1.5)
            cast(nn.Linear, net.get_submodule("blocks.1.self_attn.q_proj")).weight.mul_(0.5)
        assert torch.equal(dit(**inputs), eager(**inputs))
    assert counter.frame_count == 1  # one graph for every block: the refresh runs before it, not inside


def test_a_cast_requantizes():
    dit = fp8_copy(random_dit())
    inputs = random_inputs(TINY, 1, 2, 8, 8)
    with torch.no_grad():
        dit(**inputs)
        dit.to(torch.bfloat16)  # casts the e4m3 buffers too: they no longer count
        half = {key: value.bfloat16() for key, value in inputs.items()}
        assert torch.equal(dit(**half), fp8_copy(random_dit().to(torch.bfloat16))(**half))


def test_use_fp8_linears_is_idempotent_and_reversible():
    dit = random_dit()
    inputs = random_inputs(TINY, 1, 2, 8, 8)
    parameters = dict(dit.named_parameters())
    with torch.no_grad():
        plain = dit(**inputs)
        count = use_fp8_linears(dit)
        modules = dict(dit.named_modules())
        fp8 = dit(**inputs)
        assert use_fp8_linears(dit) == count == TINY.num_blocks * len(FP8_LINEARS)
        assert dict(dit.named_modules()) == modules  # the same modules
        assert all(len(block._forward_pre_hooks) == 1 for block in dit.blocks)
        assert torch.equal(dit(**inputs), fp8)
        assert not torch.equal(fp8, plain)

        assert use_plain_linears(dit) == count and use_plain_linears(dit) == 0
        linears = [m for m in dit.modules() if isinstance(m, nn.Linear)]
        assert all(type(m) is nn.Linear for m in linears)
        assert all(not block._forward_pre_hooks for block in dit.blocks)
        assert all(p is parameters[name] for name, p in dit.named_parameters())
        assert torch.equal(dit(**inputs), plain)


def test_odd_widths_and_other_devices_are_refused():
    with pytest.raises(ValueError, match="multiples of 16"):
        FP8Linear.from_linear(nn.Linear(72, 2048))
    with pytest.raises(FP8Unavailable, match="CUDA GPU"):
        check_supported("cpu")


# ----------------------------------------------------------------------------------------------------
# On the device machine


@pytest.mark.gpu
def test_the_gpu_supports_fp8_linears():
    check_supported("cuda")


@pytest.mark.gpu
def test_fp8_linear_error_on_the_gpu():
    """Activations with outlier channels through a 2B-sized linear: the GEMM of the dequantized operands (to
    bf16 rounding), and an error against bf16 that is the e4m3 rounding's (~0.038 on the CPU)."""
    x = activations(8192, 2048).bfloat16().cuda()
    linear = nn.Linear(2048, 2048, bias=False, device="cuda", dtype=torch.bfloat16)
    nn.init.normal_(linear.weight, std=0.02)
    with torch.no_grad():
        out = FP8Linear.from_linear(linear)(x)
        reference = linear(x)
    emulated = dequantized(x) @ dequantized(linear.weight.detach()).T
    torch.testing.assert_close(out.double(), emulated, rtol=2**-7, atol=2**-8 * emulated.abs().max().item())
    assert fro_error(out, reference) < 0.05
    assert rel_error(out, reference) < 0.08


@pytest.mark.gpu
def test_tiny_dit_velocity_error_on_the_gpu():
    dit = random_dit().cuda().to(torch.bfloat16)
    inputs = {key: value.cuda().bfloat16() for key, value in random_inputs(TINY, 1, 2, 8, 8).items()}
    with torch.no_grad():
        reference = dit(**inputs)
        use_fp8_linears(dit)
        velocity = dit(**inputs)
    assert all(m.weight_fp8.numel() for m in dit.modules() if isinstance(m, FP8Linear))
    assert rel_error(velocity, reference) < 0.1  # 0.044 on the CPU (0.04-0.08 over seeds)
    assert fro_error(velocity, reference) < 0.07


@pytest.mark.gpu
def test_a_merge_is_picked_up_by_compiled_blocks_on_the_gpu():
    base = random_dit()
    adapter = tiny_adapter(base)
    dit = base.cuda().to(torch.bfloat16)
    inputs = {key: value.cuda().bfloat16() for key, value in random_inputs(TINY, 1, 2, 8, 8).items()}
    use_fp8_linears(dit)
    eager = copy.deepcopy(dit)
    dit.compile_blocks()
    with torch.no_grad():
        before = dit(**inputs)
        for net in (dit, eager):
            AdapterMerger(net).merge([(adapter, 1.0)])
        merged, expected = dit(**inputs), eager(**inputs)
    assert rel_error(merged, expected) < 0.01
    assert rel_error(merged, before) > 10 * rel_error(merged, expected)


@pytest.mark.gpu
def test_offloading_frees_and_remakes_the_e4m3_weights():
    dit = fp8_copy(random_dit().to(torch.bfloat16))
    inputs = {key: value.cuda().bfloat16() for key, value in random_inputs(TINY, 1, 2, 8, 8).items()}
    offloader = Offloader("cuda")
    offloader.place([dit], offloaded=True)
    velocities = []
    for _ in range(2):
        with offloader.running([dit], offloaded=True), torch.no_grad():
            velocities.append(dit(**inputs))
        caches = [m.weight_fp8 for m in dit.modules() if isinstance(m, FP8Linear)]
        assert all(cache.device.type == "cpu" and cache.numel() == 0 for cache in caches)  # GPU copies freed
    assert torch.equal(velocities[0], velocities[1])
