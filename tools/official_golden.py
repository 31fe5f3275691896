"""Golden fixtures from the official Cosmos-Predict2.5 code: runs its own functions on small seeded inputs.

    python tools/official_golden.py OFFICIAL_CHECKOUT [--out tests/golden] [--commit SHA]

OFFICIAL_CHECKOUT is a checkout of github.com/nvidia-cosmos/cosmos-predict2.5 (its root, holding
`cosmos_predict2/`). Run this with a Python environment that has the official code's dependencies, not
cosmos-ray's own (docs/reference-notes.md lists the packages), plus cosmos-ray importable (this file adds
the repository root to sys.path): the whole tiny runs use cosmos-ray's tiny DiT as the network, since the
official DiT needs Transformer Engine on a GPU. Everything runs on the CPU in float32 (and bf16 where
the official inference uses bf16) and takes about a minute.

What is run, each result written to OUT/<piece>.json with the checkout's commit and, for every official source
file the piece ran, its commit (`--file-commit` names files taken from another commit) and sha256:
  schedules  FlowUniPCMultistepScheduler.set_timesteps: post-trained (Karras) and pre-trained (shift 5) sigmas
             and the integer timesteps the DiT gets, for 35, 4 and 1 steps
  unipc      FlowUniPCMultistepScheduler.step over whole runs with a fixed velocity function
  sampling   Video2WorldModelRectifiedFlow.generate_samples_from_batch (the official loop: initial noise,
             conditioner, conditional-frame mask and timestep, guidance, UniPC) driven by a fixed toy network
             that records what it is given; text2world / image2world / video2world, both variants
  tiny_runs  the same loop with cosmos-ray's tiny DiT as the network and the official Wan2.1 VAE code
             (tokenizers/wan2pt1.py) holding the tiny preset's VAE weights, on conditioning media read by the
             official read_and_process_image / read_and_process_video: whole runs in float32
  vae        the official WanVAE's latent statistics and (de)normalization, bf16 and float32
  text_norm  TextEncoder.mean_normalize (the per-layer normalization of the Reason1 embeddings), bf16 and float32
  media      read_and_process_image / read_and_process_video / resize_input on media this script writes to
             OUT/media/ (odd sizes; RGB, RGBA, grayscale and palette PNG; a BT.709-tagged H.264 video)
  model_config  each base model's settings as the official config system composes them (1.5.0)
  dit        the official MinimalV1LVGDiT at tiny widths (2B, 14B, distilled), float32 and bf16
  pixel_norm the uint8 -> [-1, 1] step of the conditioning pixels, bf16 and float32
  distilled  the distilled model's few-step sampler (Video2WorldModelDistillDMD2TrigFlow) with the official
             tiny distilled net, bf16 and float32, and its final nan_to_num
  end_to_end whole bf16 runs (text2world, image2world, video2world): official media reading, sampler,
             conditioner, tiny 2B net and VAE, 3 steps with guidance
  multiview  the official MultiViewDiT of 2B/auto/multiview at tiny widths (7 and 3 views), float32 and bf16, with
             its patch-embedding input, per-view RoPE and per-view cross-attention; its config and key layout
  multiview_sampling  the official multiview model's conditioning (each view's first latent frames) and sampling
             loop (guided from the unconditional pass) with the toy network, 3 views; its "height" stacking
  action_cond  the official ActionChunkConditionedMinimalV1LVGDiT of 2B/robot/action-cond at tiny widths (4 latent
             frames, 12 actions), float32 and bf16, with its action MLPs' outputs and what they add to the timestep
             embedding; its config and key layout
  robot_rollout  the official action-conditioned inference script (2B/robot/action-cond): its arguments' defaults,
             the actions it derives from states, and its chunked rollout around a stand-in model call
  robot_multiview  the camera conditioning of 2B/robot/multiview-agibot (the official camera-file loader, Plücker
             rays, frameinit condition mask) and its CameraMiniTrainDITwithConditionalMask at tiny widths (3 views),
             float32 and bf16; its config and key layout
  text_encoder  the official Reason1 wrapper (TextEncoder + QwenVLBaseModel + Processor) at tiny widths with
             seeded weights, bf16 and float32: prompts -> the DiT's text embeddings (needs the official pins of
             transformers & co. first on the path; flash-attention -> SDPA)

Modules that the pieces import but never run are stubbed in this process (sys.modules): GPU-only or service
packages (megatron, transformer_engine, apex, wandb, pynvml, boto3/botocore, matplotlib, pytest) and official
modules that need a GPU or flash-attention at import time (reason1.networks.qwen2_5_vl, predict2.networks.clip;
the text_encoder piece imports the real qwen2_5_vl with an inert flash_attn and SDPA in its place).
The stub list is written into every fixture. The official code is never copied into cosmos-ray.

This file is the entry point; the harness and the pieces are in tools/golden/ (harness.py; solver.py,
sampling.py, tiny_runs.py, vae_text.py, media.py, text_encoder.py, ...).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script (python tools/official_golden.py): make `tools` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.golden.action_cond import action_cond
from tools.golden.distilled import distilled
from tools.golden.dit import dit, pixel_norm
from tools.golden.end_to_end import end_to_end
from tools.golden.harness import ROOT, Official
from tools.golden.media import media
from tools.golden.model_config import model_config
from tools.golden.multiview import multiview
from tools.golden.multiview_sampling import multiview_sampling
from tools.golden.robot_multiview import robot_multiview
from tools.golden.robot_rollout import robot_rollout
from tools.golden.sampling import sampling, toy_velocity
from tools.golden.solver import fixed_velocity, schedules, unipc
from tools.golden.text_encoder import text_encoder
from tools.golden.tiny_runs import tiny_embeddings, tiny_models, tiny_runs
from tools.golden.vae_text import text_norm, vae

# Imported from here by tests/test_official_golden.py; the fixtures name this file as where toy_velocity and
# tiny_embeddings are.
__all__ = [
    "fixed_velocity",
    "main",
    "tiny_embeddings",
    "tiny_models",
    "toy_velocity",
]

PIECES = {
    "schedules": schedules,
    "unipc": unipc,
    "sampling": sampling,
    "tiny_runs": tiny_runs,
    "vae": vae,
    "text_norm": text_norm,
    "media": media,
    "model_config": model_config,
    "dit": dit,
    "pixel_norm": pixel_norm,
    "distilled": distilled,
    "end_to_end": end_to_end,
    "text_encoder": text_encoder,
    "multiview": multiview,
    "multiview_sampling": multiview_sampling,
    "action_cond": action_cond,
    "robot_rollout": robot_rollout,
    "robot_multiview": robot_multiview,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkout", type=Path, help="root of a checkout of nvidia-cosmos/cosmos-predict2.5")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "golden", help="where the fixtures go")
    parser.add_argument("--commit", help="the commit the checkout holds, when it is not a git work tree")
    parser.add_argument("--only", nargs="+", choices=sorted(PIECES), help="write only these fixtures")
    parser.add_argument(
        "--file-commit",
        action="append",
        default=[],
        metavar="PATH=SHA",
        help="a file of the checkout taken from another commit than the checkout's (recorded per file)",
    )
    args = parser.parse_args(argv)
    file_commits = dict(item.split("=", 1) for item in args.file_commit)
    official = Official(args.checkout, args.commit, file_commits)
    torch.manual_seed(0)
    for name in args.only or PIECES:
        PIECES[name](official, args.out)


if __name__ == "__main__":
    main()
