"""One robot episode of the action-conditioned model: its official annotation file read and checked, the actions
derived from its states, and the video frame that starts the rollout. Torch-free (numpy, Pillow), so a CPU stage
can check episodes too.

What the official inference does (cosmos_predict2/action_conditioned.py at 7e5ffc83, the 1.5.0 tree of the fork
kechenliuuu3469/cosmos-predict2.5; its rotations: `euler2rotm` / `rotm2euler` of
cosmos_predict2/_src/predict2/action/datasets/dataset_utils.py), which this module follows:

- the annotation is a JSON object; `videos[camera_id]` is the episode's video, a path (or `{"video_path": ...}`)
  relative to `input_root`; `state_key` ("state") holds one arm state per frame, [x, y, z, roll, pitch, yaw, ...],
  `gripper_key` ("continuous_gripper_state") one gripper value per frame; other keys are not read;
- both are taken every `fps_downsample_ratio`-th frame; action k (k = 1 .. n-1) is the move from state k-1 to
  state k in the frame of state k-1: the translation rotated by R(k-1)^T, the rotation R(k-1)^T R(k) as Euler
  angles in (-pi, pi] (R = Rz(yaw) Ry(pitch) Rx(roll)), and the gripper value of state k; the six motion values
  are multiplied by `action_scaler` (20), the gripper's by `gripper_scale` (1): (n-1, 7) actions;
- the start frame is frame `start_frame_idx` of the video, resized to `resolution` (H, W) with Pillow's Lanczos
  filter when one is given (mediapy.resize_image), else at its own size.

The official script fails on a malformed annotation with a Python traceback; here `EpisodeError` names the
episode (its annotation file), the field and, for states, the frame.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from cosmos_ray.core.media import MediaError, MediaLimits, read_video
from cosmos_ray.core.storage import Storage, StorageError

if TYPE_CHECKING:  # action_spec checks its annotations with `read_annotation`
    from cosmos_ray.core.action_spec import ActionSpec

ARM_STATE_VALUES = 6  # x, y, z, roll, pitch, yaw (further values of a state are not read)


class EpisodeError(MediaError):
    """An episode that cannot be rolled out: names the sample, the annotation file, the field and the frame."""


@dataclass(frozen=True)
class Episode:
    """An episode as the rollout needs it."""

    annotation_url: str
    video_url: str
    actions: np.ndarray  # float64 (N, 7): relative xyz, relative Euler angles, gripper; scaled
    start_frame: np.ndarray  # uint8 (H, W, 3): frame `start_frame_idx`, resized to the spec's resolution


def read_episode(spec: ActionSpec, *, storage: Storage = Storage(), limits: MediaLimits = MediaLimits()) -> Episode:
    """The spec's episode: its annotation read and checked, the actions derived, the start frame read."""
    annotation = read_annotation(spec, storage=storage)
    start_frame = read_start_frame(spec, annotation.video_url, storage=storage, limits=limits)
    return Episode(spec.annotation_url, annotation.video_url, annotation.actions, start_frame)


@dataclass(frozen=True)
class Annotation:
    """What an episode's annotation file gives: its video and the actions derived from its states."""

    video_url: str
    actions: np.ndarray  # float64 (N, 7), as `Episode.actions`


def read_annotation(spec: ActionSpec, *, storage: Storage = Storage()) -> Annotation:
    """The spec's annotation file read and checked, and the actions derived from it; the video is not read (a
    small JSON file: the batch job's check stage reads it before a GPU is spent). `EpisodeError` names the episode,
    the field and, for states, the frame."""
    url = spec.annotation_url
    where = f"sample {spec.name!r}: episode {url}"
    try:
        text = storage.read_text(url)
    except StorageError as error:
        raise EpisodeError(f"{where}: cannot read the annotation: {error.reason}") from error
    except UnicodeDecodeError as error:
        raise EpisodeError(f"{where}: the annotation is not UTF-8 text: {error}") from None
    try:
        annotation = json.loads(text)
    except ValueError as error:
        raise EpisodeError(f"{where}: the annotation is not JSON: {error}") from None
    if not isinstance(annotation, dict):
        raise EpisodeError(f"{where}: the annotation must be a JSON object, not {type(annotation).__name__}")
    video_url = spec.video_url(_video_path(annotation, spec.camera_id, where))
    arm, gripper = _states(annotation, spec, where)
    actions = actions_from_states(
        arm,
        gripper,
        fps_downsample_ratio=spec.fps_downsample_ratio,
        action_scaler=spec.action_scaler,
        gripper_scale=spec.gripper_scale,
    )
    if len(actions) <= spec.start_frame_idx:
        raise EpisodeError(
            f"{where}: {len(actions)} action(s) (from {len(arm)} states, every {spec.fps_downsample_ratio}); "
            f"start_frame_idx {spec.start_frame_idx} leaves none to roll out"
        )
    return Annotation(video_url, actions)


def actions_from_states(
    arm_states: np.ndarray,
    gripper_states: np.ndarray,
    *,
    fps_downsample_ratio: int = 1,
    action_scaler: float = 20.0,
    gripper_scale: float = 1.0,
) -> np.ndarray:
    """(T, >= 6) arm states and (T,) gripper states -> (n - 1, 7) scaled actions of the n = ceil(T / ratio)
    states taken every `fps_downsample_ratio`; float64, as official."""
    arm = np.asarray(arm_states, dtype=np.float64)[::fps_downsample_ratio]
    gripper = np.asarray(gripper_states, dtype=np.float64)[::fps_downsample_ratio]
    actions = np.zeros((max(len(arm) - 1, 0), 7))
    for k in range(1, len(arm)):
        previous = euler_to_matrix(arm[k - 1, 3:6])
        actions[k - 1, 0:3] = previous.T @ (arm[k, 0:3] - arm[k - 1, 0:3])
        actions[k - 1, 3:6] = matrix_to_euler(previous.T @ euler_to_matrix(arm[k, 3:6]))
        actions[k - 1, 6] = gripper[k]
    return actions * np.array([action_scaler] * 6 + [gripper_scale])


def euler_to_matrix(angles: np.ndarray) -> np.ndarray:
    """(roll, pitch, yaw) -> Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    roll, pitch, yaw = angles
    rx = np.array([[1, 0, 0], [0, np.cos(roll), -np.sin(roll)], [0, np.sin(roll), np.cos(roll)]])
    ry = np.array([[np.cos(pitch), 0, np.sin(pitch)], [0, 1, 0], [-np.sin(pitch), 0, np.cos(pitch)]])
    rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    return rz @ ry @ rx


def matrix_to_euler(rotation: np.ndarray) -> np.ndarray:
    """A rotation matrix -> (roll, pitch, yaw), each in (-pi, pi]; near gimbal lock (cos(pitch) < 1e-6) yaw is 0."""
    r = rotation
    sy = math.sqrt(r[0, 0] * r[0, 0] + r[1, 0] * r[1, 0])
    if sy >= 1e-6:
        angles = [math.atan2(r[2, 1], r[2, 2]), math.atan2(-r[2, 0], sy), math.atan2(r[1, 0], r[0, 0])]
    else:
        angles = [math.atan2(-r[1, 2], r[1, 1]), math.atan2(-r[2, 0], sy), 0.0]
    return np.array([_wrap(angle) for angle in angles])


def _wrap(angle: float) -> float:
    """`angle` moved into (-pi, pi] by whole turns (atan2 is there already but for -pi)."""
    while angle > np.pi:
        angle -= 2 * np.pi
    while angle <= -np.pi:
        angle += 2 * np.pi
    return angle


def read_start_frame(
    spec: ActionSpec, video_url: str, *, storage: Storage = Storage(), limits: MediaLimits = MediaLimits()
) -> np.ndarray:
    """Frame `start_frame_idx` of the episode's video, uint8 (H, W, 3), resized to the spec's resolution if any."""
    where = f"sample {spec.name!r}: episode {spec.annotation_url}"
    if not storage.may_read(video_url):
        raise EpisodeError(f"{where}: video {video_url} is an http(s) URL, which is off by default")
    try:
        frames = read_video(video_url, storage=storage, limits=limits)
    except MediaError as error:
        raise type(error)(f"{where}: cannot read video {video_url}: {error}") from error
    except (OSError, ValueError, RuntimeError) as error:
        reason = error.reason if isinstance(error, StorageError) else error
        raise EpisodeError(f"{where}: cannot read video {video_url}: {reason}") from error
    if spec.start_frame_idx >= len(frames):
        raise EpisodeError(
            f"{where}: start_frame_idx {spec.start_frame_idx} is past the video's {len(frames)} frames ({video_url})"
        )
    frame = (
        frames[spec.start_frame_idx]
        if spec.height_width is None
        else resize_frame(frames[spec.start_frame_idx], spec.height_width)
    )
    height, width = frame.shape[:2]
    if height % 16 or width % 16:
        raise EpisodeError(
            f"{where}: the start frame is {height}x{width}, not multiples of 16 (the latent patch grid); pass "
            'resolution "H,W" (the released model: "256,320")'
        )
    return frame


def resize_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (h, w, 3) -> (H, W, 3) for `size` (H, W), Pillow's Lanczos filter (as mediapy.resize_image)."""
    height, width = size
    return np.array(Image.fromarray(frame).resize((width, height), resample=Image.Resampling.LANCZOS))


def _video_path(annotation: dict[str, Any], camera_id: int, where: str) -> str:
    videos = annotation.get("videos")
    if not isinstance(videos, list) or not videos:
        raise EpisodeError(f"{where}: field 'videos' must be a non-empty list of video paths, got {videos!r:.80}")
    if camera_id >= len(videos):
        raise EpisodeError(f"{where}: camera_id {camera_id} is past field 'videos', which has {len(videos)} video(s)")
    entry = videos[camera_id]
    path = entry.get("video_path") if isinstance(entry, dict) else entry
    if not isinstance(path, str) or not path:
        raise EpisodeError(
            f"{where}: field 'videos[{camera_id}]' must be a path or {{\"video_path\": path}}, got {entry!r:.80}"
        )
    return path


def _states(annotation: dict[str, Any], spec: ActionSpec, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(T, 6) arm states and (T,) gripper states, each value a finite number."""
    arm_key, gripper_key = spec.state_key, spec.gripper_key
    arm, gripper = annotation.get(arm_key), annotation.get(gripper_key)
    for key, value in ((arm_key, arm), (gripper_key, gripper)):
        if not isinstance(value, list):
            raise EpisodeError(f"{where}: field {key!r} must be a list with one entry per frame, got {value!r:.80}")
    assert isinstance(arm, list) and isinstance(gripper, list)
    if len(gripper) < len(arm):
        raise EpisodeError(
            f"{where}: field {gripper_key!r} has {len(gripper)} entries, fewer than the {len(arm)} of {arm_key!r}"
        )
    if len(arm[:: spec.fps_downsample_ratio]) < 2:
        raise EpisodeError(
            f"{where}: field {arm_key!r} has {len(arm)} state(s); actions need at least 2 (every "
            f"{spec.fps_downsample_ratio})"
        )
    for frame, state in enumerate(arm):
        if not (isinstance(state, list) and len(state) >= ARM_STATE_VALUES and all(map(_is_number, state[:6]))):
            raise EpisodeError(
                f"{where}: field {arm_key!r}, frame {frame}: must be a list of at least {ARM_STATE_VALUES} finite "
                f"numbers (x, y, z, roll, pitch, yaw), got {state!r:.80}"
            )
    for frame, value in enumerate(gripper[: len(arm)]):
        if not _is_number(value):
            raise EpisodeError(f"{where}: field {gripper_key!r}, frame {frame}: must be a finite number, got {value!r}")
    return np.array([state[:ARM_STATE_VALUES] for state in arm], dtype=np.float64), np.array(
        gripper[: len(arm)], dtype=np.float64
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
