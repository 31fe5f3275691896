"""Fixture `model_config`: the settings of every official base model as the official configuration system
composes them (`make_config()` + `experiment=<the checkpoint's experiment>`, `~data_train`, as
`Video2WorldInference` loads a model), and the inference defaults of `cosmos_predict2/config.py` and
`cosmos_predict2/inference.py`. cosmos-ray's tests compare its registry, DiT shapes, sampler recipes and spec
defaults with these values instead of restating them. `official_experiment_config` is also how the DiT and
end-to-end pieces build the official net."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from tools.golden.harness import Official, write

BASE_CONFIG = "cosmos_predict2/_src/predict2/configs/video2world/config.py"
DISTILLED_CONFIG = "cosmos_predict2/_src/predict2/distill/configs/registry_predict2p5.py"
NET_FIELDS = (
    "model_channels",
    "num_blocks",
    "num_heads",
    "in_channels",
    "out_channels",
    "patch_spatial",
    "patch_temporal",
    "adaln_lora_dim",
    "max_img_h",
    "max_img_w",
    "max_frames",
    "rope_h_extrapolation_ratio",
    "rope_w_extrapolation_ratio",
    "rope_t_extrapolation_ratio",
    "rope_enable_fps_modulation",
    "extra_per_block_abs_pos_emb",
    "concat_padding_mask",
    "use_adaln_lora",
    "use_crossattn_projection",
    "crossattn_proj_in_channels",
    "crossattn_emb_channels",
    "timestep_scale",
    "use_wan_fp32_strategy",
    "pos_emb_cls",
)
MODEL_FIELDS = (
    "state_t",
    "resolution",
    "precision",
    "conditional_frame_timestep",
    "use_kerras_sigma_at_inference",
    "sigma_data",
    "selected_sampling_time",
)


def official_experiment_config(official: Official, experiment: str, config_file: str = BASE_CONFIG):
    """The official config of `experiment` (a frozen-free copy), composed as the official inference does."""
    helper = official.module("imaginaire.utils.config_helper")
    module_name = helper.get_config_module(config_file).removeprefix("cosmos_predict2._src.")
    config = official.module(module_name).make_config()
    return helper.override(config, ["--", f"experiment={experiment}", "~data_train"])


def _plain(value):
    """A config value as JSON: numbers, strings, booleans, lists of them; None for anything else."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return [_plain(item) for item in value]
    return None


def _net_target(net) -> str:
    target = net["_target_"]
    return target if isinstance(target, str) else f"{target.__module__}.{target.__qualname__}"


def _literal_keyword(path: Path, function: str, keyword: str):
    """The constant value of `keyword=` in the calls of `function` in a source file (read, not run)."""
    values = {
        ast.literal_eval(kw.value)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == function
        for kw in node.keywords
        if kw.arg == keyword
    }
    if len(values) != 1:
        raise SystemExit(f"{path}: expected one {keyword}= value in the calls of {function}, found {values}")
    return values.pop()


def model_config(official: Official, out: Path) -> None:
    release = importlib.import_module("cosmos_predict2.config")
    official.used.add(str(release.__file__))
    v2w = official.module("predict2.datasets.utils")
    models = {}
    for key, checkpoint in release.MODEL_CHECKPOINTS.items():
        if key.variant != release.ModelVariant.BASE:  # multiview, action-conditioned: not cosmos-ray models
            continue
        distilled = getattr(key, "distilled", False)
        config = official_experiment_config(
            official, checkpoint.experiment, DISTILLED_CONFIG if distilled else BASE_CONFIG
        )
        model = config.model.config
        net = model.net
        height, width = v2w.VIDEO_RES_SIZE_INFO[model.resolution]["9,16"]  # as get_video_height_width reads it
        models[key.name] = {
            "experiment": checkpoint.experiment,
            "uuid": checkpoint.uuid,
            "config_file": DISTILLED_CONFIG if distilled else BASE_CONFIG,
            "net_class": _net_target(net),
            "net": {field: _plain(net[field]) for field in NET_FIELDS if field in net},
            "model": {field: _plain(model[field]) for field in MODEL_FIELDS if field in model},
            "trained_resolution": [int(height), int(width)],
        }
        print(f"composed {key.name}: {checkpoint.experiment}")
    arguments = release.InferenceArguments
    inference = official.checkout / "cosmos_predict2" / "inference.py"
    official.used.add(str(inference))
    content = {
        "models": models,
        "default_model": release.DEFAULT_MODEL_KEY.name,
        "inference_defaults": {
            name: arguments.model_fields[name].default for name in ("seed", "guidance", "num_steps", "resolution")
        },
        "negative_prompt": release.DEFAULT_NEGATIVE_PROMPT,
        "output_fps": _literal_keyword(inference, "save_img_or_video", "fps"),
    }
    write(out, "model_config", official, content)
