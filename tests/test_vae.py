"""Wan2.1 VAE: structure and names vs the official layout, parity with diffusers' AutoencoderKLWan,
streaming (causal chunking) behaviour, normalization, loading and input errors."""

from typing import cast

import pytest
import torch
from diffusers import AutoencoderKLWan
from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
from einops import rearrange
from safetensors.torch import save_file
from torch import nn

from cosmos_ray.models.vae import RMSNorm, VAEConfig, WanVAE, diffusers_key, interleave_frames, load_vae, per_frame
from cosmos_ray.models.weights import CheckpointMismatchError
from tests.oracles import diffusers_vae
from tests.vae_helpers import TINY, random_vae, rel_err


def latent_stats(cfg: VAEConfig) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(cfg.latent_mean).view(1, -1, 1, 1, 1), torch.tensor(cfg.latent_std).view(1, -1, 1, 1, 1)


def random_video(t: int, h: int = 16, w: int = 24, batch: int = 1, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, t, h, w, generator=g) * 2 - 1


@pytest.fixture(scope="module")
def pair() -> tuple[WanVAE, AutoencoderKLWan]:
    vae = random_vae()
    return vae, diffusers_vae(vae)


# --- structure and names ----------------------------------------------------------------------------


def test_wan21_preset_matches_diffusers_default_wan21_vae():
    cfg = VAEConfig.preset("wan2.1")
    assert (cfg.base_channels, cfg.latent_channels, cfg.num_res_blocks) == (96, 16, 2)
    assert (cfg.spatial_compression, cfg.temporal_compression) == (8, 4)
    with torch.device("meta"):
        ours = WanVAE(cfg)
        ref = AutoencoderKLWan()  # its defaults are the Wan2.1 VAE
    assert cfg.latent_mean == pytest.approx(ref.config.latents_mean)
    assert cfg.latent_std == pytest.approx(ref.config.latents_std)
    # diffusers' converter was written against the official checkpoint's names: converting ours must give
    # exactly diffusers' parameters, with the same shapes.
    converted = convert_wan_vae_to_diffusers(ours.state_dict())
    ref_shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == ref_shapes


def test_official_names_and_shapes_of_wan21():
    with torch.device("meta"):
        state = WanVAE(VAEConfig.preset("wan2.1")).state_dict()
    expected = {
        "encoder.conv1.weight": (96, 3, 3, 3, 3),
        "encoder.downsamples.0.residual.0.gamma": (96, 1, 1, 1),
        "encoder.downsamples.2.resample.1.weight": (96, 96, 3, 3),
        "encoder.downsamples.5.time_conv.weight": (192, 192, 3, 1, 1),
        "encoder.downsamples.3.shortcut.weight": (192, 96, 1, 1, 1),
        "encoder.middle.1.norm.gamma": (384, 1, 1),
        "encoder.middle.1.to_qkv.weight": (1152, 384, 1, 1),
        "encoder.head.2.weight": (32, 384, 3, 3, 3),
        "conv1.weight": (32, 32, 1, 1, 1),
        "conv2.weight": (16, 16, 1, 1, 1),
        "decoder.conv1.weight": (384, 16, 3, 3, 3),
        "decoder.upsamples.3.time_conv.weight": (768, 384, 3, 1, 1),
        "decoder.upsamples.3.resample.1.weight": (192, 384, 3, 3),
        "decoder.upsamples.4.shortcut.weight": (384, 192, 1, 1, 1),
        "decoder.upsamples.14.residual.6.weight": (96, 96, 3, 3, 3),
        "decoder.head.2.weight": (3, 96, 3, 3, 3),
    }
    assert {k: tuple(state[k].shape) for k in expected} == expected
    assert sum(v.numel() for v in state.values()) == 126_892_531


@pytest.mark.parametrize("preset", ["tiny", "wan2.1"])
def test_diffusers_key_table_matches_diffusers_converter(preset):
    cfg = VAEConfig.preset(preset)
    with torch.device("meta"):
        state = WanVAE(cfg).state_dict()
    converted = convert_wan_vae_to_diffusers(state)
    ours = {diffusers_key(k, cfg): v for k, v in state.items()}
    assert ours.keys() == converted.keys()
    assert all(ours[k] is converted[k] for k in ours)


def test_unknown_preset_and_bad_config_are_rejected():
    with pytest.raises(ValueError, match="unknown VAE preset 'wan2.2'"):
        VAEConfig.preset("wan2.2")
    with pytest.raises(ValueError, match="encode_chunk_frames must be a multiple of 4"):
        VAEConfig(encode_chunk_frames=6)
    with pytest.raises(ValueError, match="latent_mean and latent_std need 8 values"):
        VAEConfig(latent_channels=8)


# --- parity with diffusers ------------------------------------------------------------------------------


@pytest.mark.parametrize("frames", [1, 5, 9])
def test_encode_matches_diffusers(pair, frames):
    vae, ref = pair
    video = random_video(frames, batch=2)
    latents = vae.encode(video)
    with torch.no_grad():
        mu = ref.encode(video).latent_dist.mode()
    mean, std = latent_stats(vae.cfg)
    assert latents.shape == (2, 16, 1 + (frames - 1) // 4, 2, 3)
    assert rel_err(latents, (mu - mean) / std) < 1e-5


@pytest.mark.parametrize("latent_frames", [1, 2, 3])
def test_decode_matches_diffusers(pair, latent_frames):
    vae, ref = pair
    latents = torch.randn(2, 16, latent_frames, 2, 3, generator=torch.Generator().manual_seed(2))
    video = vae.decode(latents)
    mean, std = latent_stats(vae.cfg)
    with torch.no_grad():
        expected = ref.decode(latents * std + mean).sample
    assert video.shape == (2, 3, 1 + 4 * (latent_frames - 1), 16, 24)
    assert video.abs().lt(1).float().mean() > 0.9  # mostly unclamped, so the comparison means something
    assert rel_err(video, expected) < 1e-5


# --- streaming, normalization, dtype ---------------------------------------------------------------------


def test_encode_chunk_size_does_not_change_latents(pair):
    vae, _ = pair
    video = random_video(9)
    wide = WanVAE(VAEConfig(base_channels=TINY.base_channels, encode_chunk_frames=8)).eval()
    wide.load_state_dict(vae.state_dict())
    assert rel_err(wide.encode(video), vae.encode(video)) < 1e-5


def test_decode_is_causal(pair):
    vae, _ = pair
    latents = torch.randn(1, 16, 3, 2, 3, generator=torch.Generator().manual_seed(3))
    full = vae.decode(latents)
    prefix = vae.decode(latents[:, :, :2])
    torch.testing.assert_close(prefix, full[:, :, :5], rtol=1e-5, atol=1e-6)
    assert rel_err(vae.decode(latents[:, :, 1:]), full[:, :, 4:]) > 1e-2  # frame 0 matters downstream


def test_encode_is_causal(pair):
    vae, _ = pair
    video = random_video(9)
    changed = video.clone()
    changed[:, :, 5:] = 0
    torch.testing.assert_close(vae.encode(changed)[:, :, :2], vae.encode(video)[:, :, :2], rtol=1e-5, atol=1e-6)


def test_latents_are_normalized_with_the_config_statistics(pair):
    vae, _ = pair
    raw = WanVAE(VAEConfig(base_channels=TINY.base_channels, latent_mean=(0.0,) * 16, latent_std=(1.0,) * 16))
    raw.load_state_dict(vae.state_dict())
    mean, std = latent_stats(vae.cfg)
    video = random_video(1)
    torch.testing.assert_close(vae.encode(video), (raw.encode(video) - mean) / std, rtol=1e-5, atol=1e-5)
    latents = torch.randn(1, 16, 1, 2, 3, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(vae.decode(latents), raw.decode(latents * std + mean), rtol=1e-5, atol=1e-6)


def test_decode_clamps_to_unit_range():
    vae = random_vae()
    with torch.no_grad():
        cast(nn.Conv3d, vae.decoder.head[2]).weight.mul_(100)
    video = vae.decode(torch.randn(1, 16, 2, 2, 3))
    assert video.abs().max() == 1.0
    assert video.abs().eq(1).any()


def test_memory_format_does_not_change_results(pair):
    vae, _ = pair
    latents = torch.randn(1, 16, 2, 2, 3, generator=torch.Generator().manual_seed(5))
    vae.memory_format = torch.contiguous_format
    try:
        contiguous = vae.decode(latents)
    finally:
        vae.memory_format = torch.channels_last_3d
    assert rel_err(vae.decode(latents), contiguous) < 1e-5


def test_layers_keep_channels_last():
    # channels_last_3d lets cuDNN run every conv without layout transposes; the non-conv steps keep it.
    x = torch.randn(1, 8, 3, 4, 5).contiguous(memory_format=torch.channels_last_3d)
    interleaved = interleave_frames(x)
    assert torch.equal(interleaved, rearrange(x, "b (two c) t h w -> b c (t two) h w", two=2))
    assert interleaved.is_contiguous(memory_format=torch.channels_last_3d)
    assert RMSNorm(8, spatial_dims=3)(x).is_contiguous(memory_format=torch.channels_last_3d)
    assert per_frame(torch.nn.Conv2d(8, 4, 3, padding=1), x).is_contiguous(memory_format=torch.channels_last_3d)


def test_bfloat16_runs_close_to_float32(pair):
    vae, _ = pair
    bf16 = random_vae().to(torch.bfloat16)
    video = random_video(5, h=8, w=16)
    latents = bf16.encode(video)
    assert latents.dtype == torch.float32  # outputs follow the input's dtype
    assert rel_err(latents, vae.encode(video)) < 0.05
    decoded = bf16.decode(latents.to(torch.bfloat16))
    assert decoded.dtype == torch.bfloat16
    assert rel_err(decoded, vae.decode(latents)) < 0.05


# --- input errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, message",
    [
        ((1, 3, 4, 32, 48), r"1 \+ 4k frames, got T=4"),
        ((1, 3, 5, 30, 48), "divisible by 8, got 30x48"),
        ((1, 4, 5, 32, 48), r"expects video \(B, 3, T, H, W\)"),
        ((3, 5, 32, 48), r"expects video \(B, 3, T, H, W\)"),
    ],
)
def test_encode_rejects_bad_video(pair, shape, message):
    vae, _ = pair
    with pytest.raises(ValueError, match=message):
        vae.encode(torch.zeros(shape))


def test_decode_rejects_bad_latents(pair):
    vae, _ = pair
    with pytest.raises(ValueError, match=r"expects latents \(B, 16, T, H, W\), got \(1, 8, 2, 4, 6\)"):
        vae.decode(torch.zeros(1, 8, 2, 4, 6))


# --- loading ---------------------------------------------------------------------------------------------


def test_load_official_checkpoint(pair, tmp_path):
    vae, _ = pair
    path = tmp_path / "Wan2.1_VAE.pth"
    torch.save(vae.state_dict(), path)
    loaded = load_vae(path, TINY, dtype=torch.float32)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    for key, value in vae.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_load_diffusers_checkpoint(pair, tmp_path):
    vae, ref = pair
    (tmp_path / "vae").mkdir()
    save_file(
        {k: v.contiguous() for k, v in ref.state_dict().items()},
        str(tmp_path / "vae" / "diffusion_pytorch_model.safetensors"),
    )
    for source in (tmp_path / "vae", tmp_path / "vae" / "diffusion_pytorch_model.safetensors", ref.state_dict()):
        loaded = load_vae(source, TINY, dtype=torch.float32)
        for key, value in vae.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), (source, key)


def test_load_reports_mismatched_checkpoint(pair, tmp_path):
    vae, _ = pair
    state = vae.state_dict()
    del state["decoder.head.2.bias"]
    state["encoder.extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \(1\):\s+decoder.head.2.bias"):
        load_vae(path, TINY)


def test_load_reports_wrong_config(pair, tmp_path):
    vae, _ = pair
    path = tmp_path / "tiny.pth"
    torch.save(vae.state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match="shape mismatches"):
        load_vae(path, VAEConfig(base_channels=16))


# --- decoding column strips ------------------------------------------------------------------------------


def test_branch_margin_of_wan21():
    with torch.device("meta"):
        decoder = WanVAE(VAEConfig.preset("wan2.1")).decoder
    # levels 1-3 at 1x, 2x, 4x the trunk's resolution: 6 convs each, plus the two upsampler convs and the head
    assert decoder.branch_margin == 12  # ceil(6 + 1/2 + 6/2 + 1/4 + 6/4 + 1/4)


@pytest.mark.parametrize("columns", [slice(0, 3), slice(10, 14), slice(31, 32)])
def test_decoding_columns_gives_the_same_pixels(pair, columns):
    vae, _ = pair
    latents = torch.randn(1, 16, 2, 2, 32, generator=torch.Generator().manual_seed(6))  # margin 6 latent columns
    full = vae.decode(latents)
    strip = vae.decode(latents, columns=columns)
    # float32 convolutions over different widths round differently (up to ~1.4e-6 here)
    torch.testing.assert_close(strip, full[..., columns.start * 8 : columns.stop * 8], rtol=1e-5, atol=5e-6)


def test_decode_rejects_bad_columns(pair):
    vae, _ = pair
    with pytest.raises(ValueError, match="non-empty step-1 slice of 0..3"):
        vae.decode(torch.zeros(1, 16, 1, 2, 3), columns=slice(2, 2))
