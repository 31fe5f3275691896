"""The multiview model's conditioning and sampling loop against the official code (fixture `multiview_sampling`,
tools/golden/multiview_sampling.py): each view's first latent frames held (mask per view, the noisy timestep on
them), guidance from the unconditional pass, the shift-5 UniPC loop; and the "height" stacking order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cosmos_ray.core.multiview_spec import CAMERAS
from cosmos_ray.multiview import HEIGHT_ORDER, stack_views, view_held_frames
from cosmos_ray.sampling.guided import SamplerConfig, initial_noise, sample
from tests.test_official_golden import RecordingToyModel, load, unpack

GOLDEN = load("multiview_sampling")
VIEWS, STATE_T = 3, 2


@pytest.mark.parametrize("name", sorted(GOLDEN["cases"]))
def test_multiview_sampling_loop_matches_official(name):
    case = GOLDEN["cases"][name]
    n = case["num_conditional_frames"]
    clean = unpack(GOLDEN["clean_latents"])  # (1, C, V * state_t, H, W)
    per_view = clean[0].unflatten(1, (VIEWS, STATE_T)).transpose(0, 1)[:, :, :n]  # (V, C, n, H, W)
    model = RecordingToyModel()
    latents = sample(
        model,
        initial_noise(case["seed"], tuple(GOLDEN["shape"])),
        unpack(GOLDEN["prompt"]),
        unpack(GOLDEN["negative"]),
        config=SamplerConfig.preset("multiview"),
        num_steps=case["num_steps"],
        guidance=case["guidance"],
        held=view_held_frames(per_view, STATE_T) if n else None,
    )
    torch.testing.assert_close(latents, unpack(case["latents"]), rtol=0, atol=0)
    # the official loop calls the net for cond, then uncond, at every guidance (also 0); we batch the two
    assert len(case["calls"]) == 2 * len(model.calls)
    for (timesteps, mask), official, official_uncond in zip(model.calls, case["calls"][::2], case["calls"][1::2]):
        assert timesteps.shape[0] == mask.shape[0] == 2  # both passes, whatever the guidance
        torch.testing.assert_close(mask[:1], unpack(official["mask_per_frame"]), rtol=0, atol=0)
        torch.testing.assert_close(mask[1:], unpack(official_uncond["mask_per_frame"]), rtol=0, atol=0)
        official_timesteps = unpack(official["timesteps"])  # (1, 1): the held frames share the noisy timestep
        torch.testing.assert_close(timesteps[:1], official_timesteps.expand_as(timesteps[:1]), rtol=0, atol=0)
    expected_mask = torch.zeros(VIEWS, STATE_T)
    expected_mask[:, :n] = 1
    torch.testing.assert_close(model.calls[0][1][0], expected_mask.flatten())


def test_height_stacking_is_the_official_layout_read_with_the_1_5_0_camera_keys():
    """The official arrange_video_visualization stacks the views top to bottom in its layout's order; looked up
    with the keys the 1.5.0 dataset passes (front_wide, ...) it finds none and writes black everywhere."""
    stacked = GOLDEN["stacking_height"]
    by_layout = unpack(stacked["layout_names"])[0, 0]  # (T, 7 H, W): view v filled with v + 1
    assert not unpack(stacked["official_keys"]).any()  # every slot the black view
    views = np.broadcast_to(np.arange(1, 8, dtype=np.uint8)[None, :, None, None, None], (2, 7, 4, 5, 3))
    frames, placement = stack_views(views, "height")
    assert np.array_equal(frames[..., 0], by_layout.numpy().astype(np.uint8))
    assert [view["camera"] for view in placement] == list(HEIGHT_ORDER)
    assert sorted(HEIGHT_ORDER) == sorted(CAMERAS)
    for view in placement:
        start, stop = view["rows"]
        assert (frames[:, start:stop] == CAMERAS.index(view["camera"]) + 1).all()
