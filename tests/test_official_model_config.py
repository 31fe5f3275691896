"""cosmos-ray's model registry, DiT shapes, sampler recipes and spec defaults against the values the official
configuration system composes (tests/golden/model_config.json, written by tools/official_golden.py from the
official config: `make_config()` + each checkpoint's experiment; see docs/reference-notes.md). Nothing here
restates an official constant: a change on either side fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cosmos_ray.core.registry import BASE_FAMILY, DEFAULT_MODEL, FEW_STEP, MODELS, get_model
from cosmos_ray.core.spec import GenerationSpec
from cosmos_ray.models.dit import DiTConfig
from cosmos_ray.sampling.few_step import FewStepConfig
from cosmos_ray.sampling.guided import SamplerConfig

GOLDEN = json.loads((Path(__file__).resolve().parent / "golden" / "model_config.json").read_text())
OFFICIAL_MODELS = GOLDEN["models"]

# cosmos-ray's DiTConfig field <- the official net config's field
DIT_FIELDS = {
    "model_channels": "model_channels",
    "num_blocks": "num_blocks",
    "num_heads": "num_heads",
    "in_channels": "in_channels",
    "out_channels": "out_channels",
    "patch_spatial": "patch_spatial",
    "patch_temporal": "patch_temporal",
    "adaln_lora_dim": "adaln_lora_dim",
    "max_img_h": "max_img_h",
    "max_img_w": "max_img_w",
    "max_frames": "max_frames",
    "rope_h_extrapolation_ratio": "rope_h_extrapolation_ratio",
    "rope_w_extrapolation_ratio": "rope_w_extrapolation_ratio",
    "rope_t_extrapolation_ratio": "rope_t_extrapolation_ratio",
    "rope_enable_fps_modulation": "rope_enable_fps_modulation",
    "crossattn_proj_in_channels": "crossattn_proj_in_channels",
    "crossattn_emb_channels": "crossattn_emb_channels",
    "timestep_scale": "timestep_scale",
    "fp32_modulation": "use_wan_fp32_strategy",
}


def test_every_official_base_model_is_registered_under_its_name_and_experiment():
    # the golden holds the base models; the multiview model's net is tests/golden/multiview.json's
    assert set(OFFICIAL_MODELS) == {name for name, model in MODELS.items() if model.family == BASE_FAMILY}
    assert DEFAULT_MODEL == GOLDEN["default_model"]
    for name, official in OFFICIAL_MODELS.items():
        model = get_model(name)
        assert model.experiment == official["experiment"], name
        assert official["uuid"] in model.dit_file.path, name


@pytest.mark.parametrize("name", sorted(OFFICIAL_MODELS))
def test_dit_config_is_the_official_net(name):
    official = OFFICIAL_MODELS[name]
    net = official["net"]
    assert official["net_class"].endswith("MinimalV1LVGDiT")  # + condition-mask channel, timestep_scale
    # the layout cosmos-ray implements: RoPE, AdaLN-LoRA, padding-mask channel, Reason1 projection, no
    # extra per-block position embedding
    assert net["pos_emb_cls"] == "rope3d" and net["use_adaln_lora"] and net["concat_padding_mask"]
    assert net["use_crossattn_projection"] and not net["extra_per_block_abs_pos_emb"]
    ours = DiTConfig.of_model(get_model(name))
    for field, official_field in DIT_FIELDS.items():
        if official_field in net:  # the distilled net leaves crossattn_emb_channels at the class default
            assert getattr(ours, field) == net[official_field], f"{name}: {field}"
    if "crossattn_emb_channels" not in net:
        assert ours.crossattn_emb_channels == OFFICIAL_MODELS["2B/post-trained"]["net"]["crossattn_emb_channels"]


@pytest.mark.parametrize("name", sorted(OFFICIAL_MODELS))
def test_clip_length_resolution_and_sampler_recipe_are_the_official_experiments(name):
    official = OFFICIAL_MODELS[name]["model"]
    model = get_model(name)
    assert model.state_t == official["state_t"]
    assert list(model.trained_resolution) == OFFICIAL_MODELS[name]["trained_resolution"]
    if model.sampler_recipe == FEW_STEP:
        assert FewStepConfig().trigflow_times == pytest.approx(official["selected_sampling_time"], rel=0, abs=1e-15)
        assert official["sigma_data"] == 1.0  # the few-step sampler's formulas assume sigma_data 1
        return
    config = SamplerConfig.preset(model.sampler_recipe)
    assert (config.schedule.kind == "karras") == official["use_kerras_sigma_at_inference"]
    official_timestep = official["conditional_frame_timestep"]
    assert config.conditional_frame_timestep == (official_timestep if official_timestep >= 0 else None)


def test_spec_defaults_are_the_official_inference_defaults():
    defaults = GOLDEN["inference_defaults"]
    fields = GenerationSpec.model_fields
    for name in ("seed", "guidance", "num_steps", "resolution"):
        assert fields[name].default == defaults[name], name
    assert fields["fps"].default == GOLDEN["output_fps"]  # the official writer's frame rate
    assert fields["negative_prompt"].default == GOLDEN["negative_prompt"]
