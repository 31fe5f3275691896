"""The multiview spec: one sample of the official inference JSON of the 7-camera driving model
(`2B/auto/multiview`).

`MultiviewSpec` is the official `MultiviewInferenceArgumentsWithInputPaths` (cosmos_predict2/multiview_config.py,
1.5.0 = commit 7e5ffc83 of the fork kechenliuuu3469/cosmos-predict2.5; the same in nvidia-cosmos/cosmos-predict2.5
at 682a4f39), with its defaults: `inference_type`, `name`, `prompt` or `prompt_path` (`prompt` wins), `seed` 0,
`guidance` 3 (0..7), `num_steps` 35, `fps` 30, `stack_mode` "time" | "height", `control_weight` 1.0 (0..1),
`enable_autoregressive` false, `num_chunks` 2, `chunk_overlap` 1, and one object per camera
(`front_wide`, `rear`, `rear_left`, `rear_right`, `cross_left`, `cross_right`, `front_tele`) holding
`{"video_path": ...}`. Plus the fields of our own that every format has: `num_generations`,
`cosmos_ray_checkpoint`, `cosmos_ray_loras` (`cosmos_ray.core.spec_base`).

It also reads the older official format (cosmos_predict2/multiview_config.py at 6b54ba6, the first release):
no `inference_type` but `num_input_frames` (0..2, default 2: the latent frames each view is conditioned on,
which is what the inference type means today: text2world 0, image2world 1, video2world 2) and `n_views`
(default 7; the model generates the seven cameras, so only 7 is accepted); `prompt_path` wins over `prompt`
there; it had no `name` either (the official script wrote `output_0.mp4`), so a spec without one is named
"output_0". Such a spec is recognised by either field and becomes the current format, so it has the sample id of
the same spec written in the current format.

What the official code does with the fields, and what cosmos-ray keeps of it:
- every camera's video is read for image2world / video2world (their first 1 / 2 latent frames condition the
  video), so each of the seven `video_path`s is required then; text2world ignores them (the official loader
  still opens them; here they are optional, left out of the spec JSON and of the sample id);
- an input video's frame rate must be a multiple of `fps` (the frames are read every that-many); `fps` is also
  the written video's;
- `control_weight` is read by nothing: it is checked (0..1) and left out of the spec JSON and the sample id;
- `negative_prompt` must be null (the official field is `None`);
- the autoregressive mode makes `num_chunks` chunks of 29 frames per view, chunk k > 0 conditioned on
  `chunk_overlap` latent frames taken from the previous chunk's last `chunk_overlap` frames, all with the same
  seed; without the mode `num_chunks` and `chunk_overlap` are ignored, reset and left out of the spec JSON.

The views are one sequence in the order of `CAMERAS` (the official `camera_keys` of cosmos_predict2/multiview.py
at 7e5ffc83; `VIEW_INDEX_DICT` of multiview_config.py at 6b54ba6), whatever the order of the JSON's objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from cosmos_ray.core.media import VIDEO_EXTENSIONS
from cosmos_ray.core.spec_base import (
    CONDITIONING_LATENT_FRAMES,
    Checkpoint,
    Fps,
    Guidance,
    InferenceType,
    Loras,
    NumGenerations,
    NumSteps,
    Prompt,
    SampleName,
    Seed,
    SpecBase,
    Work,
    input_digest,
)
from cosmos_ray.core.spec_errors import SpecError
from cosmos_ray.core.spec_rules import check_input_path
from cosmos_ray.core.storage import resolve_url

if TYPE_CHECKING:
    from cosmos_ray.core.registry import OfficialModel

MULTIVIEW_MODEL = "2B/auto/multiview"  # the official model name

# The sequence order of the views (view index 0..6).
CAMERAS = ("front_wide", "cross_right", "rear_right", "rear", "rear_left", "cross_left", "front_tele")

# Latent frames of one view (the experiment's `state_t`, buttercup2p5_rectified_flow.py at 7e5ffc83) and the
# video frames they decode to (the Wan VAE: 1 + 4 (t - 1)).
LATENT_FRAMES_PER_VIEW = 8
FRAMES_PER_VIEW = 1 + 4 * (LATENT_FRAMES_PER_VIEW - 1)

# The fields of the older official format (6b54ba6) that the current one replaced by `inference_type`.
OLDER_FORMAT_FIELDS = ("n_views", "num_input_frames")
OLDER_FORMAT_NAME = "output_0"  # the older format had no name; its script wrote output_0.mp4

# Official fields of the current format that the older one did not have.
CURRENT_ONLY_FIELDS = ("inference_type", "negative_prompt", "enable_autoregressive", "num_chunks", "chunk_overlap")

# The official multiview fields the base models' format does not have.
MULTIVIEW_ONLY_FIELDS = ("stack_mode", "control_weight", "num_chunks", *CAMERAS, *OLDER_FORMAT_FIELDS)

# The official base-model fields the multiview format does not have (`cosmos_ray.core.spec.GenerationSpec`).
BASE_ONLY_FIELDS = (
    "input_path",
    "resolution",
    "num_output_frames",
    "num_conditional_frames",
    "chunk_size",
    "cosmos_ray_num_frames",
)


class CameraInput(BaseModel):
    """One camera's input (the official `ViewConfig`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    video_path: str | None = Field(
        None,
        description="The camera's input video (.mp4): a local path (relative to the spec file's folder) or a URL "
        "with scheme file s3 gs gcs az abfs memory http https. Required for image2world (its first frame) and "
        "video2world (its first frames), ignored for text2world. Its frame rate must be a multiple of fps.",
    )


def _camera_field(camera: str) -> Any:
    return Field(default_factory=CameraInput, description=f'The {camera} camera: {{"video_path": ...}}.')


def _no_negative_prompt(value: Any) -> None:
    if value is not None:
        raise ValueError(
            f"is not taken by model {MULTIVIEW_MODEL} (the official multiview field must be null); leave it out"
        )
    return None


def _number(value: Any) -> Any:
    """JSON numbers for a float field: an integer is a number (not a bool, as in the strict checks)."""
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


class MultiviewSpec(SpecBase):
    """One 7-camera video to generate: one sample of the official multiview inference JSON."""

    # Construct through `from_dict`; direct construction (keywords) is validated too. Both raise `SpecError`.
    REFUSED_FIELDS = {
        **{
            field: f"belongs to the base models' format, not to the multiview format of model {MULTIVIEW_MODEL}; "
            "leave it out"
            for field in BASE_ONLY_FIELDS
        },
        "input_path": f"belongs to the base models' format; model {MULTIVIEW_MODEL} takes one video per camera, "
        f'e.g. "front_wide": {{"video_path": ...}} (cameras: {", ".join(CAMERAS)})',
    }

    inference_type: InferenceType
    name: SampleName
    prompt: Prompt = Field(description="The text prompt; it conditions the front_wide view (official).")
    negative_prompt: Annotated[None, BeforeValidator(_no_negative_prompt)] = Field(
        None, exclude=True, description="Official, always null: the multiview format has no negative prompt."
    )
    seed: Seed = Field(0, description="Seed of the initial noise (the autoregressive mode uses it for every chunk).")
    guidance: Guidance = 3
    num_steps: NumSteps = 35
    fps: Fps = Field(
        30,
        description="Frame rate of the written mp4; the input videos are read every (their frame rate / fps) "
        "frames, so their frame rate must be a multiple of it.",
    )
    stack_mode: Literal["time", "height"] = Field(
        "time", description="How the written mp4 holds the views: one after another in time, or stacked in height."
    )
    control_weight: Annotated[float, BeforeValidator(_number)] = Field(
        1.0, ge=0.0, le=1.0, description="Official, read by nothing: checked and left out of the spec JSON."
    )
    enable_autoregressive: bool = Field(
        False, description="The official mode for videos longer than one chunk of 29 frames per view."
    )
    num_chunks: int = Field(
        2, ge=1, description="Autoregressive mode: chunks of 29 frames per view; ignored otherwise."
    )
    chunk_overlap: int = Field(
        1,
        description=f"Autoregressive mode: frames of the previous chunk that condition the next one, 0.."
        f"{LATENT_FRAMES_PER_VIEW - 1}; ignored otherwise.",
    )
    front_wide: CameraInput = _camera_field("front_wide")
    rear: CameraInput = _camera_field("rear")
    rear_left: CameraInput = _camera_field("rear_left")
    rear_right: CameraInput = _camera_field("rear_right")
    cross_left: CameraInput = _camera_field("cross_left")
    cross_right: CameraInput = _camera_field("cross_right")
    front_tele: CameraInput = _camera_field("front_tele")
    num_generations: NumGenerations = 1
    cosmos_ray_checkpoint: Checkpoint = None
    cosmos_ray_loras: Loras = None

    # --- official defaulting: from the fields before (`info.data` holds those that are valid) -------------

    @field_validator("control_weight")
    @classmethod
    def _read_by_nothing(cls, value: float) -> float:
        return cls.model_fields["control_weight"].default  # official: checked, then never read

    @field_validator("num_chunks", "chunk_overlap")
    @classmethod
    def _ignored_without_autoregressive(cls, value: int, info: ValidationInfo) -> int:
        if info.data.get("enable_autoregressive"):
            return value
        return cls.model_fields[str(info.field_name)].default  # official: ignored unless the mode is on

    @field_validator(*CAMERAS)
    @classmethod
    def _ignored_for_text2world(cls, value: CameraInput, info: ValidationInfo) -> CameraInput:
        return CameraInput() if info.data.get("inference_type") == "text2world" else value

    # --- across fields, once every field is valid ---------------------------------------------------------

    @model_validator(mode="after")
    def _check_combinations(self) -> MultiviewSpec:
        sample = repr(self.name)
        for camera, video_path in self.video_paths.items():
            check_input_path(self.inference_type, video_path, sample, f"{camera}.video_path", VIDEO_EXTENSIONS)
        self.check_seeds()
        if self.enable_autoregressive and not 0 <= self.chunk_overlap < LATENT_FRAMES_PER_VIEW:
            raise SpecError(
                sample,
                "chunk_overlap",
                f"must be in 0..{LATENT_FRAMES_PER_VIEW - 1} (the next chunk is conditioned on that many of a "
                f"view's {LATENT_FRAMES_PER_VIEW} latent frames), got {self.chunk_overlap}",
            )
        return self

    @classmethod
    def _official_fields(cls, data: dict[str, Any], sample: str) -> dict[str, Any]:
        """The current format of `data`: a spec of the older format (with `n_views` / `num_input_frames`)
        converted, any other as it is."""
        older = [key for key in OLDER_FORMAT_FIELDS if key in data]
        if not older:
            return dict(data)
        mixed = [key for key in CURRENT_ONLY_FIELDS if key in data]
        if mixed:
            raise SpecError(
                sample,
                mixed[0],
                f"is a field of the current multiview format, but '{older[0]}' belongs to the older one; write "
                "the spec in one format (the current one has inference_type in place of num_input_frames and "
                "no n_views)",
            )
        n_views = data.get("n_views", len(CAMERAS))
        if type(n_views) is not int or n_views != len(CAMERAS):
            raise SpecError(
                sample,
                "n_views",
                f"must be {len(CAMERAS)}: model {MULTIVIEW_MODEL} generates the seven cameras "
                f"({', '.join(CAMERAS)}), got {n_views!r}",
            )
        by_frames = {frames: kind for kind, frames in CONDITIONING_LATENT_FRAMES.items()}
        num_input_frames = data.get("num_input_frames", 2)  # the older default: video2world
        if type(num_input_frames) is not int or num_input_frames not in by_frames:
            raise SpecError(
                sample,
                "num_input_frames",
                "must be 0, 1 or 2 (the latent frames of each view the video is conditioned on: text2world, "
                f"image2world, video2world), got {num_input_frames!r}",
            )
        fields = {key: value for key, value in data.items() if key not in OLDER_FORMAT_FIELDS}
        fields["inference_type"] = by_frames[num_input_frames]
        fields.setdefault("name", OLDER_FORMAT_NAME)
        if "prompt_path" in fields:  # the older format read prompt_path over prompt
            fields.pop("prompt", None)
        return fields

    @classmethod
    def _resolve_inputs(cls, fields: dict[str, Any], base_dir: str | None) -> None:
        for camera in CAMERAS:
            view = fields.get(camera)
            if isinstance(view, dict) and isinstance(view.get("video_path"), str) and view["video_path"]:
                fields[camera] = {**view, "video_path": resolve_url(view["video_path"], base_dir)}

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-ready dict (`SpecBase.to_dict`): a camera only with its video, the autoregressive
        fields only when the mode is on, never `control_weight` (read by nothing)."""
        data = super().to_dict()
        del data["control_weight"]
        for camera, video_path in self.video_paths.items():
            if video_path is None:
                del data[camera]
        if not self.enable_autoregressive:
            for key in ("enable_autoregressive", "num_chunks", "chunk_overlap"):
                del data[key]
        return data

    def _id_content(self) -> dict[str, Any]:
        content = super()._id_content()
        for camera, video_path in self.video_paths.items():
            if video_path is not None:
                content[camera] = {"video_path": input_digest(video_path)}
        return content

    def input_urls(self) -> dict[str, str]:
        return {f"{camera}.video_path": url for camera, url in self.video_paths.items() if url is not None}

    def work(self, model: OfficialModel) -> Work:
        """The seven views of the model's latent frames at its resolution, one window per chunk."""
        return Work(
            windows=self.num_chunks if self.enable_autoregressive else 1,
            latent_frames=model.state_t,
            height_width=model.trained_resolution,
            views=len(CAMERAS),
            frames={"num_chunks": self.frames_per_view} if self.enable_autoregressive else {},
            windows_field="num_chunks",
            fewer_windows="fewer num_chunks",
        )

    @property
    def video_paths(self) -> dict[str, str | None]:
        """Each camera's input video (None: none), in the sequence order of `CAMERAS`."""
        return {camera: getattr(self, camera).video_path for camera in CAMERAS}

    @property
    def num_conditional_frames(self) -> int:
        """Latent frames of each view kept clean (the official `num_input_frames`): 0, 1 or 2 by inference type."""
        return CONDITIONING_LATENT_FRAMES[self.inference_type]

    @property
    def frames_per_view(self) -> int:
        """Video frames of each view: one chunk of 29, or in the autoregressive mode the first chunk and
        `29 - chunk_overlap` new frames of each further one (official)."""
        if not self.enable_autoregressive:
            return FRAMES_PER_VIEW
        return FRAMES_PER_VIEW + (self.num_chunks - 1) * (FRAMES_PER_VIEW - self.chunk_overlap)
