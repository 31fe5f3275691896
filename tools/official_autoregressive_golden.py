"""Golden outputs of the official autoregressive (sliding-window) algorithm, for tests/test_autoregressive.py.

    python tools/official_autoregressive_golden.py OFFICIAL_CHECKOUT [--out tests/golden/autoregressive.npz]

Runs `Video2WorldInference.generate_autoregressive_from_batch` from the official repository's
`cosmos_predict2/_src/predict2/inference/video2world.py` (a checkout of its latest release) on tiny frames,
with the diffusion model replaced by `RecordingWindows`: for every window the official code asks for, it
records what the model would see of its input (the first 1 + 4 (n - 1) pixel frames of the window's input
clip: what the causal VAE encodes into the window's n conditional latents), n and the seed, and returns a
seeded random video in [-1, 1]. The file holds, per case, the inputs, those calls and the official final
video, with the official file's git blob id. The official code is run, never copied.

The method uses no part of its framework; the modules `video2world.py` imports at the top (megatron, the
imaginaire utilities, the model loaders, torchvision) are stand-ins: torchvision's `to_tensor` is PIL ->
float / 255 (torchvision's own computation for RGB images) and its `resize` / `center_crop` refuse any size
change, since the cases read inputs at the target size (resizing is covered by the media goldens).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from PIL import Image

OFFICIAL_FILE = "cosmos_predict2/_src/predict2/inference/video2world.py"
HEIGHT, WIDTH = 2, 3  # frames of 2 x 3 pixels: enough to tell rows, columns and channels apart
INPUT_VIDEO_FRAMES = 7
# The official script's `num_input_frames`: latent conditional frames of the first window.
FIRST_CONDITIONAL = {"text2world": 0, "image2world": 1, "video2world": 2}

# Each case: the spec's fields, and `state_t` of the stand-in model (its windows have 1 + 4 (state_t - 1)
# frames). Together they cover the official default (77 / 1) and the corners of the layout.
CASES: list[dict[str, Any]] = [
    # the official default, 3 windows, the last one short
    {"name": "t2w-default", "inference_type": "text2world", "num_output_frames": 200, "chunk_size": 77,
     "chunk_overlap": 1, "seed": 7, "state_t": 24},
    # exactly 2 windows
    {"name": "i2w-default", "inference_type": "image2world", "num_output_frames": 153, "chunk_size": 77,
     "chunk_overlap": 1, "seed": 0, "state_t": 24},
    # one window shorter than chunk_size
    {"name": "v2w-one-window", "inference_type": "video2world", "num_output_frames": 40, "chunk_size": 77,
     "chunk_overlap": 1, "seed": 3, "state_t": 24},
    # overlap 2: 5 conditioning pixel frames, 2 generated, then the input video's last frame
    {"name": "v2w-overlap-2", "inference_type": "video2world", "num_output_frames": 30, "chunk_size": 9,
     "chunk_overlap": 2, "seed": 11, "state_t": 4},
    # overlap 3: 9 conditioning pixel frames, 3 generated, then black
    {"name": "t2w-overlap-3", "inference_type": "text2world", "num_output_frames": 40, "chunk_size": 13,
     "chunk_overlap": 3, "seed": 5, "state_t": 4},
    # overlap 2 from an image: black after the generated frames; the window is shorter than its conditioning
    {"name": "i2w-overlap-2-short", "inference_type": "image2world", "num_output_frames": 25, "chunk_size": 4,
     "chunk_overlap": 2, "seed": 1, "state_t": 3},
    # stride 1: window 1 starts inside window 0's conditional frames, which the official canvas keeps as input
    {"name": "v2w-stride-1", "inference_type": "video2world", "num_output_frames": 6, "chunk_size": 2,
     "chunk_overlap": 1, "seed": 2, "state_t": 2},
    # no overlap: independent windows with consecutive seeds
    {"name": "t2w-overlap-0", "inference_type": "text2world", "num_output_frames": 20, "chunk_size": 8,
     "chunk_overlap": 0, "seed": 9, "state_t": 3},
]  # fmt: skip


class RecordingWindows:
    """Stands in for `Video2WorldInference.generate_vid2world`: records each window and returns a video."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, *, input_path, num_latent_conditional_frames, seed, num_video_frames, **_) -> torch.Tensor:
        clip = input_path  # uint8 (1, 3, T, H, W): the window's input, padded to the model's frames
        assert clip.dtype == torch.uint8 and clip.shape[2] == num_video_frames, clip.shape
        n = num_latent_conditional_frames
        count = 0 if n == 0 else 1 + 4 * (n - 1)
        conditioning = clip[0, :, :count].permute(1, 2, 3, 0).numpy()  # (count, H, W, 3)
        noise = np.random.RandomState(seed).uniform(-1.0, 1.0, (1, 3, num_video_frames, HEIGHT, WIDTH))
        # Like a model: the held frames come back nearly as given, the others depend on them.
        shift = conditioning.mean() / 255.0 - 0.5 if count else 0.0
        video = np.clip(noise + shift, -1.0, 1.0).astype(np.float32)
        if count:
            video[0, :, :count] = conditioning.transpose(3, 0, 1, 2) / 127.5 - 1.0
        self.calls.append({"num_conditional": n, "seed": seed, "conditioning": conditioning, "output": video})
        return torch.from_numpy(video)


def install_stand_ins(videos: dict[str, np.ndarray]) -> None:
    """Stand-ins for the modules video2world.py imports; `videos` is what easy_io.load returns per path."""

    def module(name: str, **attributes) -> None:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
        sys.modules[name].__dict__.update(attributes)

    def same_size(video: torch.Tensor, size) -> torch.Tensor:
        if tuple(video.shape[-2:]) != tuple(size):
            raise ValueError(f"the golden cases read inputs at the target size; got {tuple(video.shape)} -> {size}")
        return video

    def to_tensor(image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255)

    def unused(*args, **kwargs):
        raise AssertionError("not used by the autoregressive method")

    module("torchvision.transforms.functional", to_tensor=to_tensor, resize=same_size, center_crop=same_size)
    module("torchvision.transforms", functional=sys.modules["torchvision.transforms.functional"])
    module("torchvision", transforms=sys.modules["torchvision.transforms"])
    module("megatron.core", parallel_state=SimpleNamespace())
    module("cosmos_predict2._src.imaginaire.flags", INTERNAL=False)
    module("cosmos_predict2._src.imaginaire.utils", distributed=SimpleNamespace(), log=SimpleNamespace(info=print))
    module("cosmos_predict2._src.imaginaire.utils.easy_io", easy_io=SimpleNamespace(load=lambda p: (videos[p], {})))
    module("cosmos_predict2._src.interactive.utils.model_loader", load_model_from_checkpoint=unused)
    module("cosmos_predict2._src.predict2.inference.get_t5_emb", get_text_embedding=unused)
    module("cosmos_predict2._src.predict2.utils.model_loader", load_model_from_checkpoint=unused)


def load_official(path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("official_video2world", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    official = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(official)
    return official


def run_case(official: types.ModuleType, case: dict, input_path: str | None) -> tuple[list[dict], np.ndarray]:
    windows = RecordingWindows()
    model = SimpleNamespace(
        config=SimpleNamespace(state_t=case["state_t"]),
        tokenizer=SimpleNamespace(get_pixel_num_frames=lambda state_t: 1 + 4 * (state_t - 1)),
    )
    video = official.Video2WorldInference.generate_autoregressive_from_batch(
        SimpleNamespace(model=model, generate_vid2world=windows),
        prompt="a prompt",
        input_path=input_path,
        num_output_frames=case["num_output_frames"],
        chunk_size=case["chunk_size"],
        chunk_overlap=case["chunk_overlap"],
        guidance=7,
        num_latent_conditional_frames=FIRST_CONDITIONAL[case["inference_type"]],
        resolution=f"{HEIGHT},{WIDTH}",
        seed=case["seed"],
        num_steps=1,
    )
    return windows.calls, video.numpy()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("official_checkout", type=Path, help="a checkout of nvidia-cosmos/cosmos-predict2.5")
    parser.add_argument("--out", type=Path, default=Path("tests/golden/autoregressive.npz"))
    args = parser.parse_args(argv)
    source = args.official_checkout / OFFICIAL_FILE
    blob = subprocess.run(["git", "hash-object", str(source)], capture_output=True, text=True, check=True).stdout

    rng = np.random.RandomState(0)
    arrays: dict[str, np.ndarray] = {}
    videos: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as folder:
        image_path = str(Path(folder) / "input.png")
        image = rng.randint(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        Image.fromarray(image).save(image_path)
        videos["input.mp4"] = rng.randint(0, 256, (INPUT_VIDEO_FRAMES, HEIGHT, WIDTH, 3), dtype=np.uint8)
        arrays["input_image"], arrays["input_video"] = image, videos["input.mp4"]
        install_stand_ins(videos)
        official = load_official(source)
        inputs = {"text2world": None, "image2world": image_path, "video2world": "input.mp4"}
        records = []
        for case in CASES:
            calls, video = run_case(official, case, inputs[case["inference_type"]])
            arrays[f"{case['name']}/video"] = video  # (1, 3, T, H, W) in [-1, 1]
            for i, call in enumerate(calls):
                arrays[f"{case['name']}/{i}/conditioning"] = call["conditioning"]
                arrays[f"{case['name']}/{i}/output"] = call["output"]
            calls_meta = [{"num_conditional": c["num_conditional"], "seed": c["seed"]} for c in calls]
            records.append({**case, "calls": calls_meta})
    header = {"official_file": OFFICIAL_FILE, "official_blob": blob.strip(), "cases": records}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, header=np.array(json.dumps(header)), **arrays)  # type: ignore[arg-type]
    print(f"wrote {args.out}: {len(CASES)} cases, official blob {blob.strip()}")


if __name__ == "__main__":
    main()
