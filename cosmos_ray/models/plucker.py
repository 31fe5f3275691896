"""Camera poses -> Plücker rays per DiT token: the camera conditioning of `2B/robot/multiview-agibot`.

What the official code computes (7e5ffc83 of the 1.5.0 tree), with its precision steps kept, because the released
inference runs it on bf16 cameras and the rays' rounding is part of the net's input:

- `invert_pose` (`_src/imaginaire/modules/camera.py`, `Camera.invert_pose`): [R | t] -> [R^T | -R^T t] in float32,
  rounded back to the pose's dtype; the rotation must be one (det 1 within 1e-2 for bf16/fp16, else 1e-4 / 1e-6);
- `plucker_tokens` (`_src/predict2/camera/utils.py`, `convert_camera_to_plucker_rays` over
  `Camera.get_plucker_rays`): for world-to-camera poses and (fx, fy, cx, cy) intrinsics, the ray through each pixel
  centre (x + 0.5, y + 0.5) as a unit direction d in world space (float32, rounded to the pose's dtype) and its moment
  o x d about the camera centre o (in the pose's dtype), [m | d] per pixel; the pixels of each `patch` x `patch`
  square concatenated, pixel-major, channel-minor: (..., H / patch, W / patch, 6 * patch * patch).
"""

from __future__ import annotations

import torch


def _check_rotations(poses: torch.Tensor) -> None:
    """ValueError unless every [R | t] of (..., 3, 4) has det(R) = 1 within the official tolerance."""
    det = torch.linalg.det(poses[..., :3].float())
    tolerance = 1e-2 if poses.dtype in (torch.bfloat16, torch.float16) else 1e-4
    atol = 1e-2 if poses.dtype in (torch.bfloat16, torch.float16) else 1e-6
    bad = ~(torch.isfinite(det) & ((det - 1).abs() <= atol + tolerance))
    if bad.any():
        index = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"pose {index}: its rotation part has determinant {det[index].item():.6g}, not 1")


def invert_pose(poses: torch.Tensor) -> torch.Tensor:
    """(..., 3, 4) [R | t] -> [R^T | -R^T t], computed in float32, in the poses' dtype."""
    _check_rotations(poses)
    rotation, translation = poses[..., :3].float(), poses[..., 3:].float()
    inverse = rotation.transpose(-1, -2)
    return torch.cat([inverse, -inverse @ translation], dim=-1).to(poses.dtype)


def camera_centres(world_to_camera: torch.Tensor) -> torch.Tensor:
    """(..., 3, 4) world-to-camera poses -> the cameras' centres in world space (..., 3), in the poses' dtype."""
    _check_rotations(world_to_camera)
    rotation, translation = world_to_camera[..., :3].float(), world_to_camera[..., 3:].float()
    return (-rotation.transpose(-1, -2) @ translation).squeeze(-1).to(world_to_camera.dtype)


def intrinsic_matrices(intrinsics: torch.Tensor) -> torch.Tensor:
    """(..., 4) (fx, fy, cx, cy) -> (..., 3, 3) K, in the intrinsics' dtype."""
    fx, fy, cx, cy = intrinsics.unbind(-1)
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    return torch.stack(
        [torch.stack([fx, zero, cx], -1), torch.stack([zero, fy, cy], -1), torch.stack([zero, zero, one], -1)], -2
    )


def pixel_rays(world_to_camera: torch.Tensor, intrinsics: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Unit world-space directions through every pixel centre: (N, H * W, 3), row-major, in the poses' dtype.

    world_to_camera (N, 3, 4), intrinsics (N, 4) (fx, fy, cx, cy), size (H, W).
    """
    height, width = size
    device = world_to_camera.device
    y, x = torch.meshgrid(
        torch.arange(height, dtype=torch.float32, device=device) + 0.5,
        torch.arange(width, dtype=torch.float32, device=device) + 0.5,
        indexing="ij",
    )
    ones = torch.ones(height * width, 1, device=device)
    pixels = torch.cat([torch.stack([x, y], -1).view(-1, 2), ones], -1)  # (HW, 3) homogeneous, float32
    pixels = pixels.expand(world_to_camera.shape[0], -1, -1)  # (N, HW, 3)
    k_inverse = torch.linalg.inv(intrinsic_matrices(intrinsics).float())  # (N, 3, 3)
    on_plane = pixels @ k_inverse.transpose(-1, -2)  # (N, HW, 3): camera space at depth 1
    camera_to_world = invert_pose(world_to_camera).float()  # rounded to the poses' dtype first, as the reference
    on_plane = torch.cat([on_plane, torch.ones_like(on_plane[..., :1])], -1)
    in_world = on_plane @ camera_to_world.transpose(-1, -2)  # (N, HW, 3) float32
    rays = in_world - camera_centres(world_to_camera).unsqueeze(-2)  # float32
    eps = 1e-2 if world_to_camera.dtype in (torch.bfloat16, torch.float16) else 1e-8
    rays = rays / rays.norm(dim=-1, keepdim=True).clamp_min(eps)
    return rays.to(world_to_camera.dtype)


def plucker_tokens(
    world_to_camera: torch.Tensor, intrinsics: torch.Tensor, size: tuple[int, int], patch: int = 16
) -> torch.Tensor:
    """Plücker rays [o x d | d] of every pixel, grouped by `patch` x `patch` squares.

    world_to_camera (..., 3, 4), intrinsics (..., 4) (fx, fy, cx, cy) of pictures of `size` (H, W), both in the
    dtype the rays are computed in (the official inference: bf16) -> (..., H / patch, W / patch, 6 * patch^2).
    """
    height, width = size
    if height % patch or width % patch:
        raise ValueError(f"picture size {size} is not divisible by the camera patch size {patch}")
    prefix = world_to_camera.shape[:-2]
    poses = world_to_camera.reshape(-1, 3, 4)
    directions = pixel_rays(poses, intrinsics.reshape(-1, 4), size)  # (N, HW, 3)
    centres = camera_centres(poses).unsqueeze(-2).expand_as(directions)
    rays = torch.cat([torch.linalg.cross(centres, directions), directions], -1)  # (N, HW, 6)
    rays = rays.view(*prefix, height // patch, patch, width // patch, patch, 6)
    # (..., h, p1, w, p2, 6) -> (..., h, w, p1 p2 6)
    rays = rays.movedim(-4, -3).flatten(-3)
    return rays
