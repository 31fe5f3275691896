"""Fixture `multiview_sampling`: the official multiview model's conditioning and sampling loop
(`MultiviewVid2VidModelRectifiedFlow.generate_samples_from_batch`, predict2_multiview/models/
multiview_vid2vid_model_rectified_flow.py) driven by a toy network, and its "height" stacking
(`arrange_video_visualization`, predict2_multiview/scripts/mv_visualize_helper.py).

Recorded:
  cases    3 views of 2 latent frames: text2world / image2world / video2world (0 / 1 / 2 conditional latent frames
           per view) at guidance 3, video2world at guidance 0; the latents after 3 steps and, for every network
           call, its timesteps and the condition mask per latent frame (the set_video_condition /
           edit_for_inference mask of condition location "first_random_n")
  stacking "height" with the dataset's camera keys (`front_wide`, ...: what the 1.5.0 inference passes) and with
           the layout's own names (`camera_rear_left_70fov`, ...), on a video whose view v is filled with v + 1

Stand-ins: the toy network and tokenizer of the `sampling` fixture (fixed seeded clean latents), and
`get_process_group_ranks` -> one rank (no context parallelism; megatron is stubbed).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from tools.golden.harness import Official, pack, write
from tools.golden.sampling import ToyNet, ToyTokenizer

VIEWS, STATE_T, LATENT_HW = 3, 2, (2, 4)
PIXEL_FRAMES = 1 + 4 * (STATE_T - 1)
CASES = {  # name -> (conditional latent frames per view, guidance, seed)
    "text2world": (0, 3, 0),
    "image2world": (1, 3, 1),
    "video2world": (2, 3, 2),
    "video2world-guidance0": (2, 0, 3),
}
OFFICIAL_CAMERAS = ("front_wide", "cross_right", "rear_right", "rear", "rear_left", "cross_left", "front_tele")
LAYOUT_NAMES = (  # the layout's names of the same cameras (datasets/multiview.py DEFAULT_CAMERAS)
    "camera_front_wide_120fov",
    "camera_cross_right_120fov",
    "camera_rear_right_70fov",
    "camera_rear_tele_30fov",
    "camera_rear_left_70fov",
    "camera_cross_left_120fov",
    "camera_front_tele_30fov",
)


def official_multiview_model(official: Official, net, tokenizer):
    """A MultiviewVid2VidModelRectifiedFlow holding `net` and `tokenizer`, configured as the released experiment
    configures it (condition location first_random_n, state_t, shift 5, no conditional_frame_timestep)."""
    mv = official.module("predict2_multiview.models.multiview_vid2vid_model_rectified_flow")
    conditioner_config = official.module("predict2_multiview.configs.vid2vid.defaults.conditioner")
    lazy = official.module("imaginaire.lazy_config")
    unipc = official.module("predict2.models.fm_solvers_unipc")
    mv.get_process_group_ranks = lambda group: [0]  # type: ignore[attr-defined]  # one rank: no context parallelism
    model = mv.MultiviewVid2VidModelRectifiedFlow.__new__(mv.MultiviewVid2VidModelRectifiedFlow)
    torch.nn.Module.__init__(model)
    model.config = mv.MultiviewVid2VidModelRectifiedFlowConfig(
        state_t=STATE_T,
        precision="float32",
        min_num_conditional_frames=0,
        max_num_conditional_frames=2,
        conditional_frames_probs={0: 0.5, 1: 0.25, 2: 0.25},
        condition_locations=["first_random_n"],
    )
    model.state_t = STATE_T
    model.precision = torch.float32
    model.tensor_kwargs = {"device": "cpu", "dtype": torch.float32}
    model.tensor_kwargs_fp32 = {"device": "cpu", "dtype": torch.float32}
    model.setup_data_key()
    model.sample_scheduler = unipc.FlowUniPCMultistepScheduler(
        num_train_timesteps=1000, shift=1, use_dynamic_shifting=False
    )
    conditioner = copy.deepcopy(conditioner_config.MultiViewConditionerConfig)
    conditioner.use_video_condition.dropout_rate = 0.0  # the experiment's conditioner settings
    conditioner.text.dropout_rate = 0.0
    model.conditioner = lazy.instantiate(conditioner)
    model.tokenizer = tokenizer
    model.net = net
    return model


class MultiviewToyTokenizer(ToyTokenizer):
    """The toy tokenizer for the views folded into the batch: view v's clean latents for batch row v."""

    def get_pixel_num_frames(self, latent_frames: int) -> int:
        return 1 + 4 * (latent_frames - 1)

    def encode(self, state: torch.Tensor) -> torch.Tensor:
        return self.latents.unflatten(2, (VIEWS, STATE_T))[0].transpose(0, 1)  # (V, C, T, H, W)


def multiview_sampling(official: Official, out: Path) -> None:
    height, width = (8 * n for n in LATENT_HW)
    prompt, negative = (
        torch.from_numpy(np.random.RandomState(seed).standard_normal((1, VIEWS * 8, 12)).astype(np.float32))
        for seed in (5, 6)
    )
    shape = (1, 16, VIEWS * STATE_T, *LATENT_HW)
    clean = torch.from_numpy(np.random.RandomState(7).standard_normal(shape).astype(np.float32))
    cases = {}
    for name, (num_conditional, guidance, seed) in CASES.items():
        net = ToyNet()  # it takes the multiview net's extra inputs too (as **kwargs)
        model = official_multiview_model(official, net, MultiviewToyTokenizer(clean))
        batch = {
            "dataset_name": "video_data",
            "video": torch.zeros(1, 3, VIEWS * PIXEL_FRAMES, height, width, dtype=torch.uint8),
            "fps": torch.tensor([30.0]),
            "padding_mask": torch.zeros(1, 1, height, width),
            "num_conditional_frames": num_conditional,
            "t5_text_embeddings": prompt,
            "neg_t5_text_embeddings": negative,
            "view_indices": torch.arange(VIEWS).repeat_interleave(PIXEL_FRAMES)[None],
            "num_video_frames_per_view": torch.tensor([PIXEL_FRAMES]),
            "ref_cam_view_idx_sample_position": torch.tensor([-1]),
        }
        latents = model.generate_samples_from_batch(
            batch, n_sample=1, guidance=guidance, seed=seed, is_negative_prompt=True, num_steps=3, state_shape=shape[1:]
        )
        cases[name] = {
            "num_conditional_frames": num_conditional,
            "guidance": guidance,
            "seed": seed,
            "num_steps": 3,
            "latents": pack(latents),
            "calls": net.calls,
        }
    helper = official.module("predict2_multiview.scripts.mv_visualize_helper")
    video = torch.arange(1, 8, dtype=torch.float32).view(1, 1, 7, 1, 1, 1).expand(1, 3, 7, 2, 4, 5).flatten(2, 3)
    stacking = {
        keys: pack(helper.arrange_video_visualization(video, {"camera_keys_selection": [list(names)]}, "height"))
        for keys, names in (("official_keys", OFFICIAL_CAMERAS), ("layout_names", LAYOUT_NAMES))
    }
    content = {
        "shape": list(shape),
        "prompt": pack(prompt),
        "negative": pack(negative),
        "clean_latents": pack(clean),
        "network": "toy_velocity(x, timesteps, crossattn_emb, condition mask) in tools/golden/sampling.py",
        "cases": cases,
        "stacking_input": "view v (of 7, 2 frames of 4 x 5) filled with v + 1, (1, 3, 7 x 2, 4, 5)",
        "stacking_height": stacking,
    }
    write(out, "multiview_sampling", official, content)
