"""Where a Generator's weights come from: a checkpoint folder's errors name the model, the missing file and what
the folder holds; unknown models and a preset of the wrong size are refused; every random preset fits every
model of its size."""

import pytest

from cosmos_ray.core.presets import RANDOM_PRESETS
from cosmos_ray.core.registry import MODEL_NAMES, check_source, get_model
from cosmos_ray.generator import Generator
from cosmos_ray.models.dit import DiTConfig
from cosmos_ray.models.text import TextEncoderConfig
from cosmos_ray.models.vae import VAEConfig

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # diffusers + numpy 2

POST_TRAINED_2B = "base/post-trained/81edfebe-bd6a-4039-8c1d-737df1a790bf_ema_bf16.pt"


@pytest.mark.parametrize(
    "layout, message",
    [
        ({}, f"model '2B/post-trained' needs {POST_TRAINED_2B} .*it holds: nothing"),
        (
            {"base/post-trained/dit_ema_bf16.pt": b"", "tokenizer.pth": b""},
            f"needs {POST_TRAINED_2B} \\(from Hugging Face nvidia/Cosmos-Predict2.5-2B\\).*it holds: base/, "
            "tokenizer.pth, base/post-trained/dit_ema_bf16.pt",
        ),
        ({POST_TRAINED_2B: b""}, "needs tokenizer.pth"),
        ({"transformer/config.json": b"{}"}, "has no vae/diffusion_pytorch_model.safetensors"),
    ],
)
def test_checkpoint_folder_errors_name_the_model_the_file_and_what_exists(tmp_path, layout, message):
    for name, content in layout.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    with pytest.raises(FileNotFoundError, match=message):
        Generator.from_pretrained(str(tmp_path), device="cpu")
    with pytest.raises(FileNotFoundError, match="neither a random preset .* nor an existing checkpoint folder"):
        Generator.from_pretrained(str(tmp_path / "absent"), device="cpu")


def test_unknown_model_and_mismatched_preset_are_rejected():
    with pytest.raises(ValueError, match="unknown model '7B/post-trained'; the official models are: 2B/pre-trained"):
        Generator.from_pretrained("tiny", model="7B/post-trained", device="cpu")
    with pytest.raises(ValueError, match="preset 'random-14B' has the released 14B shapes, but model '2B/distilled'"):
        Generator.from_pretrained("random-14B", model="2B/distilled", device="cpu")


@pytest.mark.parametrize("name", sorted(RANDOM_PRESETS))
@pytest.mark.parametrize("model", MODEL_NAMES)
def test_random_presets_fit_together(name, model):
    """A random preset combines with every model of its size (tiny: every model): its DiT reads exactly the
    text encoder's embedding width, its resolution fits VAE x patch."""
    preset = RANDOM_PRESETS[name]
    official = get_model(model)
    if preset.released_size not in (None, official.size):
        with pytest.raises(ValueError, match=f"preset '{name}' has the released {preset.released_size} shapes"):
            check_source(name, model)
        return
    check_source(name, model)
    dit_cfg = DiTConfig.of_model(official, preset.shapes)
    assert dit_cfg.crossattn_proj_in_channels == TextEncoderConfig.preset(preset.text).embed_dim
    stride = VAEConfig.preset(preset.vae).spatial_compression * dit_cfg.patch_spatial
    assert all(size % stride == 0 for size in preset.trained_resolution or official.trained_resolution)
