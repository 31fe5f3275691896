"""The robot multiview spec: one scene of the official inference JSON of the 3-camera AgiBot model
(`2B/robot/multiview-agibot`), and its camera files.

`AgibotSpec` is the official `RobotMultiviewInferenceArguments` (cosmos_predict2/robot_multiview_config.py at
7e5ffc83, the 1.5.0 tree of the fork kechenliuuu3469/cosmos-predict2.5) with its defaults: `name`, `prompt` or
`prompt_path` (`prompt` wins), `negative_prompt` (the default negative prompt), `seed` 1, `guidance` 7 (0..7),
`num_steps` 35, `input_name` (the scene's files' prefix); plus `base_path`, the official setup argument
`--base-path` (here per scene, any fsspec URL; default: the spec file's folder, where the official assets keep it),
and the fields of our own every format has (`num_generations`, `cosmos_ray_checkpoint`, `cosmos_ray_loras`).

A scene's files, as the official loader reads them (`TextImageCameraDataset`, `load_agibot_camera_fn` of
cosmos_predict2/robot_multiview.py):

    {base_path}/input_images/{input_name}_{view}.png        the first frame of each view
    {base_path}/cameras/{index}_extrinsic_{view}.txt         per latent frame, one row of 12 numbers: the
                                                              camera-to-world [R | t], row-major
    {base_path}/cameras/{index}_intrinsic_{view}.txt         per latent frame, one row of fx fy cx cy (768 x 432)

for the views head, hand_0, hand_1, where `index` is the number `input_name` starts with (the official loader takes
the digits after `input_images/`, as an int: "007" reads `7_...txt`). The first 24 rows of each camera file are read
(one per latent frame of the 93-frame video); more rows are ignored, fewer refused.

The official setup arguments that are not per scene keep their defaults: 93 output frames, 1 input frame, 720p.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field

from cosmos_ray.core.spec import DEFAULT_NEGATIVE_PROMPT
from cosmos_ray.core.spec_base import (
    Checkpoint,
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
)
from cosmos_ray.core.spec_errors import SpecError
from cosmos_ray.core.storage import Storage, StorageError, join_url, resolve_url

if TYPE_CHECKING:
    from cosmos_ray.core.registry import OfficialModel

AGIBOT_MODEL = "2B/robot/multiview-agibot"  # the official model name
VIEWS = ("head", "hand_0", "hand_1")  # the official loader's order, which is the written mp4's, top to bottom
LATENT_FRAMES_PER_VIEW = 24  # the model's state_t: 93 frames per view
FRAMES_PER_VIEW = 1 + 4 * (LATENT_FRAMES_PER_VIEW - 1)
FPS = 30  # the official script writes its mp4 at 30 fps
CAMERA_VALUES = {"extrinsic": 12, "intrinsic": 4}  # numbers per row of each kind of camera file


def _starts_with_a_number(value: str) -> str:
    if not re.match(r"\d", value):
        raise ValueError(
            "must start with the scene's number (the official loader names the camera files by it: "
            '"0" reads cameras/0_extrinsic_head.txt ...)'
        )
    return value


class AgibotSpec(SpecBase):
    """One 3-camera robot scene to generate: one sample of the official robot multiview inference JSON."""

    name: SampleName
    prompt: Prompt
    negative_prompt: str = Field(DEFAULT_NEGATIVE_PROMPT, description="The unconditional pass's prompt.")
    seed: Seed = Field(1, description="Seed of the initial noise (every view gets the same noise, official).")
    guidance: Guidance = 7
    num_steps: NumSteps = 35
    input_name: Annotated[str, AfterValidator(_starts_with_a_number)] = Field(
        description="The scene's file prefix: input_images/{input_name}_{view}.png, and the number it starts with "
        "names its camera files."
    )
    base_path: str = Field(
        "",
        description="cosmos-ray: the official --base-path per scene, a folder or fsspec URL holding input_images/ "
        "and cameras/; default: the spec file's folder.",
    )
    inference_type: Literal["image2world"] = Field(
        "image2world", exclude=True, description="Always image2world: each view's first frame conditions it."
    )
    enable_autoregressive: Literal[False] = Field(False, exclude=True, description="Not an official mode here.")
    num_generations: NumGenerations = 1
    cosmos_ray_checkpoint: Checkpoint = None
    cosmos_ray_loras: Loras = None

    @classmethod
    def _resolve_inputs(cls, fields: dict[str, Any], base_dir: str | None) -> None:
        base_path = fields.get("base_path")
        if base_path is None or base_path == "":
            fields["base_path"] = resolve_url(".", base_dir)
        elif isinstance(base_path, str):
            fields["base_path"] = resolve_url(base_path, base_dir)

    def _id_content(self) -> dict[str, Any]:
        """The scene's files count by content (local) or URL, not by the folder's path."""
        content = super()._id_content()
        del content["base_path"]
        content["inputs"] = {field: input_digest(url) for field, url in self.input_urls().items()}
        return content

    @property
    def fps(self) -> int:
        """The written mp4's frame rate (the official script's 30)."""
        return FPS

    def work(self, model: OfficialModel) -> Work:
        """One window of the three views, each of the model's latent frames at its resolution (both fixed)."""
        return Work(windows=1, latent_frames=model.state_t, height_width=model.trained_resolution, views=len(VIEWS))

    def input_urls(self) -> dict[str, str]:
        """Every input file of the scene by what it is ("input_images/head", "cameras/extrinsic_head", ...)."""
        images = {f"input_images/{view}": url for view, url in self.image_paths.items()}
        cameras = {f"cameras/{kind}_{view}": self.camera_path(kind, view) for view in VIEWS for kind in CAMERA_VALUES}
        return {**images, **cameras}

    def check_input_files(self, storage: Storage) -> None:
        """Every camera file read and checked (`read_camera_rows`: the rows the model reads, their numbers, the
        rotations); the images are read at generation."""
        for view in VIEWS:
            for kind in CAMERA_VALUES:
                read_camera_rows(self, kind, view, storage, LATENT_FRAMES_PER_VIEW)

    @property
    def camera_index(self) -> int:
        """The number the camera files are named by (the official loader's int of the leading digits)."""
        match = re.match(r"\d+", self.input_name)
        assert match is not None  # checked by the field
        return int(match.group())

    @property
    def image_paths(self) -> dict[str, str]:
        """Each view's input image, in the order of `VIEWS`."""
        return {view: join_url(self.base_path, f"input_images/{self.input_name}_{view}.png") for view in VIEWS}

    def camera_path(self, kind: str, view: str) -> str:
        """The camera file of `kind` ("extrinsic" | "intrinsic") of `view`."""
        return join_url(self.base_path, f"cameras/{self.camera_index}_{kind}_{view}.txt")


def read_camera_rows(spec: AgibotSpec, kind: str, view: str, storage: Storage, rows: int) -> list[list[float]]:
    """The first `rows` rows of a camera file, as `np.loadtxt` reads it (whitespace-separated numbers, `#` comments,
    blank lines skipped); SpecError naming the scene, the file, the line and what is wrong."""
    url = spec.camera_path(kind, view)
    field = f"cameras/{kind}_{view}"
    try:
        text = storage.read_text(url)
    except StorageError as error:
        raise SpecError(repr(spec.name), field, f"cannot read {url}: {error}") from None
    values = CAMERA_VALUES[kind]
    parsed: list[list[float]] = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            row = [float(token) for token in line.split()]
        except ValueError:
            raise SpecError(repr(spec.name), field, f"{url} line {line_number}: not all numbers: {line!r}") from None
        if len(row) != values:
            raise SpecError(
                repr(spec.name),
                field,
                f"{url} line {line_number} (latent frame {len(parsed)}): {len(row)} numbers, expected {values} "
                + ("(a camera-to-world [R | t], row-major)" if kind == "extrinsic" else "(fx fy cx cy)"),
            )
        if kind == "extrinsic":
            _check_rotation(row, spec, field, f"{url} line {line_number} (latent frame {len(parsed)})")
        parsed.append(row)
        if len(parsed) == rows:
            return parsed
    raise SpecError(
        repr(spec.name), field, f"{url} has {len(parsed)} rows; the model needs one per latent frame, {rows}"
    )


def _check_rotation(row: list[float], spec: AgibotSpec, field: str, where: str) -> None:
    """SpecError unless the row's [R | t] has a rotation (det 1 within the official bf16 tolerance, 2e-2)."""
    r = [row[0:3], row[4:7], row[8:11]]
    det = (
        r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1])
        - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
        + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0])
    )
    if not abs(det - 1.0) <= 2e-2:
        raise SpecError(repr(spec.name), field, f"{where}: R has determinant {det:.6g}, not 1: not a rotation")
