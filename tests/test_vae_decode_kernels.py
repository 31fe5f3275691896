"""The faster ways to decode (`DecodeKernels`, `WanVAE.compile_decoder`): each gives today's frames, within
float32 rounding on the CPU and within bf16 noise on a GPU, and the decode floor's bookkeeping."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.vae_floor import stage_floors, trace_kernels
from cosmos_ray.models.vae import DecodeKernels, VAEConfig, WanVAE, conv3d_as_conv2d, stack_frames
from tests.vae_helpers import TINY, random_vae, rel_err


def latents(t: int = 3, h: int = 2, w: int = 3, seed: int = 2) -> torch.Tensor:
    return torch.randn(1, 16, t, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def vae() -> WanVAE:
    return random_vae()


def test_stacked_frames_conv2d_is_the_3d_conv():
    x = torch.randn(2, 5, 6, 7, 8).contiguous(memory_format=torch.channels_last_3d)  # 6 = 4 frames + 2 past
    conv = torch.nn.Conv3d(5, 4, 3, padding=(0, 1, 1))
    stacked = stack_frames(x, 3)  # (2, 15, 4, 7, 8)
    assert torch.equal(stacked[:, 5:10, 2], x[:, :, 3])  # channels k*C.. of frame t are frame t + k
    assert stacked.is_contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        out = conv3d_as_conv2d(stacked, conv.weight, conv.bias, (1, 1))
        torch.testing.assert_close(out, conv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kernels", [DecodeKernels(stacked_conv2d=True), DecodeKernels(fused_norm=True), DecodeKernels(cudnn_benchmark=True)]
)
def test_decode_kernels_give_the_default_frames(vae, kernels):
    z = latents()
    expected = vae.decode(z)
    try:
        got = vae.use_decode_kernels(kernels).decode(z)
    finally:
        vae.use_decode_kernels(DecodeKernels())
    assert got.shape == expected.shape
    assert rel_err(got, expected) < 1e-5  # float32: only the summation order differs


def test_decode_kernels_reach_the_decoder_only(vae):
    vae.use_decode_kernels(DecodeKernels(stacked_conv2d=True, fused_norm=True))
    try:
        flags = {n: (getattr(m, "stacked_conv2d", None), getattr(m, "fused", None)) for n, m in vae.named_modules()}
        assert flags["decoder.upsamples.0.residual.2"] == (True, None)
        assert flags["decoder.head.0"] == (None, True)
        assert flags["encoder.downsamples.0.residual.2"] == (False, None)
        assert flags["encoder.head.0"] == (None, False)
    finally:
        vae.use_decode_kernels(DecodeKernels())
    assert not any(getattr(m, "stacked_conv2d", False) or getattr(m, "fused", False) for m in vae.modules())


def test_cudnn_benchmark_is_on_during_the_decode_only(vae):
    seen = []
    hook = vae.decoder.conv1.register_forward_hook(lambda *_: seen.append(torch.backends.cudnn.benchmark))
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        vae.use_decode_kernels(DecodeKernels(cudnn_benchmark=True)).decode(latents(t=1))
        assert seen == [True] and torch.backends.cudnn.benchmark is False
        vae.use_decode_kernels(DecodeKernels()).decode(latents(t=1))
        assert seen == [True, False]
    finally:
        hook.remove()
        torch.backends.cudnn.benchmark = previous


def test_compiled_decoder_gives_the_default_frames_with_four_graphs():
    """The trunk and the branch each compile once for a stream's first latent frame and once for the rest,
    whatever the video's length; the stream cache (a dict of module -> frames) goes through the graphs."""
    eager = random_vae()
    compiled = random_vae()
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    compiled.compile_decoder(backend=counting_backend)
    for t in (3, 2, 4):
        z = latents(t=t, seed=t)
        torch.testing.assert_close(compiled.decode(z), eager.decode(z), rtol=1e-5, atol=1e-6)
    assert len(graphs) == 4


def test_compiled_decoder_with_inductor_and_stacked_convs_gives_the_default_frames():
    small = VAEConfig(base_channels=8, channel_multipliers=(1, 2), num_res_blocks=1, temporal_downsample=(True,))
    eager = random_vae(small)
    fast = random_vae(small).use_decode_kernels(DecodeKernels(stacked_conv2d=True, fused_norm=True))
    torch._dynamo.reset()
    fast.compile_decoder()  # the inductor compiles C++ on the CPU: a model of two levels keeps that short
    z = latents(t=2, h=4, w=6)
    assert rel_err(fast.decode(z), eager.decode(z)) < 1e-5


def test_floor_counts_the_flops_the_flop_counter_counts():
    shape = (1, 16, 3, 4, 6)
    kernels = trace_kernels(TINY, shape)
    with torch.device("meta"):
        vae = WanVAE(TINY)
    with FlopCounterMode(display=False) as counter:
        vae.decode(torch.empty(shape, device="meta"))
    assert sum(count * k.flops for k, count in kernels.items()) == counter.get_total_flops()
    stages = stage_floors(kernels, peak_tflops=1e-9, peak_tbps=1.0)  # 1 TFLOP at 1e-9 TFLOP/s: 1e12 ms
    assert [row["stage"] for row in stages] == ["4x6", "8x12", "16x24", "32x48"]
    # at full resolution, per latent frame: 3 blocks x 2 convs, the upsampler's conv into it, the head
    assert stages[-1]["calls"] == 3 * (3 * 2 + 1 + 1)
    for row in stages:
        assert row["floor_ms"] == max(row["compute_ms"], row["memory_ms"])


def test_benchmark_decode_variants_and_floor_run_with_tiny_shapes(tmp_path, capsys):
    from bench.vae import main

    out = tmp_path / "vae.jsonl"
    variants = "default,stacked_conv2d+cudnn_benchmark"
    main(["--device", "cpu", "--smoke", "--parts", "floor,decode-variants", "--variants", variants, "--out", str(out)])
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert not [r for r in records if "error" in r]
    floor = next(r for r in records if r["name"] == "vae.decode_floor")
    assert floor["floor_ms"] > 0 and len(floor["stages"]) == 4
    assert any(r["name"] == "vae.decode_kernels_alone" for r in records)
    rows = {r["variant"]: r for r in records if r["name"] == "vae.decode_variant"}
    assert rows["default"]["identical_to_default"] and rows["default"]["speedup"] == 1.0
    assert rows["stacked_conv2d+cudnn_benchmark"]["rel_err_vs_default"] < 1e-5


def test_benchmark_reports_a_bad_variant_and_goes_on(tmp_path):
    from bench.vae import main

    out = tmp_path / "vae.jsonl"
    variants = "warp_drive,default"
    main(["--device", "cpu", "--smoke", "--parts", "decode-variants", "--variants", variants, "--out", str(out)])
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["variant"] for r in records] == ["default", "warp_drive"]
    assert "unknown part(s) ['warp_drive']" in records[1]["error"]


# --- on a GPU, in bf16: each faster decode is as close to a float32 decode as today's -------------------------


@pytest.mark.gpu
@pytest.mark.parametrize(
    "kernels, compiled",
    [
        (DecodeKernels(cudnn_benchmark=True), False),
        (DecodeKernels(stacked_conv2d=True), False),
        (DecodeKernels(fused_norm=True), False),
        (DecodeKernels(cudnn_benchmark=True, stacked_conv2d=True, fused_norm=True), False),
        (DecodeKernels(cudnn_benchmark=True, stacked_conv2d=True), True),
    ],
)
def test_faster_decodes_stay_within_bf16_noise_on_cuda(kernels, compiled):
    cfg = VAEConfig.preset("wan2.1")
    z = latents(t=3, h=16, w=24).cuda()
    reference = random_vae(cfg).cuda().decode(z)  # float32
    today = random_vae(cfg).cuda().to(torch.bfloat16)
    fast = random_vae(cfg).cuda().to(torch.bfloat16).use_decode_kernels(kernels)
    if compiled:
        torch._dynamo.reset()
        fast.compile_decoder()
    z16 = z.to(torch.bfloat16)
    today_frames, fast_frames = today.decode(z16), fast.decode(z16)
    noise = rel_err(today_frames, reference)  # bf16's own error
    assert 0 < noise < 0.05
    assert rel_err(fast_frames, reference) < 1.25 * noise
    assert rel_err(fast_frames, today_frames) < 2 * noise  # two roundings of the same sums: ~sqrt(2) apart at most
