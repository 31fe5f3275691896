"""The official Cosmos-Predict2.5 base models by name (`--model`), and the files that hold their weights.

Each entry is what the official inference derives from its `--model` name: the checkpoint (its Hugging Face
file), the experiment it was trained or distilled under, hence the net's shapes and precision, the
sampling recipe, the latent frames it samples (`state_t`), its trained resolution and the inference types
it supports. Sources (official repository, commits in docs/reference-notes.md): the checkpoint database
`packages/cosmos-oss/cosmos_oss/checkpoints_predict2.py`, the model names of `cosmos_predict2/config.py`
and `docs/inference.md`, the experiments under `_src/predict2/configs/video2world/experiment/` and
`_src/predict2/distill/configs/`.

A checkpoint folder is the official downloads merged into one folder:

    CHECKPOINTS/
      base/pre-trained/<id>_ema_bf16.pt   the DiT of each model you use (nvidia/Cosmos-Predict2.5-2B or
      base/post-trained/<id>_ema_bf16.pt    nvidia/Cosmos-Predict2.5-14B; the id is the checkpoint's uuid,
      base/distilled/<id>_ema_bf16.pt       so the 2B and 14B files can sit side by side)
      tokenizer.pth                       the Wan2.1 VAE, shared by every model (nvidia/Cosmos-Predict2.5-2B)
      text_encoder/                       Reason1 (nvidia/Cosmos-Reason1-7B), Hugging Face layout
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cosmos_ray.core.action_spec import ACTION_MODEL
from cosmos_ray.core.agibot_spec import AGIBOT_MODEL, LATENT_FRAMES_PER_VIEW
from cosmos_ray.core.multiview_spec import MULTIVIEW_MODEL
from cosmos_ray.core.presets import RANDOM_PRESETS
from cosmos_ray.core.spec import INFERENCE_TYPES, SpecError
from cosmos_ray.core.spec_formats import Spec

REPOSITORY_2B = "nvidia/Cosmos-Predict2.5-2B"
REPOSITORY_14B = "nvidia/Cosmos-Predict2.5-14B"
TEXT_ENCODER_FOLDER = "text_encoder"  # nvidia/Cosmos-Reason1-7B, as downloaded (Hugging Face layout)
RESOLUTION_720P = (704, 1280)  # (H, W): every released model's trained resolution (720p, 16:9)


@dataclass(frozen=True)
class CheckpointFile:
    """A file of an official download: its Hugging Face repository and its path there (and in a folder)."""

    repository: str
    path: str

    def locate(self, folder: Path, model: str) -> Path:
        """The file inside `folder`; FileNotFoundError naming the model, the file and what the folder holds."""
        path = folder / self.path
        if path.is_file():
            return path
        present = [entry.name + ("/" if entry.is_dir() else "") for entry in sorted(folder.iterdir())]
        present += sorted(
            str(p.relative_to(folder)) for top in ("base", "auto", "robot") for p in (folder / top).rglob("*.pt")
        )
        raise FileNotFoundError(
            f"model {model!r} needs {self.path} (from Hugging Face {self.repository}) in checkpoint folder "
            f"{folder}, which has no such file; it holds: {', '.join(present) or 'nothing'}"
        )


VAE_FILE = CheckpointFile(REPOSITORY_2B, "tokenizer.pth")
FEW_STEP = "few-step"  # the sampler recipe of distilled checkpoints
BASE_FAMILY = "base"  # text/image/video to world with one DiT (`cosmos_ray.generator.Generator`)
MULTIVIEW_FAMILY = "multiview"  # seven driving cameras in one sequence (`cosmos_ray.multiview.MultiviewEngine`)
ACTION_FAMILY = "action-cond"  # robot episodes rolled out chunk by chunk (`cosmos_ray.robot_action.ActionEngine`)
CAMERA_MULTIVIEW_FAMILY = (
    "camera-multiview"  # views with camera rays (`cosmos_ray.robot_multiview.RobotMultiviewEngine`)
)


@dataclass(frozen=True)
class OfficialModel:
    """One official model: its family, checkpoint, net, sampler and what it can generate."""

    name: str  # the official `--model` name
    purpose: str  # one line for --help and the README
    size: str  # "2B" | "14B": the shapes of the released net (a DiTConfig preset)
    dit_file: CheckpointFile
    experiment: str  # the official experiment of the checkpoint (net overrides, sampler)
    sampler_recipe: str  # "post-trained" | "pre-trained" | FEW_STEP: its sampler in `cosmos_ray.sampling.SAMPLERS`
    inference_types: tuple[str, ...] = INFERENCE_TYPES
    timestep_scale: float = 0.001  # the net's `timestep_scale`
    fp32_modulation: bool = True  # the net's `use_wan_fp32_strategy`
    state_t: int = 24  # latent frames the model samples (93 video frames), per view
    views: int = 1  # views sampled as one sequence (the multiview models' cameras)
    trained_resolution: tuple[int, int] = RESOLUTION_720P  # (H, W) that resolution "none" means
    family: str = BASE_FAMILY  # which engine runs it (`cosmos_ray.families`)

    @property
    def few_step(self) -> bool:
        """A distilled model: a few unguided steps (one DiT pass each) instead of guided UniPC steps."""
        return self.sampler_recipe == FEW_STEP

    def check_spec(self, spec: Spec) -> None:
        """Raises SpecError (naming the sample and the field) if this model cannot generate `spec`: an
        inference type it does not support, or the autoregressive mode (whose windows after the first are
        conditioned on frames) for a model that generates text2world only."""
        if spec.inference_type not in self.inference_types:
            raise SpecError(
                repr(spec.name),
                "inference_type",
                f"{spec.inference_type} is not supported by model {self.name}, which supports only "
                f"{', '.join(self.inference_types)}",
            )
        if spec.enable_autoregressive and "video2world" not in self.inference_types:
            raise SpecError(
                repr(spec.name),
                "enable_autoregressive",
                f"is not supported by model {self.name}: windows after the first are conditioned on frames, "
                f"and the model supports only {', '.join(self.inference_types)}",
            )


_PRE_TRAINED_2B = "Stage-c_pt_4-reason_embeddings-v1p1-Index-26-Size-2B-Res-720-Fps-16-Note-T2V_high_sigma_loss_reweighted_1_1_rectified_flow_only_resume2"  # noqa: E501
_14B = "Stage-c_pt_4-reason_embeddings-v1p1-Index-43-Size-14B-Res-720-Fps-16_resume_from_reason1p1_rectified_flow_shift5_high_sigma"  # noqa: E501

MODELS: dict[str, OfficialModel] = {
    model.name: model
    for model in (
        OfficialModel(
            name="2B/pre-trained",
            purpose="2B pre-trained base, text/image/video to world; the starting point for post-training",
            size="2B",
            dit_file=CheckpointFile(REPOSITORY_2B, "base/pre-trained/d20b7120-df3e-4911-919d-db6e08bad31c_ema_bf16.pt"),
            experiment=_PRE_TRAINED_2B,
            sampler_recipe="pre-trained",
        ),
        OfficialModel(
            name="2B/post-trained",
            purpose="2B post-trained base, text/image/video to world (the default)",
            size="2B",
            dit_file=CheckpointFile(
                REPOSITORY_2B, "base/post-trained/81edfebe-bd6a-4039-8c1d-737df1a790bf_ema_bf16.pt"
            ),
            experiment="Stage-c_pt_4-Index-2-Size-2B-Res-720-Fps-16-Note-rf_with_edm_ckpt",
            sampler_recipe="post-trained",
        ),
        OfficialModel(
            name="2B/distilled",
            purpose="2B distilled to 4 steps without guidance (4 DiT passes per clip instead of 72), text2world only",
            size="2B",
            dit_file=CheckpointFile(REPOSITORY_2B, "base/distilled/575edf0f-d973-4c74-b52c-69929a08d0a5_ema_bf16.pt"),
            experiment="dmd2_trigflow_distill_cosmos_predict2_2B_bidirectional_TnI2V",
            sampler_recipe=FEW_STEP,
            inference_types=("text2world",),
            timestep_scale=1.0,
            fp32_modulation=False,
        ),
        OfficialModel(
            name="14B/pre-trained",
            purpose="14B pre-trained base, text/image/video to world",
            size="14B",
            dit_file=CheckpointFile(
                REPOSITORY_14B, "base/pre-trained/54937b8c-29de-4f04-862c-e67b04ec41e8_ema_bf16.pt"
            ),
            experiment=_14B,
            sampler_recipe="pre-trained",
        ),
        OfficialModel(
            name="14B/post-trained",
            purpose="14B post-trained base, text/image/video to world: the largest model",
            size="14B",
            dit_file=CheckpointFile(
                REPOSITORY_14B, "base/post-trained/e21d2a49-4747-44c8-ba44-9f6f9243715f_ema_bf16.pt"
            ),
            experiment=_14B,  # the official database registers the 14B post-trained checkpoint under this one
            sampler_recipe="pre-trained",
        ),
        # The 7-camera driving model (issue 30), 1.5.0 = 7e5ffc83: the checkpoint of `MODEL_CHECKPOINTS` in
        # `cosmos_predict2/config.py` (uuid 524af350, not the database's earlier 6b9d7548 of the same name) and its
        # entry in `checkpoints_predict2.py` (file, experiment);
        # the experiment of `predict2_multiview/configs/vid2vid/experiment/buttercup2p5_rectified_flow.py`
        # (state_t 8, shift 5, neither `use_kerras_sigma_at_inference` nor `conditional_frame_timestep` set, so
        # the base defaults: the shift-5 UniPC schedule with the conditional frames at the noisy timestep, as the
        # "pre-trained" recipe; `generate_samples_from_batch` of `multiview_vid2vid_model_rectified_flow.py`
        # passes shift 5.0, and its `get_velocity_fn_from_batch` guides from the unconditional pass,
        # uncond + g (cond - uncond): the "multiview" recipe); the resolution of `RESOLUTIONS["720p"]` in
        # `cosmos_predict2/multiview.py`.
        OfficialModel(
            name=MULTIVIEW_MODEL,
            purpose="2B driving model: seven synchronized cameras (29 frames each at 30 fps) from one prompt",
            size="2B",
            dit_file=CheckpointFile(REPOSITORY_2B, "auto/multiview/524af350-2e43-496c-8590-3646ae1325da_ema_bf16.pt"),
            experiment="buttercup_predict2p5_2b_7views_res720p_fps30_t8_joint_alpamayo1capviewprefix_allcapsviewprefix_29frames_nofps_uniform_dropoutt0",  # noqa: E501
            sampler_recipe="multiview",
            state_t=8,
            views=7,
            trained_resolution=(720, 1280),
            family=MULTIVIEW_FAMILY,
        ),
        # The action-conditioned Bridge robot model (issue 31), 1.5.0 = 7e5ffc83: the checkpoint of `MODEL_CHECKPOINTS`
        # in `cosmos_predict2/config.py` and its entry in `checkpoints_predict2.py` (file, experiment); the experiment
        # of `predict2/action/configs/action_conditioned/experiment/exp_2B_action_conditioned_rectify_flow.py`
        # composes state_t 4 (1 + 12 // 4), shift 5, no karras sigmas and conditional_frame_timestep -1 (the
        # "pre-trained" recipe) and trains on 256x320 video (its dataset's video_size).
        OfficialModel(
            name=ACTION_MODEL,
            purpose="2B robot model (Bridge): an episode's start frame rolled out along its actions, 12 per chunk",
            size="2B",
            dit_file=CheckpointFile(
                REPOSITORY_2B, "robot/action-cond/38c6c645-7d41-4560-8eeb-6f4ddc0e6574_ema_bf16.pt"
            ),
            experiment="cosmos_predict2p5_2B_reason_embeddings_action_conditioned_rectified_flow_bridge_13frame_256x320",
            sampler_recipe="pre-trained",
            state_t=4,
            trained_resolution=(256, 320),
            family=ACTION_FAMILY,
        ),
        # The 3-camera AgiBot robot model, 1.5.0 = 7e5ffc83: `MODEL_CHECKPOINTS` of `cosmos_predict2/config.py` (uuid
        # f740321e) and its entry in `checkpoints_predict2.py` (file, experiment); the experiment of
        # `predict2/camera/configs/multiview_camera/experiment/exp_2b.py` composes `state_t` 24 (per view: three
        # views of 93 frames), `conditional_frame_timestep` 0.1, and the frameinit model's
        # `generate_samples_from_batch` sets the shift-5 schedule without Karras sigmas: the "frameinit" recipe.
        OfficialModel(
            name=AGIBOT_MODEL,
            purpose="2B robot model: three cameras (head, two hands; 93 frames each) from their first frames and poses",
            size="2B",
            dit_file=CheckpointFile(
                REPOSITORY_2B, "robot/multiview-agibot/f740321e-2cd6-4370-bbfe-545f4eca2065_ema_bf16.pt"
            ),
            experiment="multicamera_video2video_rectified_flow_2b_res_720_fps16_s3_agibot_frameinit",
            sampler_recipe="frameinit",
            inference_types=("image2world",),
            state_t=LATENT_FRAMES_PER_VIEW,
            views=3,
            family=CAMERA_MULTIVIEW_FAMILY,
        ),
    )
}
MODEL_NAMES = tuple(MODELS)
DEFAULT_MODEL = "2B/post-trained"


def get_model(name: str) -> OfficialModel:
    """The official model `name`; ValueError naming it and the official names otherwise."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; the official models are: {', '.join(MODELS)}")
    return MODELS[name]


def register_model(model: OfficialModel) -> OfficialModel:
    """Make `model` known by its name (to `--model`, specs' checks and the engines); ValueError if the name
    is taken. The official models above are registered by being listed; a new family's models use this."""
    if model.name in MODELS:
        raise ValueError(f"model {model.name!r} is already registered")
    MODELS[model.name] = model
    return model


def check_source(source: str, model: str) -> None:
    """ValueError if `model` is not an official name, or `source` is a random preset with the released shapes
    of another model size (`tiny` goes with every model; a checkpoint folder is checked when it loads)."""
    official = get_model(model)
    preset = RANDOM_PRESETS.get(source)
    if preset is not None and preset.released_size not in (None, official.size):
        matching = [name for name, p in RANDOM_PRESETS.items() if p.released_size in (None, official.size)]
        raise ValueError(
            f"preset {source!r} has the released {preset.released_size} shapes, but model {model!r} is a "
            f"{official.size} model: use preset {' or '.join(map(repr, matching))}, or a "
            f"{preset.released_size} model"
        )


def models_help() -> str:
    """The models, one per line, for --help."""
    return "\n".join(f"  {model.name}: {model.purpose}" for model in MODELS.values())
