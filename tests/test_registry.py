"""The official model registry: names, checkpoints, nets, samplers, inference types, checkpoint folders."""

from __future__ import annotations

import pytest

from cosmos_ray.core.registry import DEFAULT_MODEL, MODEL_NAMES, MODELS, VAE_FILE, get_model
from cosmos_ray.core.spec import GenerationSpec, SpecError
from cosmos_ray.loading import locate_weights
from cosmos_ray.models.dit import DiTConfig
from cosmos_ray.sampling import FewStepSampler, GuidedSampler, SamplerConfig, get_sampler

# From the official checkpoint database (packages/cosmos-oss/cosmos_oss/checkpoints_predict2.py, 21c486b7):
# model name -> (Hugging Face repository, file).
OFFICIAL_FILES = {
    "2B/pre-trained": (
        "nvidia/Cosmos-Predict2.5-2B",
        "base/pre-trained/d20b7120-df3e-4911-919d-db6e08bad31c_ema_bf16.pt",
    ),
    "2B/post-trained": (
        "nvidia/Cosmos-Predict2.5-2B",
        "base/post-trained/81edfebe-bd6a-4039-8c1d-737df1a790bf_ema_bf16.pt",
    ),
    "2B/distilled": ("nvidia/Cosmos-Predict2.5-2B", "base/distilled/575edf0f-d973-4c74-b52c-69929a08d0a5_ema_bf16.pt"),
    "14B/pre-trained": (
        "nvidia/Cosmos-Predict2.5-14B",
        "base/pre-trained/54937b8c-29de-4f04-862c-e67b04ec41e8_ema_bf16.pt",
    ),
    "14B/post-trained": (
        "nvidia/Cosmos-Predict2.5-14B",
        "base/post-trained/e21d2a49-4747-44c8-ba44-9f6f9243715f_ema_bf16.pt",
    ),
    # MODEL_CHECKPOINTS[AUTO_MULTIVIEW] of cosmos_predict2/config.py (7e5ffc83), the database's entry for that uuid
    "2B/auto/multiview": (
        "nvidia/Cosmos-Predict2.5-2B",
        "auto/multiview/524af350-2e43-496c-8590-3646ae1325da_ema_bf16.pt",
    ),
    # packages/cosmos-oss/cosmos_oss/checkpoints_predict2.py lines 191-209 at 7e5ffc83
    "2B/robot/action-cond": (
        "nvidia/Cosmos-Predict2.5-2B",
        "robot/action-cond/38c6c645-7d41-4560-8eeb-6f4ddc0e6574_ema_bf16.pt",
    ),
    "2B/robot/multiview-agibot": (
        "nvidia/Cosmos-Predict2.5-2B",
        "robot/multiview-agibot/f740321e-2cd6-4370-bbfe-545f4eca2065_ema_bf16.pt",
    ),
}


def test_the_official_names_and_default():
    """docs/inference.md (09b3d4db) and config.py's ModelKey names; the default is 2B/post-trained."""
    assert MODEL_NAMES == (
        "2B/pre-trained",
        "2B/post-trained",
        "2B/distilled",
        "14B/pre-trained",
        "14B/post-trained",
        "2B/auto/multiview",
        "2B/robot/action-cond",
        "2B/robot/multiview-agibot",
    )
    assert DEFAULT_MODEL == "2B/post-trained"
    assert {name: (m.dit_file.repository, m.dit_file.path) for name, m in MODELS.items()} == OFFICIAL_FILES
    assert (VAE_FILE.repository, VAE_FILE.path) == ("nvidia/Cosmos-Predict2.5-2B", "tokenizer.pth")


def test_unknown_name_lists_the_official_ones():
    with pytest.raises(
        ValueError, match="unknown model '2B'; the official models are: 2B/pre-trained, 2B/post-trained"
    ):
        get_model("2B")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_net_of_each_model(name):
    model = get_model(name)
    cfg = DiTConfig.of_model(model)
    released = DiTConfig.preset(model.size)
    assert (cfg.model_channels, cfg.num_heads, cfg.num_blocks) == (
        (released.model_channels, released.num_heads, released.num_blocks)
    )
    assert (cfg.model_channels, cfg.num_heads, cfg.num_blocks) == {"2B": (2048, 16, 28), "14B": (5120, 40, 36)}[
        model.size
    ]
    # the distilled student: the base net config without the experiment's timestep_scale and fp32 strategy
    # (distill/configs/defaults/net.py: COSMOS_V1_2B_NET, use_wan_fp32_strategy=False, timestep_scale default 1.0)
    distilled = name == "2B/distilled"
    assert (cfg.timestep_scale, cfg.fp32_modulation) == ((1.0, False) if distilled else (0.001, True))
    tiny = DiTConfig.of_model(model, "tiny")
    assert (tiny.model_channels, tiny.timestep_scale, tiny.fp32_modulation) == (
        DiTConfig.preset("tiny").model_channels,
        cfg.timestep_scale,
        cfg.fp32_modulation,
    )
    # the multiview model: 29 frames per view (state_t 8) at RESOLUTIONS["720p"] of cosmos_predict2/multiview.py
    # the action-conditioned model: 13 frames (state_t 1 + 12 // 4) of the Bridge dataset's 256x320 video
    native = {"2B/auto/multiview": (8, (720, 1280)), "2B/robot/action-cond": (4, (256, 320))}
    assert (model.state_t, model.trained_resolution) == native.get(name, (24, (704, 1280)))


def test_samplers_follow_the_official_experiments():
    """2B post-trained: karras + conditional frames at 0.1 (rf_with_edm_ckpt); 2B pre-trained and both 14B
    checkpoints (registered under the 14B shift-5 experiment): shift 5, conditional frames at the noisy
    timestep; 2B distilled: the 4 TrigFlow times."""

    def sampler(name: str):
        return get_sampler(get_model(name).sampler_recipe)

    assert sampler("2B/post-trained") == GuidedSampler(SamplerConfig.preset("post-trained"))
    # 2B/auto/multiview: shift 5 (its experiment and generate_samples_from_batch), no karras, no
    # conditional_frame_timestep (buttercup2p5_rectified_flow.py at 7e5ffc83 sets neither), guided from the
    # unconditional pass (MultiviewVid2VidModelRectifiedFlow.get_velocity_fn_from_batch)
    for name in ("2B/pre-trained", "14B/pre-trained", "14B/post-trained"):
        assert sampler(name) == GuidedSampler(SamplerConfig.preset("pre-trained"))
    multiview = SamplerConfig.preset("multiview")
    assert sampler("2B/auto/multiview") == GuidedSampler(multiview)
    assert (multiview.schedule, multiview.conditional_frame_timestep, multiview.guidance_from) == (
        SamplerConfig.preset("pre-trained").schedule,
        None,
        "unconditional",
    )
    assert sampler("2B/distilled") == FewStepSampler()
    assert [
        (s.uses_guidance, s.holds_conditional_frames) for s in map(sampler, ("2B/post-trained", "2B/distilled"))
    ] == [
        (True, True),
        (False, False),
    ]
    assert get_model("14B/post-trained").experiment == get_model("14B/pre-trained").experiment


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("kind", ["text2world", "image2world", "video2world"])
def test_inference_types(name, kind):
    spec = GenerationSpec(inference_type=kind, name="s", prompt="p", input_path="/in/x.mp4")
    if kind not in get_model(name).inference_types:  # 2B/distilled: text2world only; the robot model: image2world
        with pytest.raises(SpecError, match=f"sample 's': field 'inference_type' {kind} is not supported by model"):
            get_model(name).check_spec(spec)
    else:
        get_model(name).check_spec(spec)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_autoregressive_mode_needs_a_model_that_conditions_on_frames(name):
    spec = GenerationSpec(
        inference_type="text2world", name="s", prompt="p", enable_autoregressive=True, num_output_frames=153
    )
    if name == "2B/distilled":
        with pytest.raises(SpecError, match="field 'enable_autoregressive' is not supported by model 2B/distilled"):
            get_model(name).check_spec(spec)
    elif name == "2B/robot/multiview-agibot":  # image2world only: the inference type is refused first
        with pytest.raises(SpecError, match="text2world is not supported by model 2B/robot/multiview-agibot"):
            get_model(name).check_spec(spec)
    else:
        get_model(name).check_spec(spec)


def test_a_merged_checkpoint_folder_gives_each_model_its_own_file(tmp_path):
    """The 2B and 14B downloads in one folder: each model picks its file by the official name."""
    for _, path in OFFICIAL_FILES.values():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(b"")
    (tmp_path / "tokenizer.pth").write_bytes(b"")
    for name, (_, path) in OFFICIAL_FILES.items():
        assert locate_weights(tmp_path, get_model(name)) == (tmp_path / path, tmp_path / "tokenizer.pth")


def test_a_missing_file_names_the_model_the_file_and_what_exists(tmp_path):
    (tmp_path / "base" / "pre-trained").mkdir(parents=True)
    (tmp_path / OFFICIAL_FILES["2B/pre-trained"][1]).write_bytes(b"")
    (tmp_path / "tokenizer.pth").write_bytes(b"")
    with pytest.raises(FileNotFoundError) as error:
        locate_weights(tmp_path, get_model("14B/pre-trained"))
    message = str(error.value)
    assert "model '14B/pre-trained' needs base/pre-trained/54937b8c" in message
    assert "from Hugging Face nvidia/Cosmos-Predict2.5-14B" in message
    assert "it holds: base/, tokenizer.pth, base/pre-trained/d20b7120" in message
