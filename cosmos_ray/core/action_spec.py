"""The action-conditioned robot spec: one episode of the official action-conditioned inference of
`2B/robot/action-cond` (the Bridge model).

`ActionSpec` is the official `ActionConditionedInferenceArguments` (cosmos_predict2/action_conditioned_config.py
at 7e5ffc83, the 1.5.0 tree of the fork kechenliuuu3469/cosmos-predict2.5) with its defaults, plus the one field a
manifest row needs: which episode. The official script takes a folder (`input_root` / `input_json_sub_folder`),
globs its annotation JSONs and runs `[start:end]` of them; here one spec is one episode, named by
`cosmos_ray_annotation` (the annotation file: a name in `{input_root}/{input_json_sub_folder}/`, or a path or URL
of its own), and `episode_specs` expands an official folder spec into one spec per episode (the manifest maker's
rows). The annotation files are the official ones, unchanged (`cosmos_ray.core.robot_episode` reads them).

Fields and what the official inference (cosmos_predict2/action_conditioned.py at 7e5ffc83) does with them:
- `name`, `prompt` / `prompt_path` (`prompt` wins; none: the empty prompt), `negative_prompt` (the default
  negative prompt), `guidance` 7 (0..7; the example's inference_params.json sets 0), `num_steps` 35;
- `input_root`: where the annotations' video paths are relative to; `input_json_sub_folder`: the annotations'
  folder under it (both required, as official; a relative `input_root` is resolved against the spec file's folder,
  where the official script resolves it against its working directory);
- `chunk_size` 12: actions per chunk; each chunk generates `chunk_size + 1` frames (a multiple of 4 here: the
  VAE makes one latent frame of 4 pixel frames after the first; the released model was trained on 12);
- `resolution` "none" (the start frame's own size) or "H,W" (the start frame resized, Lanczos);
- `camera_id` 0: which of the annotation's `videos` (an integer, or a string of digits, as official);
- `fps_downsample_ratio` 1, `gripper_scale` 1.0, `gripper_key` "continuous_gripper_state", `state_key` "state",
  `action_scaler` 20.0: how actions are derived from the states (`cosmos_ray.core.robot_episode`);
- `single_chunk` false: stop after the first chunk; `start_frame_idx` 0: the video frame that starts the rollout
  and the first action of it; `save_fps` 20: the written video's frame rate;
- `num_latent_conditional_frames` 1 (0..2): latent frames of each chunk's input held clean;
- `seed` 0: read by nothing officially (chunk i is seeded with its first action's index); here chunk i is seeded
  with `seed + i`, the official seeds for the default 0, so that `num_generations` makes different videos;
- read by nothing per episode, checked and left out of the spec JSON and the sample id: `save_root` (outputs go to
  the job's output), `start` / `end` (which episodes of the folder: read by `episode_specs`; a row is one
  episode), `reverse` (read by nothing);
- `use_quat` must be false (the official derivation then makes 8 values per action and fails to scale them; the
  model takes 7), `action_load_fn` must be the official default (no code is imported from a spec).
Plus the fields every format has: `num_generations`, `cosmos_ray_checkpoint`, `cosmos_ray_loras`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from cosmos_ray.core.robot_episode import read_annotation
from cosmos_ray.core.spec import DEFAULT_NEGATIVE_PROMPT
from cosmos_ray.core.spec_base import (
    CONDITIONING_LATENT_FRAMES,
    TEMPORAL_COMPRESSION,
    Checkpoint,
    Fps,
    Guidance,
    Loras,
    NumGenerations,
    NumSteps,
    Prompt,
    SampleName,
    Seed,
    SpecBase,
    Work,
    input_digest,
    normalize_resolution,
)
from cosmos_ray.core.spec_errors import SpecError
from cosmos_ray.core.storage import Storage, StorageError, join_url, resolve_url, url_scheme

if TYPE_CHECKING:
    from cosmos_ray.core.registry import OfficialModel

ACTION_MODEL = "2B/robot/action-cond"  # the official model name
DEFAULT_ACTION_LOAD_FN = "cosmos_predict2.action_conditioned.load_default_action_fn"

# Official fields that select episodes of a folder or name outputs: checked, then reset to their defaults.
READ_BY_NOTHING = ("save_root", "start", "end", "reverse")

# The official base-model fields the action-conditioned format does not have.
BASE_ONLY_FIELDS = (
    "inference_type",
    "input_path",
    "num_output_frames",
    "num_conditional_frames",
    "fps",
    "enable_autoregressive",
    "chunk_overlap",
    "cosmos_ray_num_frames",
)


def _camera_index(value: Any) -> Any:
    """Official: a string of digits is an index too."""
    return int(value) if isinstance(value, str) and value.isdigit() else value


def _number(value: Any) -> Any:
    """JSON numbers for a float field: an integer is a number (not a bool)."""
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


Number = Annotated[float, BeforeValidator(_number)]


class ActionSpec(SpecBase):
    """One robot episode to roll out: the official action-conditioned inference arguments for one annotation."""

    REFUSED_FIELDS = {
        field: f"belongs to the base models' format, not to the action-conditioned format of model {ACTION_MODEL}; "
        "leave it out (the episode's annotation file gives the start frame and the actions)"
        for field in BASE_ONLY_FIELDS
    }

    name: SampleName
    prompt: Prompt = ""
    negative_prompt: str = Field(DEFAULT_NEGATIVE_PROMPT, description="The prompt of the unconditional pass.")
    seed: Seed = Field(0, description="cosmos-ray: chunk i (its first action's index) uses seed + i (official: i).")
    guidance: Guidance = 7
    input_root: str = Field(description="The folder the annotations' video paths are relative to (path or URL).")
    input_json_sub_folder: str = Field(description="The annotations' folder under input_root.")
    cosmos_ray_annotation: str = Field(
        description="cosmos-ray: this episode's annotation JSON (official format): a file name in "
        "{input_root}/{input_json_sub_folder}/, or a path or URL."
    )
    save_root: str = Field("results/action2world", description="Official; outputs go to the job's output here.")
    chunk_size: int = Field(12, ge=TEMPORAL_COMPRESSION, description="Actions per chunk (a multiple of 4).")
    resolution: str = Field("none", description='"none": the start frame\'s size; or "H,W" (multiples of 16).')
    camera_id: Annotated[int, BeforeValidator(_camera_index)] = Field(
        0, ge=0, description="Which of the annotation's videos starts the rollout."
    )
    start: int = Field(0, description="Official: first episode of the folder; a spec is one episode (ignored).")
    end: int = Field(100, description="Official: end of the episodes of the folder (ignored).")
    fps_downsample_ratio: int = Field(1, ge=1, description="Every how-many-th state the actions are taken from.")
    gripper_scale: Number = 1.0
    gripper_key: str = "continuous_gripper_state"
    state_key: str = "state"
    num_steps: NumSteps = 35
    reverse: bool = Field(False, description="Official, read by nothing (ignored).")
    single_chunk: bool = Field(False, description="Generate the first chunk only.")
    start_frame_idx: int = Field(0, ge=0, description="The video frame that starts the rollout, and its first action.")
    save_fps: Fps = 20
    num_latent_conditional_frames: int = Field(1, ge=0, le=2, description="Latent frames of each chunk held clean.")
    action_scaler: Number = 20.0
    use_quat: bool = Field(False, description="Must be false: the model takes Euler angles (7 values per action).")
    action_load_fn: str = DEFAULT_ACTION_LOAD_FN
    num_generations: NumGenerations = 1
    cosmos_ray_checkpoint: Checkpoint = None
    cosmos_ray_loras: Loras = None

    @field_validator("resolution")
    @classmethod
    def _normalize_resolution(cls, value: str) -> str:
        return normalize_resolution(value)

    @field_validator(*READ_BY_NOTHING)
    @classmethod
    def _read_by_nothing(cls, value: Any, info: ValidationInfo) -> Any:
        return cls.model_fields[str(info.field_name)].default

    @field_validator("chunk_size")
    @classmethod
    def _whole_latent_frames(cls, value: int) -> int:
        if value % TEMPORAL_COMPRESSION:
            raise ValueError(
                f"must be a multiple of {TEMPORAL_COMPRESSION} (a chunk makes chunk_size + 1 frames, 1 + 4k for the "
                f"VAE; the released model was trained on 12), got {value}"
            )
        return value

    @field_validator("use_quat")
    @classmethod
    def _euler_only(cls, value: bool) -> bool:
        if value:
            raise ValueError(
                f"must be false for model {ACTION_MODEL}: it takes relative Euler angles (7 values per action); "
                "the official derivation with quaternions makes 8 and fails to scale them"
            )
        return value

    @field_validator("action_load_fn")
    @classmethod
    def _official_loader(cls, value: str) -> str:
        if value != DEFAULT_ACTION_LOAD_FN:
            raise ValueError(
                f"must be the official {DEFAULT_ACTION_LOAD_FN!r}: cosmos-ray imports no code named by a spec "
                "(derive other actions into the annotation's states, or leave the field out)"
            )
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> ActionSpec:
        self.check_seeds()
        for field in ("input_root", "input_json_sub_folder", "cosmos_ray_annotation"):
            if not getattr(self, field).strip():
                raise SpecError(repr(self.name), field, "must not be empty")
        if not self.cosmos_ray_annotation.endswith(".json"):
            raise SpecError(
                repr(self.name),
                "cosmos_ray_annotation",
                f"must name an annotation .json file (as the official folder glob finds them), got "
                f"{self.cosmos_ray_annotation!r}",
            )
        return self

    @classmethod
    def _resolve_inputs(cls, fields: dict[str, Any], base_dir: str | None) -> None:
        if isinstance(fields.get("input_root"), str) and fields["input_root"]:
            fields["input_root"] = resolve_url(fields["input_root"], base_dir)

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-ready dict (`SpecBase.to_dict`), without those read by nothing per episode."""
        data = super().to_dict()
        for key in READ_BY_NOTHING:
            del data[key]
        return data

    def _id_content(self) -> dict[str, Any]:
        """The annotation counts by its content where it is a local file (its video by the name it gives)."""
        content = super()._id_content()
        for key in ("input_root", "input_json_sub_folder", "cosmos_ray_annotation"):
            del content[key]
        content["annotation"] = input_digest(self.annotation_url)
        return content

    def work(self, model: OfficialModel) -> Work:
        """One chunk of `chunk_size + 1` frames at `resolution` ("none": the start frame's size, counted at the
        model's trained one). The chunks are as many as the episode's actions fill, known once its annotation is
        read; a spec asks for one at least (exactly one with `single_chunk`), which is what is counted here."""
        return Work(
            windows=1,
            latent_frames=self.chunk_size // TEMPORAL_COMPRESSION + 1,
            height_width=self.height_width or model.trained_resolution,
            frames={"chunk_size": self.chunk_size + 1},
            resolution_field="resolution",
        )

    # --- what the engine and the outputs read -----------------------------------------------------------------

    @property
    def annotation_url(self) -> str:
        """The episode's annotation file: `cosmos_ray_annotation` under `{input_root}/{input_json_sub_folder}/`
        unless it is a URL or an absolute path."""
        return resolve_url(self.cosmos_ray_annotation, join_url(self.input_root, self.input_json_sub_folder))

    def input_urls(self) -> dict[str, str]:
        """The episode's annotation (the video it names is checked when the episode is read)."""
        return {"cosmos_ray_annotation": self.annotation_url}

    @classmethod
    def expand_official(
        cls, data: Any, *, source: str, base_dir: str | None, storage: Storage
    ) -> list[tuple[Any, str]]:
        """The official folder spec as one spec per episode (`episode_specs`)."""
        return episode_specs(data, source=source, base_dir=base_dir, storage=storage)

    def check_input_files(self, storage: Storage) -> None:
        """The annotation read and its actions derived (`read_annotation`; `EpisodeError` naming the episode, the
        field and the frame); the video is read at generation."""
        read_annotation(self, storage=storage)

    def video_url(self, relative: str) -> str:
        """An annotation's video path, relative to `input_root` as official (a URL stays as it is)."""
        return relative if url_scheme(relative) is not None else resolve_url(relative, self.input_root)

    @property
    def height_width(self) -> tuple[int, int] | None:
        """(H, W) of `resolution`, or None for the start frame's own size."""
        if self.resolution == "none":
            return None
        height, width = self.resolution.split(",")
        return int(height), int(width)

    @property
    def fps(self) -> int:
        """Frame rate of the written video (`save_fps`)."""
        return self.save_fps

    @property  # type: ignore[misc]  # derived from num_latent_conditional_frames, not a field here
    def inference_type(self) -> str:
        """What conditions each chunk, in the base models' terms (0 / 1 / 2 latent frames held clean)."""
        return {frames: kind for kind, frames in CONDITIONING_LATENT_FRAMES.items()}[self.num_latent_conditional_frames]

    @property
    def enable_autoregressive(self) -> bool:
        """The base format's long-video mode: not a field here (chunks follow the actions)."""
        return False


def episode_specs(data: Any, *, source: str, base_dir: str | None, storage: Storage) -> list[tuple[Any, str]]:
    """The episodes an official action-conditioned spec object stands for, each as a spec object with its source.

    Official (cosmos_predict2/action_conditioned.py at 7e5ffc83, lines 265-279): the episodes are the annotation
    files `*.json` directly in `{input_root}/{input_json_sub_folder}`, of which the run takes `[start:end]` (a Python
    slice: negative values count from the end, an `end` past the last file stops at it). Here the files are sorted
    by name (the official glob lists them in the file system's order). Episode `f.json` is the object with
    `cosmos_ray_annotation` "f.json" and `name` "{name}/f" (the official output is `f_chunk.mp4`), from source
    "{source}:{input_json_sub_folder}/f.json". `input_root` is any path or fsspec URL (relative: against `base_dir`).

    An object that names `cosmos_ray_annotation` is one episode already, and one that lacks a string `name`,
    `input_root` or `input_json_sub_folder` is returned as it is, for the parser to name what is wrong. Raises
    `SpecError` naming the spec's source and the field: `start` / `end` not integers, no annotation in the folder,
    or a slice that selects none.
    """
    if not isinstance(data, dict) or "cosmos_ray_annotation" in data:
        return [(data, source)]
    name, root, folder = (data.get(key) for key in ("name", "input_root", "input_json_sub_folder"))
    if not (isinstance(name, str) and isinstance(root, str) and isinstance(folder, str)) or not (
        name.strip() and root.strip() and folder.strip()
    ):
        return [(data, source)]
    sample = f"{name!r} ({source})"
    start, end = (data.get(field, ActionSpec.model_fields[field].default) for field in ("start", "end"))
    for field, value in (("start", start), ("end", end)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise SpecError(
                sample, field, f"must be an integer (the episodes are [start:end] of the folder's), got {value!r}"
            )
    annotation_folder = join_url(resolve_url(root, base_dir), folder)
    try:
        annotations = storage.glob_urls(join_url(annotation_folder, "*.json"))
    except StorageError as error:
        raise SpecError(sample, "input_json_sub_folder", f"cannot list the annotations: {error}") from None
    if not annotations:
        raise SpecError(
            sample,
            "input_json_sub_folder",
            f"no annotation files (*.json) in {annotation_folder} (input_root / input_json_sub_folder); or name one "
            "episode's annotation in cosmos_ray_annotation",
        )
    chosen = annotations[start:end]
    if not chosen:
        raise SpecError(
            sample,
            "start",
            f"start {start} and end {end} select none of the {len(annotations)} annotation files in "
            f"{annotation_folder} (the episodes are [start:end] of them, sorted by name)",
        )
    episodes = []
    for url in chosen:
        file_name = url.rstrip("/").rsplit("/", 1)[-1]
        episode = {**data, "name": f"{name}/{file_name.removesuffix('.json')}", "cosmos_ray_annotation": file_name}
        episodes.append((episode, f"{source}:{folder.rstrip('/')}/{file_name}"))
    return episodes
