"""8-bit attention (cosmos_ray/models/attention_int8.py): its checks, the torch model of its scheme, the Triton
kernels on the CPU interpreter (int8 Q K^T, fp16 P V: the interpreter's fp8 and bf16 dots are wrong) and, marked
`gpu`, every variant on the device against fp32 attention, at the DiT's shapes too.

Error bounds (relative Frobenius against fp32 attention). e4m3 keeps 3 mantissa bits: rounding P and V each costs
about 2.7 % RMS of a product; INT8 Q K^T costs about 1.1 % of the weights on unit-variance logits, FP8 Q K^T about
3.8 %. The torch model of the scheme (`scheme_error`: `simulated_attention` over `reference_quantize`) measures on
random inputs, from 77 to 4096 keys, D 64 and 128, bf16 output (DiT-like inputs: 0.2e-2 to 1.2e-2):
    qk/pv        random
    int8/fp8     3.3e-2 .. 4.0e-2
    int8/fp16    1.0e-2 .. 1.2e-2
    fp8/fp8      4.7e-2 .. 5.5e-2
    fp8/fp16     3.4e-2 .. 4.1e-2
The kernels are held to the model's error on the same inputs plus 30 % (P rounds relative to the kernel's running
max, not the row's max) and 2e-3 (bf16 output): SCHEME_MARGIN; RANDOM_BOUND is the table's top plus 30 %.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from cosmos_ray.models.attention_int8 import (
    QuantizedAttentionInputs,
    check_inputs,
    check_supported,
    int8_attention,
    quantize,
)
from tests.attention_int8_helpers import (
    dit_like_inputs,
    fp32_attention,
    random_inputs,
    reference_quantize,
    relative_error,
    scheme_error,
    simulated_attention,
)

RANDOM_BOUND = {("int8", "fp8"): 0.052, ("int8", "fp16"): 0.016, ("fp8", "fp8"): 0.072, ("fp8", "fp16"): 0.054}
VARIANTS = sorted(RANDOM_BOUND)
# (batch, query tokens, key tokens, heads, head dim): odd lengths (no multiple of a block), Sq != Sk, batch 2
SHAPES = [(1, 1024, 1024, 2, 128), (2, 333, 1000, 3, 128), (2, 1000, 77, 2, 64)]


def assert_within_the_scheme_error(out, q, k, v, *, qk: str, pv: str) -> None:
    error = relative_error(out, fp32_attention(q, k, v))
    model = scheme_error(q, k, v, qk=qk, pv=pv)
    assert error < 1.3 * model + 2e-3, f"{qk}/{pv}: {error:.4f} (the torch model of the scheme: {model:.4f})"


def assert_quantized_like(actual: QuantizedAttentionInputs, expected: QuantizedAttentionInputs) -> None:
    """The kernel's quantization against the torch reference: scales equal to fp32 rounding, codes equal but for
    a rare one-step difference where the two round a value on a boundary differently (the kernel divides with
    the GPU's approximate division, the means come from reductions in another order)."""
    assert (actual.seq_q, actual.seq_k) == (expected.seq_q, expected.seq_k)
    for name in ("q_scale", "k_scale", "v_scale", "v_mean"):
        torch.testing.assert_close(getattr(actual, name), getattr(expected, name), rtol=1e-5, atol=1e-7, msg=name)
    for name in ("q", "k", "vt"):
        got, want = getattr(actual, name), getattr(expected, name)
        assert got.dtype == want.dtype and got.shape == want.shape, name
        got, want = got.float(), want.float()
        step = 1.0 if name != "vt" else want.abs().clamp_min(2**-6) / 8  # an int8 code; an e4m3 ulp
        differs = got != want
        assert differs.float().mean().item() < 1e-3, name
        assert ((got - want).abs() <= step * 1.01)[differs].all(), name


# --- checks (CPU) -------------------------------------------------------------------------------------------------


def test_check_supported_says_what_is_wrong_and_what_to_use(monkeypatch):
    with pytest.raises(ValueError, match=r"head_dim in \(64, 128\).*use the bf16 attention"):
        check_supported(torch.zeros(1, 4, 2, 96, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="bf16 or fp16 .* got torch.float32"):
        check_supported(torch.zeros(1, 4, 2, 64))
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setitem(sys.modules, "triton", None)  # what CI's CPU torch has: no Triton
    with pytest.raises(RuntimeError, match="needs Triton.*pip install triton.*use the bf16 attention"):
        check_supported(torch.zeros(1, 4, 2, 64, dtype=torch.bfloat16))
    monkeypatch.setitem(sys.modules, "triton", types.ModuleType("triton"))  # an importable Triton
    with pytest.raises(ValueError, match="runs on CUDA tensors, got q on cpu; use the bf16 attention"):
        check_supported(torch.zeros(1, 4, 2, 64, dtype=torch.bfloat16))


def test_check_inputs_rejects_what_the_kernel_cannot_read():
    q = torch.zeros(2, 5, 3, 64, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="k and v of shape"):
        check_inputs(q, torch.zeros(2, 7, 4, 64, dtype=torch.bfloat16), torch.zeros(2, 7, 4, 64), "int8", "fp8")
    strided = torch.zeros(2, 7, 3, 128, dtype=torch.bfloat16)[..., ::2]
    with pytest.raises(ValueError, match=r"contiguous last .* pass k.contiguous\(\)"):
        check_inputs(q, strided, strided, "int8", "fp8")
    with pytest.raises(ValueError, match="qk must be one of"):
        check_inputs(q, q, q, "int4", "fp8")


def test_the_module_imports_without_triton():
    code = "import sys; sys.modules['triton'] = None; import cosmos_ray.models.attention_int8"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the scheme in torch (CPU) ------------------------------------------------------------------------------------


@pytest.mark.parametrize("qk, pv", VARIANTS)
def test_the_scheme_in_torch_stays_within_the_random_input_bound(qk, pv):
    q, k, v = random_inputs(1, 300, 260, 2, 64)
    assert scheme_error(q, k, v, qk=qk, pv=pv) < RANDOM_BOUND[qk, pv]


@pytest.mark.parametrize("qk", ["int8", "fp8"])
def test_smoothing_k_pays_where_k_has_a_mean(qk):
    """DiT-like K (a large mean over tokens, outlier channels in it): subtracting the mean before quantizing
    lowers the error (P V in fp16, so that Q K^T's share shows)."""
    q, k, v = dit_like_inputs(1, 300, 260, 2, 64)
    smoothed, plain = (scheme_error(q, k, v, qk=qk, pv="fp16", smooth_k=smooth) for smooth in (True, False))
    assert smoothed < 0.8 * plain


def test_smoothing_k_changes_no_logit_order():
    """Subtracting K's mean over tokens adds the same q . mean to every logit of a row: the softmax is unchanged."""
    q, k, v = dit_like_inputs(1, 50, 40, 2, 64)
    q, k, v = q.float(), k.float(), v.float()
    torch.testing.assert_close(fp32_attention(q, k - k.mean(1, keepdim=True), v), fp32_attention(q, k, v))


# --- the Triton kernels on the CPU interpreter --------------------------------------------------------------------


def test_interpreted_kernels_match_the_torch_reference(tmp_path):
    pytest.importorskip("triton", reason="Triton is not importable (CI's CPU torch has none)")
    # fp16: the interpreter casts fp32 to bf16 by truncation (the GPU rounds to nearest), a bias of 3e-3
    q, k, v = dit_like_inputs(2, 150, 200, 2, 64, dtype=torch.float16)
    torch.save({"q": q, "k": k, "v": v}, tmp_path / "inputs.pt")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    command = [sys.executable, "-m", "tests.attention_int8_helpers", tmp_path / "inputs.pt", tmp_path / "outputs.pt"]
    subprocess.run(command, env=env, check=True, timeout=300)
    outputs = torch.load(tmp_path / "outputs.pt")

    inputs = QuantizedAttentionInputs(**outputs["quantized"])
    assert_quantized_like(inputs, reference_quantize(q, k, v, qk="int8", pv="fp16"))
    for block_n in (64, 128):
        out = outputs[f"out_block_n_{block_n}"]
        assert out.dtype == torch.float16 and out.shape == q.shape
        # against the same quantized inputs only the fp16 rounding of P and of the output remain
        assert relative_error(out, simulated_attention(inputs)) < 1e-3
        assert_within_the_scheme_error(out, q, k, v, qk="int8", pv="fp16")
    for name in ("out_views", "out_compiled"):  # the autotuner's only config under the interpreter: BLOCK_N 64
        torch.testing.assert_close(outputs[name], outputs["out_block_n_64"], rtol=0, atol=0, msg=name)


# --- the kernels on the GPU ---------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("qk, pv", VARIANTS)
def test_quantize_matches_the_torch_reference(qk, pv):
    q, k, v = dit_like_inputs(2, 333, 1000, 3, 128, device="cuda")
    assert_quantized_like(quantize(q, k, v, qk=qk, pv=pv), reference_quantize(q, k, v, qk=qk, pv=pv))


@pytest.mark.gpu
@pytest.mark.parametrize("qk, pv", VARIANTS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_error_against_fp32_attention(shape, qk, pv):
    for make in (random_inputs, dit_like_inputs):
        q, k, v = make(*shape, device="cuda")
        out = int8_attention(q, k, v, qk=qk, pv=pv)
        assert out.dtype == q.dtype and out.shape == q.shape
        assert_within_the_scheme_error(out, q, k, v, qk=qk, pv=pv)


@pytest.mark.gpu
def test_fp16_pv_matches_the_simulation_of_its_own_inputs():
    """With P V in fp16 the kernel is the exact attention over its quantized inputs, to fp16/bf16 rounding: checks
    the kernel's arithmetic apart from the quantization error."""
    q, k, v = dit_like_inputs(2, 1000, 777, 2, 128, device="cuda")
    out = int8_attention(q, k, v, pv="fp16")
    assert relative_error(out, simulated_attention(quantize(q, k, v, pv="fp16"))) < 3e-3


@pytest.mark.gpu
def test_every_autotune_config_computes_the_same_attention():
    from cosmos_ray.models import attention_int8_kernels as kernels

    q, k, v = random_inputs(2, 700, 900, 2, 128, device="cuda")
    expected = fp32_attention(q, k, v)
    exact = quantize(q, k, v, pv="fp16")
    reference = simulated_attention(exact)
    fp8 = quantize(q, k, v)
    bound = 1.3 * scheme_error(q, k, v, qk="int8", pv="fp8") + 2e-3
    for config in kernels.CONFIGS:
        out = torch.empty_like(q)
        kernels.attend(exact, out, config=config)
        assert relative_error(out, reference) < 3e-3, config
        kernels.attend(fp8, out, config=config)
        assert relative_error(out, expected) < bound, config


@pytest.mark.gpu
def test_strided_views_give_the_contiguous_result():
    """The DiT passes (B, S, H, D) views of other layouts: transposed (B, H, S, D) storage, slices of a fused qkv."""
    q, k, v = dit_like_inputs(2, 500, 500, 4, 128, device="cuda")
    expected = int8_attention(q, k, v)
    transposed = [t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v)]
    assert torch.equal(int8_attention(*transposed), expected)
    fused = torch.stack((q, k, v), dim=2)  # (B, S, 3, H, D)
    assert torch.equal(int8_attention(fused[:, :, 0], fused[:, :, 1], fused[:, :, 2]), expected)


@pytest.mark.gpu
def test_torch_compile_keeps_it_as_one_op():
    q, k, v = random_inputs(1, 300, 300, 2, 128, device="cuda")
    compiled = torch.compile(int8_attention, fullgraph=True)
    assert torch.equal(compiled(q, k, v), int8_attention(q, k, v))


@pytest.mark.gpu
def test_check_supported_refuses_gpus_without_fp8(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    with pytest.raises(RuntimeError, match=r"compute capability >= 8.9.* has 8.0; use the bf16 attention"):
        check_supported(torch.zeros(1, 4, 2, 64, dtype=torch.bfloat16, device="cuda"))


@pytest.mark.gpu
@pytest.mark.parametrize(
    "batch, heads",
    [(2, 16), (1, 40), (1, 8)],
    ids=["2B-batch2", "14B", "2B-ulysses2-shard"],
)
def test_the_first_call_at_the_dit_shapes(batch, heads):
    """84,480 tokens (720p, 93 frames) x 128: the first call compiles and autotunes, the result is bf16 attention's
    within the random-input bound (cuDNN/flash bf16 as the reference: fp32 attention is too large here)."""
    q, k, v = random_inputs(batch, 84480, 84480, heads, 128, device="cuda")
    out = int8_attention(q, k, v)
    assert out.isfinite().all()
    q_, k_, v_ = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, S, D) views
    expected = F.scaled_dot_product_attention(q_, k_, v_).transpose(1, 2)
    assert relative_error(out, expected) < RANDOM_BOUND["int8", "fp8"]
