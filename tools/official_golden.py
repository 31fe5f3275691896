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

Modules that the pieces import but never run are stubbed in this process (sys.modules): GPU-only or service
packages (megatron, transformer_engine, apex, wandb, pynvml, boto3/botocore, matplotlib, pytest) and official
modules that need a GPU or flash-attention at import time (reason1.networks.qwen2_5_vl, predict2.networks.clip).
The stub list is written into every fixture. The official code is never copied into cosmos-ray.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import hashlib
import importlib
import importlib.machinery
import json
import os
import subprocess
import sys
import types
import zlib
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent

# Imported by the official modules below but never run by this script; each with why it is stubbed.
STUBS = {
    "megatron": "model-parallel framework (GPU); parallel_state.is_initialized() answers False: no model parallelism",
    "megatron.core": "see megatron",
    "megatron.core.parallel_state": "see megatron",
    "transformer_engine": "GPU kernels of the official DiT, which this script does not run",
    "apex": "fused optimizers (training)",
    "apex.multi_tensor_apply": "see apex",
    "wandb": "experiment logging service",
    "wandb.util": "see wandb",
    "pynvml": "GPU monitoring",
    "boto3": "S3 client (checkpoints on S3)",
    "boto3.s3": "see boto3",
    "boto3.s3.transfer": "see boto3",
    "botocore": "see boto3",
    "botocore.config": "see boto3",
    "botocore.exceptions": "see boto3",
    "matplotlib": "plots (visualization)",
    "matplotlib.pyplot": "see matplotlib",
    "pytest": "imported by training test helpers",
    "cosmos_predict2._src.reason1.networks.qwen2_5_vl": "the Reason1 network: asserts flash-attention at import",
    "cosmos_predict2._src.predict2.networks.clip": "Wan2.1 CLIP embedder: calls torch.cuda at import; unused by 2B",
    "cosmos_predict2._src.interactive": "distilled-model loader, used only by Video2WorldInference.__init__",
    "cosmos_predict2._src.interactive.utils": "see cosmos_predict2._src.interactive",
    "cosmos_predict2._src.interactive.utils.model_loader": "see cosmos_predict2._src.interactive",
}


class _StubModule(types.ModuleType):
    """A module whose every attribute is an inert class: importable, constructible, never doing anything."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {"__init__": lambda self, *args, **kwargs: None, "__module__": self.__name__})


def install_stubs() -> None:
    for name in STUBS:
        module = _StubModule(name)
        module.__path__ = []
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent in sys.modules:
            setattr(sys.modules[parent], child, module)
    sys.modules["megatron.core.parallel_state"].is_initialized = lambda: False  # type: ignore[attr-defined]


class Official:
    """The official modules this script runs, imported from a checkout, with their provenance."""

    def __init__(self, checkout: Path, commit: str | None, file_commits: dict[str, str]):
        self.checkout = checkout.resolve()
        if not (self.checkout / "cosmos_predict2").is_dir():
            raise SystemExit(f"{checkout} is not a checkout of cosmos-predict2.5 (no cosmos_predict2/ folder)")
        self.commit = commit or _git_head(self.checkout)
        self.file_commits = file_commits  # files of the checkout taken from another commit
        install_stubs()
        sys.path.insert(0, str(self.checkout))
        sys.path.insert(1, str(ROOT))
        self.used: set[str] = set()

    def module(self, name: str) -> types.ModuleType:
        module = importlib.import_module(f"cosmos_predict2._src.{name}")
        self.used.add(str(module.__file__))
        return module

    def provenance(self) -> dict:
        files = {}
        for path in sorted(self.used):
            relative = os.path.relpath(path, self.checkout)
            files[relative] = {
                "commit": self.file_commits.get(relative, self.commit),
                "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16],
            }
        self.used.clear()
        return {
            "repository": "nvidia-cosmos/cosmos-predict2.5",
            "commit": self.commit,
            "files": files,
            "stubbed_modules": sorted(STUBS),
            "torch": torch.__version__,
        }


def _git_head(checkout: Path) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise SystemExit(f"{checkout} is not a git checkout: pass the commit it holds with --commit") from None


def pack(tensor: torch.Tensor | np.ndarray) -> dict:
    """A tensor as {dtype, shape, data}: its raw little-endian bytes, zlib-compressed, base64 (bf16 as uint16)."""
    if isinstance(tensor, torch.Tensor):
        tensor = tensor.detach().cpu().contiguous()
        dtype = str(tensor.dtype).removeprefix("torch.")
        array = tensor.view(torch.uint16).numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
    else:
        array, dtype = np.ascontiguousarray(tensor), str(tensor.dtype)
    data = base64.b64encode(zlib.compress(array.astype(array.dtype.newbyteorder("<")).tobytes(), 9)).decode()
    return {"dtype": dtype, "shape": list(array.shape), "data": data}


def write(out: Path, piece: str, official: Official, content: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    record = {"generated_by": "tools/official_golden.py", "official": official.provenance(), **content}
    (out / f"{piece}.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out / piece}.json ({(out / f'{piece}.json').stat().st_size // 1024} KiB)")


# --- schedules and the solver --------------------------------------------------------------------------

VARIANTS = {  # as the official experiments configure generate_samples_from_batch (see docs/generation.md)
    "post-trained": {"use_kerras_sigma": True, "conditional_frame_timestep": 0.1},
    "pre-trained": {"use_kerras_sigma": False, "conditional_frame_timestep": -1.0},
}
SHIFT = 5.0  # generate_samples_from_batch's default, which generate_vid2world keeps


def scheduler(official: Official, variant: str, num_steps: int):
    """The model's scheduler as Text2WorldModelRectifiedFlow.__init__ builds it, set up as
    generate_samples_from_batch sets it up."""
    unipc = official.module("predict2.models.fm_solvers_unipc")
    sched = unipc.FlowUniPCMultistepScheduler(num_train_timesteps=1000, shift=1, use_dynamic_shifting=False)
    sched.set_timesteps(num_steps, device="cpu", shift=SHIFT, use_kerras_sigma=VARIANTS[variant]["use_kerras_sigma"])
    return sched


def schedules(official: Official, out: Path) -> None:
    cases = {}
    for variant in VARIANTS:
        for num_steps in (35, 4, 1):
            sched = scheduler(official, variant, num_steps)
            cases[f"{variant}/{num_steps}"] = {
                "sigmas": [float(s) for s in sched.sigmas.tolist()],
                "timesteps": [int(t) for t in sched.timesteps.tolist()],
            }
    write(out, "schedules", official, {"cases": cases})


def fixed_velocity(x: torch.Tensor, timestep: float, direction: torch.Tensor) -> torch.Tensor:
    """The velocity field both sides integrate: depends on the sample and on the (integer) timestep."""
    return 0.3 * x + direction * (0.5 + timestep / 1000.0)


def unipc(official: Official, out: Path) -> None:
    cases = {}
    for variant, num_steps in (("post-trained", 5), ("pre-trained", 4), ("post-trained", 1)):
        sched = scheduler(official, variant, num_steps)
        start = torch.from_numpy(np.random.RandomState(0).standard_normal((1, 2, 3, 2, 4)).astype(np.float32))
        direction = torch.from_numpy(np.random.RandomState(1).standard_normal((1, 2, 3, 2, 4)).astype(np.float32))
        generator = torch.Generator().manual_seed(0)
        latents, steps = start, []
        for t in sched.timesteps:  # as the loop of generate_samples_from_batch calls the scheduler
            velocity = fixed_velocity(latents, float(t), direction)
            latents = sched.step(
                velocity.unsqueeze(0), t, latents.unsqueeze(0), return_dict=False, generator=generator
            )[0].squeeze(0)
            steps.append(pack(latents))
        cases[f"{variant}/{num_steps}"] = {"start": pack(start), "direction": pack(direction), "steps": steps}
    write(out, "unipc", official, {"velocity": "0.3 * x + direction * (0.5 + timestep / 1000)", "cases": cases})


# --- the official sampling loop ------------------------------------------------------------------------


class ToyNet(torch.nn.Module):
    """Stands in for the DiT: a fixed function of everything the official loop hands it, recording each call."""

    is_context_parallel_enabled = False

    def __init__(self):
        super().__init__()
        self.calls = []

    def disable_context_parallel(self):
        pass

    def forward(self, x_B_C_T_H_W, timesteps_B_T, crossattn_emb, condition_video_input_mask_B_C_T_H_W, **_):
        timesteps = timesteps_B_T.float()
        mask = condition_video_input_mask_B_C_T_H_W.float()
        self.calls.append({"timesteps": pack(timesteps), "mask_per_frame": pack(mask[:, 0, :, 0, 0])})
        return toy_velocity(x_B_C_T_H_W.float(), timesteps, crossattn_emb.float(), mask)


def toy_velocity(x, timesteps_b_t, context, mask_b_1_t_h_w):
    """The toy network's velocity (B, C, T, H, W); cosmos-ray's test calls the same function."""
    text = context.mean(dim=(1, 2)).view(-1, 1, 1, 1, 1)
    time = timesteps_b_t.view(timesteps_b_t.shape[0], 1, -1, 1, 1) / 1000.0
    return 0.5 * x + text + 0.25 * time + 0.1 * mask_b_1_t_h_w


def tiny_models():
    """cosmos-ray's tiny DiT and VAE with the tiny preset's random weights (seed 0, DiT drawn first), float32."""
    from cosmos_ray.models.dit import DiTConfig, MiniTrainDiT
    from cosmos_ray.models.vae import VAEConfig, WanVAE

    with torch.random.fork_rng():
        torch.manual_seed(0)
        dit = MiniTrainDiT(DiTConfig.preset("tiny"))
        vae = WanVAE(VAEConfig.preset("tiny"))
    return dit.eval().requires_grad_(False), vae.eval().requires_grad_(False)


def tiny_embeddings() -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt and negative-prompt embeddings (1, 16, 96) for the tiny runs: seeded, since the Reason1 text
    encoder cannot run outside the official framework (it needs flash-attention)."""
    prompt, negative = (
        torch.from_numpy(np.random.RandomState(seed).standard_normal((1, 16, 96)).astype(np.float32))
        for seed in (11, 12)
    )
    return prompt, negative


class DiTNet(torch.nn.Module):
    """cosmos-ray's DiT behind the official network call: the same inputs, by the official names."""

    is_context_parallel_enabled = False

    def __init__(self, dit):
        super().__init__()
        self.dit = dit

    def disable_context_parallel(self):
        pass

    def forward(
        self, x_B_C_T_H_W, timesteps_B_T, crossattn_emb, condition_video_input_mask_B_C_T_H_W, padding_mask, **_
    ):
        return self.dit(
            x_B_C_T_H_W.float(),
            timesteps_B_T.float(),
            crossattn_emb.float(),
            padding_mask=padding_mask.float(),
            condition_mask=condition_video_input_mask_B_C_T_H_W.float(),
        )


class ToyTokenizer:
    """Stands in for the VAE in the toy cases: fixed seeded clean latents, whatever the pixels."""

    spatial_compression_factor = 8

    def __init__(self, latents: torch.Tensor):
        self.latents = latents

    def get_latent_num_frames(self, num_pixel_frames: int) -> int:
        return 1 + (num_pixel_frames - 1) // 4

    def encode(self, state: torch.Tensor) -> torch.Tensor:
        return self.latents


def official_model(official: Official, variant: str, state_t: int, net, tokenizer):
    """A Video2WorldModelRectifiedFlow holding `net` and `tokenizer`, set up as its __init__ sets it up (without
    the checkpoint, text encoder and training parts) and configured as the 2B experiment configures it."""
    v2w = official.module("predict2.models.video2world_model_rectified_flow")
    official.module("predict2.models.text2world_model_rectified_flow")
    conditioner_config = official.module("predict2.configs.video2world.defaults.conditioner")
    lazy = official.module("imaginaire.lazy_config")
    unipc = official.module("predict2.models.fm_solvers_unipc")
    model = v2w.Video2WorldModelRectifiedFlow.__new__(v2w.Video2WorldModelRectifiedFlow)
    torch.nn.Module.__init__(model)
    model.config = v2w.Video2WorldModelRectifiedFlowConfig(
        state_t=state_t,
        precision="float32",
        min_num_conditional_frames=0,
        max_num_conditional_frames=2,
        conditional_frame_timestep=VARIANTS[variant]["conditional_frame_timestep"],
        use_kerras_sigma_at_inference=VARIANTS[variant]["use_kerras_sigma"],
    )
    model.precision = torch.float32
    model.tensor_kwargs = {"device": "cpu", "dtype": torch.float32}
    model.tensor_kwargs_fp32 = {"device": "cpu", "dtype": torch.float32}
    model.setup_data_key()
    model.sample_scheduler = unipc.FlowUniPCMultistepScheduler(
        num_train_timesteps=1000, shift=1, use_dynamic_shifting=False
    )
    conditioner = copy.deepcopy(conditioner_config.VideoPredictionConditioner)
    conditioner.use_video_condition.dropout_rate = 0.0  # the 2B experiment's conditioner settings
    conditioner.text.dropout_rate = 0.2
    model.conditioner = lazy.instantiate(conditioner)
    model.tokenizer = tokenizer
    model.net = net
    return model


def data_batch(video: torch.Tensor, num_conditional: int, prompt: torch.Tensor, negative: torch.Tensor) -> dict:
    """The batch Video2WorldInference._get_data_batch_input builds, kept in float32 on the CPU (the official one
    casts floating tensors to bf16 on the GPU)."""
    _, _, _, height, width = video.shape
    return {
        "dataset_name": "video_data",
        "video": video,
        "fps": torch.tensor([16.0]),
        "padding_mask": torch.zeros(1, 1, height, width),
        "num_conditional_frames": num_conditional,
        "t5_text_embeddings": prompt,
        "neg_t5_text_embeddings": negative,
    }


def sampling(official: Official, out: Path) -> None:
    cases = {}
    state_t, height, width = 3, 16, 32
    prompt, negative = (
        torch.from_numpy(np.random.RandomState(seed).standard_normal((1, 8, 12)).astype(np.float32)) for seed in (5, 6)
    )
    clean = torch.from_numpy(np.random.RandomState(7).standard_normal((1, 16, state_t, 2, 4)).astype(np.float32))
    for name, variant, num_conditional, guidance, seed in (
        ("text2world", "post-trained", 0, 7, 0),
        ("image2world", "post-trained", 1, 7, 1),
        ("video2world", "post-trained", 2, 7, 2),
        ("video2world-guidance0", "post-trained", 2, 0, 3),
        ("video2world-pretrained", "pre-trained", 2, 3, 4),
        ("image2world-pretrained", "pre-trained", 1, 7, 5),
    ):
        net = ToyNet()
        model = official_model(official, variant, state_t, net, ToyTokenizer(clean))
        video = torch.zeros(1, 3, 1 + 4 * (state_t - 1), height, width, dtype=torch.uint8)
        batch = data_batch(video, num_conditional, prompt, negative)
        latents = model.generate_samples_from_batch(
            batch, n_sample=1, guidance=guidance, seed=seed, is_negative_prompt=True, num_steps=3
        )
        cases[name] = {
            "variant": variant,
            "num_conditional_frames": num_conditional,
            "guidance": guidance,
            "seed": seed,
            "num_steps": 3,
            "latents": pack(latents),
            "calls": net.calls,
        }
    content = {
        "shape": [1, 16, state_t, 2, 4],
        "prompt": pack(prompt),
        "negative": pack(negative),
        "clean_latents": pack(clean),
        "network": "toy_velocity(x, timesteps, crossattn_emb, condition mask) in tools/official_golden.py",
        "cases": cases,
    }
    write(out, "sampling", official, content)


# --- whole tiny runs --------------------------------------------------------------------------------------


def official_vae(official: Official, weights: dict, dtype: torch.dtype):
    """The official WanVAE (tokenizers/wan2pt1.py) built by its own constructors with the tiny preset's widths,
    holding `weights` (official parameter names) in `dtype`, and the tokenizer interface the model uses."""
    wan = official.module("predict2.tokenizers.wan2pt1")
    original = wan._video_vae

    def tiny_video_vae(pretrained_path=None, **kwargs):  # the official builder, with the tiny width and no S3
        built = original(pretrained_path=None, dim=8, **kwargs)
        built[0].load_state_dict(weights, assign=False)
        return built

    wan._video_vae = tiny_video_vae  # type: ignore[attr-defined]  # a patch of the official module
    try:
        vae = wan.WanVAE(dtype=dtype, device="cpu", is_amp=False, temporal_window=16)
    finally:
        wan._video_vae = original  # type: ignore[attr-defined]
    interface = wan.Wan2pt1VAEInterface.__new__(wan.Wan2pt1VAEInterface)
    interface.keep_decoder_cache = interface.keep_encoder_cache = False
    interface.model = vae
    interface.chunk_duration = 81
    return vae, interface


def tiny_runs(official: Official, out: Path) -> None:
    dit, our_vae = tiny_models()
    _, tokenizer = official_vae(official, our_vae.state_dict(), torch.float32)
    prompt, negative = tiny_embeddings()
    inference = official.module("predict2.inference.video2world")
    media = ROOT / "examples" / "media"
    state_t, resolution = 3, (16, 32)
    num_frames = 1 + 4 * (state_t - 1)
    cases = {}
    for name, num_conditional, source, seed in (
        ("text2world", 0, None, 0),
        ("image2world", 1, media / "square.png", 1),
        ("video2world", 2, media / "square.mp4", 2),
    ):
        if source is None:
            video = torch.zeros(1, 3, num_frames, *resolution, dtype=torch.uint8)
        elif source.suffix == ".png":
            video = inference.read_and_process_image(str(source), list(resolution), num_frames, resize=True)
        else:
            video = inference.read_and_process_video(str(source), list(resolution), num_frames, num_conditional)
        model = official_model(official, "post-trained", state_t, DiTNet(dit), tokenizer)
        batch = data_batch(video, num_conditional, prompt, negative)
        latents = model.generate_samples_from_batch(
            batch, n_sample=1, guidance=7, seed=seed, is_negative_prompt=True, num_steps=3
        )
        decoded = model.decode(latents)  # (1, 3, T, H, W), the official VAE decode
        cases[name] = {
            "num_conditional_frames": num_conditional,
            "input": None if source is None else f"examples/media/{source.name}",
            "seed": seed,
            "num_steps": 3,
            "guidance": 7,
            "latents": pack(latents),
            "video_frames_0_4_8": pack(decoded[:, :, ::4]),
        }
    content = {
        "model": "cosmos-ray tiny preset (DiT as the network; its VAE weights in the official VAE code)",
        "state_t": state_t,
        "resolution": list(resolution),
        "embeddings": "tiny_embeddings() in tools/official_golden.py",
        "cases": cases,
    }
    write(out, "tiny_runs", official, content)


# --- VAE statistics, text normalization ---------------------------------------------------------------


@contextlib.contextmanager
def captured(module: torch.nn.Module, pre: bool):
    """Records the input (pre) or output of `module` on each call."""
    seen = []
    if pre:
        handle = module.register_forward_pre_hook(lambda mod, args: seen.append(args[0].clone()))
    else:
        handle = module.register_forward_hook(lambda mod, args, output: seen.append(output.clone()))
    try:
        yield seen
    finally:
        handle.remove()


def vae(official: Official, out: Path) -> None:
    weights = tiny_models()[1].state_dict()
    cases = {}
    for dtype in (torch.bfloat16, torch.float32):
        wan_vae, tokenizer = official_vae(official, weights, dtype)
        video = torch.from_numpy(np.random.RandomState(0).uniform(-1, 1, (1, 3, 5, 16, 16)).astype(np.float32))
        video = video.to(dtype)
        with captured(wan_vae.model.conv1, pre=False) as moments:
            latents = tokenizer.encode(video)
        given = torch.from_numpy(np.random.RandomState(1).standard_normal((1, 16, 2, 2, 2)).astype(np.float32))
        given = given.to(dtype)
        with captured(wan_vae.model.conv2, pre=True) as denormalized:
            tokenizer.decode(given)
        cases[str(dtype).removeprefix("torch.")] = {
            "mean": pack(wan_vae.scale[0]),
            "inv_std": pack(wan_vae.scale[1]),
            "video": pack(video),
            "conv1_output": pack(moments[0]),
            "latents": pack(latents),
            "given_latents": pack(given),
            "denormalized": pack(denormalized[0]),
        }
    write(out, "vae", official, {"weights": "cosmos-ray tiny preset VAE", "cases": cases})


def text_norm(official: Official, out: Path) -> None:
    encoder = official.module("predict2.text_encoders.text_encoder")
    rng = np.random.RandomState(0)
    hidden = rng.standard_normal((2, 6, 64)).astype(np.float32) * rng.uniform(0.1, 40, (2, 6, 1)) + rng.uniform(
        -5, 5, (2, 6, 1)
    )
    cases = {}
    for dtype in (torch.bfloat16, torch.float32):
        states = torch.from_numpy(hidden.astype(np.float32)).to(dtype)
        cases[str(dtype).removeprefix("torch.")] = {
            "hidden": pack(states),
            "normalized": pack(encoder.TextEncoder.mean_normalize(states)),
        }
    write(out, "text_norm", official, {"cases": cases})


# --- conditioning media -----------------------------------------------------------------------------------


def make_media(folder: Path) -> dict[str, Path]:
    """Small inputs with the awkward properties real inputs have; written once, kept with the fixtures."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    yy, xx = np.mgrid[0:37, 0:53]
    rgb = np.stack([(xx * 4.8) % 256, (yy * 6.9) % 256, ((xx + yy) * 2.6) % 256], -1).astype(np.uint8)
    rgb[10:20, 15:30] = (250, 120, 10)
    paths = {name: folder / name for name in ("odd.png", "rgba.png", "gray.png", "palette.png", "bt709.mp4")}
    Image.fromarray(rgb).save(paths["odd.png"])
    alpha = rng.randint(0, 256, rgb.shape[:2]).astype(np.uint8)
    Image.fromarray(np.dstack([rgb[:33, :47], alpha[:33, :47]])).save(paths["rgba.png"])
    Image.fromarray(rgb[:29, :41]).convert("L").save(paths["gray.png"])
    Image.fromarray(rgb[:31, :45]).quantize(colors=16).save(paths["palette.png"])
    frames = [np.roll(rgb[:34, :50], shift * 3, axis=1) for shift in range(9)]
    write_bt709_video(paths["bt709.mp4"], frames)
    return paths


def write_bt709_video(path: Path, frames: list[np.ndarray]) -> None:
    """H.264 yuv420p converted with the BT.709 matrix and tagged BT.709 (as camera and screen recordings are)."""
    import imageio_ffmpeg

    height, width = frames[0].shape[:2]
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
        "-s", f"{width}x{height}", "-r", "16", "-i", "-",
        "-vf", "scale=out_color_matrix=bt709:out_range=tv", "-c:v", "libx264", "-pix_fmt", "yuv420p",
        "-crf", "18", "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709",
        "-bitexact", str(path),
    ]  # fmt: skip
    subprocess.run(command, input=b"".join(np.ascontiguousarray(f).tobytes() for f in frames), check=True)


RESIZE_CASES = ((37, 53), (100, 30), (8, 9), (32, 48), (33, 47))


def resize_input_clip(height: int, width: int) -> torch.Tensor:
    """A uint8 (2, 3, H, W) clip with edges and gradients, for resize_input."""
    yy, xx = np.mgrid[0:height, 0:width]
    frame = np.stack(
        [(xx * 255 // max(width - 1, 1)), (yy * 255 // max(height - 1, 1)), ((xx // 3 + yy // 2) % 2) * 255]
    )
    return torch.from_numpy(np.stack([frame, 255 - frame]).astype(np.uint8))


def media(official: Official, out: Path) -> None:
    inference = official.module("predict2.inference.video2world")
    easy_io = official.module("imaginaire.utils.easy_io.easy_io")
    paths = make_media(out / "media")
    resolution = [32, 48]
    cases = {}
    for name in ("odd.png", "rgba.png", "gray.png", "palette.png"):
        frames = inference.read_and_process_image(str(paths[name]), resolution, 5, resize=True)
        cases[name] = {"frames": pack(frames[0, :, :1])}  # (C, 1, H, W): the image frame; the rest are zeros
    decoded, _ = easy_io.load(str(paths["bt709.mp4"]))  # the official video reader (imageio + PyAV)
    processed = inference.read_and_process_video(str(paths["bt709.mp4"]), resolution, 9, 2, resize=True)
    cases["bt709.mp4"] = {"decoded_last5": pack(decoded[-5:]), "frames": pack(processed[0, :, :5])}
    resized = {}
    for size in RESIZE_CASES:
        resized[f"{size[0]}x{size[1]}"] = pack(inference.resize_input(resize_input_clip(*size), resolution))
    content = {"resolution": resolution, "read": cases, "resize_input": resized}
    write(out, "media", official, content)


PIECES = {
    "schedules": schedules,
    "unipc": unipc,
    "sampling": sampling,
    "tiny_runs": tiny_runs,
    "vae": vae,
    "text_norm": text_norm,
    "media": media,
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
