"""The engine of the 3-camera robot model (`2B/robot/multiview-agibot`, family "camera-multiview")."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cosmos_ray.models.plucker import invert_pose

# (H, W) of the pictures the camera files' intrinsics describe (the AgiBot data's 480p, 768 x 432); the official
# loader rescales them to the generated size (`load_agibot_camera_fn`, cosmos_predict2/robot_multiview.py, 7e5ffc83).
CAMERA_FILE_SIZE = (432, 768)


def camera_tensors(
    extrinsic_rows: Sequence[Sequence[Sequence[float]]],
    intrinsic_rows: Sequence[Sequence[Sequence[float]]],
    size: tuple[int, int] = (704, 1280),
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cameras of every view's latent frames as the official loader hands them on, bf16.

    extrinsic_rows: per view, per latent frame, the 12 values of a camera-to-world [R | t] (row-major) of its file;
    intrinsic_rows: per view, per latent frame, (fx, fy, cx, cy) for a 768 x 432 picture. Returns world-to-camera
    poses (V * L, 3, 4) and intrinsics rescaled to `size` (H, W) (V * L, 4), the views one after another.
    """
    poses = torch.tensor([row for view in extrinsic_rows for row in view], dtype=torch.float64).to(torch.bfloat16)
    intrinsics = torch.tensor([row for view in intrinsic_rows for row in view], dtype=torch.float64)
    intrinsics = intrinsics.to(torch.bfloat16)
    height, width = size
    intrinsics[:, [0, 2]] *= width / CAMERA_FILE_SIZE[1]
    intrinsics[:, [1, 3]] *= height / CAMERA_FILE_SIZE[0]
    return invert_pose(poses.view(-1, 3, 4)), intrinsics
