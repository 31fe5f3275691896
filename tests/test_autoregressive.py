"""The autoregressive long-video mode: the official algorithm's golden outputs, hand-chained windows, a parallel
group, bounded device memory, progress and errors. Tiny preset on CPU."""

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from cosmos_ray import autoregressive
from cosmos_ray.core.progress import Step
from cosmos_ray.core.spec import GenerationSpec, SpecError
from cosmos_ray.generator import Generator, to_uint8_frames
from cosmos_ray.parallel import ParallelContext

GOLDEN = Path(__file__).resolve().parent / "golden" / "autoregressive.npz"
MEDIA = Path(__file__).resolve().parent.parent / "examples" / "media"  # 64x96: square.png, square.mp4 (17 frames)
INPUTS = {"text2world": None, "image2world": str(MEDIA / "square.png"), "video2world": str(MEDIA / "square.mp4")}
STATE_T = 4  # windows of 13 frames keep the tiny runs short
WINDOW_FRAMES = 13


@pytest.fixture(scope="module")
def generator() -> Generator:
    generator = Generator.from_pretrained("tiny", device="cpu")
    generator.info = dataclasses.replace(generator.info, state_t=STATE_T)
    return generator


def long_spec(kind: str = "text2world", **fields) -> GenerationSpec:
    defaults = dict(
        inference_type=kind,
        name=f"{kind}-long",
        prompt=f"a {kind} prompt",
        input_path=INPUTS[kind],
        resolution="32,48",
        num_steps=2,
        enable_autoregressive=True,
        chunk_size=9,
        chunk_overlap=1,
        num_output_frames=17,  # two windows: 9 frames, then 8 new ones
    )
    return GenerationSpec(**{**defaults, **fields})


# --- the official algorithm, run on a stand-in model (tools/official_autoregressive_golden.py) -------------


def golden_cases() -> list[dict]:
    with np.load(GOLDEN) as golden:
        return json.loads(str(golden["header"]))["cases"]


@pytest.mark.parametrize("case", golden_cases(), ids=lambda case: case["name"])
def test_layout_conditioning_seeds_and_stitching_match_the_official_algorithm(case):
    """The official script's windows, replayed: each window gets the conditioning frames, latent frame count
    and seed the official code gave it, returns what the stand-in returned there, and the stitched video is
    the official one."""
    golden = dict(np.load(GOLDEN))
    name, kind = case["name"], case["inference_type"]
    height, width = golden["input_image"].shape[:2]
    input_path = {"text2world": None, "image2world": "/golden/input.png", "video2world": "/golden/input.mp4"}[kind]
    spec = GenerationSpec(
        inference_type=kind,
        name=name,
        prompt="a prompt",
        input_path=input_path,
        seed=case["seed"],
        enable_autoregressive=True,
        num_output_frames=case["num_output_frames"],
        chunk_size=case["chunk_size"],
        chunk_overlap=case["chunk_overlap"],
    )
    # What conditioning.read_conditioning returns for the spec's first window: the image, or the video's last frames.
    first_frames = {
        "text2world": np.zeros((0, height, width, 3), np.uint8),
        "image2world": golden["input_image"][None],
        "video2world": golden["input_video"][-(1 + 4 * ((spec.num_conditional_frames or 0) - 1)) :],
    }[kind]
    clip = autoregressive.InputClip(first_frames, repeat_last=kind == "video2world")
    chunks = autoregressive.plan(spec)
    assert len(chunks) == len(case["calls"])

    def replay(chunk: autoregressive.Chunk, conditioning: np.ndarray | None) -> np.ndarray:
        call = case["calls"][chunk.index]
        assert (chunk.num_conditional, chunk.seed) == (call["num_conditional"], call["seed"])
        expected = golden[f"{name}/{chunk.index}/conditioning"]
        got = np.zeros((0, height, width, 3), np.uint8) if conditioning is None else conditioning
        np.testing.assert_array_equal(got, expected, err_msg=f"conditioning of window {chunk.index}")
        output = torch.from_numpy(golden[f"{name}/{chunk.index}/output"][0])  # (3, T, H, W) in [-1, 1]
        return to_uint8_frames(output)[: chunk.length]

    video = autoregressive.generate(chunks, replay, clip, frame_shape=(height, width), temporal_compression=4)
    np.testing.assert_array_equal(video, to_uint8_frames(torch.from_numpy(golden[f"{name}/video"][0])))


def test_golden_cases_cover_every_type_and_the_overlap_corners():
    cases = golden_cases()
    assert {case["inference_type"] for case in cases} == {"text2world", "image2world", "video2world"}
    assert {case["chunk_overlap"] for case in cases} >= {0, 1, 2, 3}
    assert max(len(case["calls"]) for case in cases) >= 3


# --- the model: a long video is its windows, chained by hand ------------------------------------------------


@pytest.mark.parametrize("kind", ["text2world", "image2world", "video2world"])
def test_two_windows_equal_two_single_window_runs_chained_by_hand(generator, tmp_path, kind):
    """Window 1 of the default overlap is image2world from window 0's last frame with seed + 1: two plain
    specs, the second reading that frame from a PNG, give the long video's frames exactly."""
    spec = long_spec(kind, seed=4)
    single: dict[str, Any] = dict(resolution=spec.resolution, num_steps=spec.num_steps, num_output_frames=WINDOW_FRAMES)
    first = generator(
        GenerationSpec(
            inference_type=kind, name="first", prompt=spec.prompt, input_path=spec.input_path, seed=4, **single
        )
    )
    Image.fromarray(first.frames[spec.chunk_size - 1]).save(tmp_path / "last.png")
    second = generator(
        GenerationSpec(
            inference_type="image2world",
            name="second",
            prompt=spec.prompt,
            input_path=str(tmp_path / "last.png"),
            seed=5,
            **single,
        )
    )
    by_hand = np.concatenate([first.frames[: spec.chunk_size], second.frames[1 : spec.chunk_size]])

    result = generator(spec)
    assert result.frames.shape == (17, 32, 48, 3)
    np.testing.assert_array_equal(result.frames, by_hand)


def test_metadata_records_every_window(generator):
    result = generator(long_spec(num_output_frames=20, seed=3))  # windows [0, 9), [8, 17), [16, 20)
    meta = result.metadata
    assert meta["num_frames"] == 20 and meta["spec"]["enable_autoregressive"] is True
    assert [(c["frames"], c["seed"], c["conditional_frames"]) for c in meta["chunks"]] == [
        ([0, 9], 3, 0),
        ([8, 17], 4, 1),
        ([16, 20], 5, 1),
    ]
    assert all(c["seconds"] > 0 for c in meta["chunks"])
    assert {"text_encode", "conditioning", "sampling", "decode", "total"} <= set(meta["timings_s"])
    json.dumps(meta)


def test_progress_reports_each_step_of_each_window(generator):
    seen: list[Step] = []
    generator(long_spec(num_steps=2), progress=seen.append)
    total = seen[0].total
    assert [(s.chunk, s.num_chunks, s.step) for s in seen] == [
        (chunk, 2, step) for chunk in (1, 2) for step in range(1, total + 1)
    ]
    fractions = [s.fraction for s in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert str(seen[0]) == f"chunk 1/2 step 1/{total}"


@pytest.mark.parametrize(
    "fields, field, words",
    [
        ({"chunk_size": WINDOW_FRAMES + 4}, "chunk_size", f"at most {WINDOW_FRAMES}, the frames this model"),
        ({"chunk_overlap": STATE_T + 1}, "chunk_overlap", f"{STATE_T + 1} latent frames, more than the {STATE_T}"),
    ],
)
def test_a_layout_beyond_the_models_window_names_the_field(generator, fields, field, words):
    with pytest.raises(SpecError, match=f"sample 'text2world-long': field '{field}'") as error:
        generator(long_spec(**fields))
    assert words in error.value.reason


def test_single_window_latents_refuse_an_autoregressive_spec(generator):
    with pytest.raises(ValueError, match="autoregressive"):
        generator.generate_latents(long_spec())


# --- a parallel group ----------------------------------------------------------------------------------------

PARALLEL_SPECS = (long_spec(seed=3), long_spec("video2world", guidance=0))  # cfg split, Ulysses


def _generate_on_rank(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    with ParallelContext.init(rank, world_size, f"file://{init_file}", backend="gloo") as ctx:
        generator = Generator.from_pretrained("tiny", parallel=ctx)
        generator.info = dataclasses.replace(generator.info, state_t=STATE_T)
        results = [generator(spec) for spec in PARALLEL_SPECS]
        torch.save([None if r is None else r.frames for r in results], f"{out_dir}/rank{rank}.pt")


def test_a_parallel_group_makes_the_single_process_long_video(generator, tmp_path):
    """Two gloo ranks (guidance split, then Ulysses; split decode) chain the windows as one process does:
    rank 0 returns the single-process video, rank 1 None."""
    mp.spawn(_generate_on_rank, args=(2, str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=2)
    rank0, rank1 = (torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in range(2))
    assert rank1 == [None, None]
    for frames, spec in zip(rank0, PARALLEL_SPECS):
        single = generator(spec).frames
        assert frames.shape == single.shape == (17, 32, 48, 3)
        assert np.abs(frames.astype(int) - single).max() <= 1


# --- device memory is bounded by one window -------------------------------------------------------------------


class LiveTensorPeak(TorchDispatchMode):
    """The peak of the bytes held by tensors that torch ops create while active (the storages still alive
    after each op). On a CPU run this stands for the device: the driver keeps finished frames in numpy
    arrays, which are not torch storages."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                self.live[storage._cdata] = (StorageWeakRef(storage), storage.nbytes())
        self.live = {key: entry for key, entry in self.live.items() if not entry[0].expired()}
        self.peak = max(self.peak, sum(nbytes for _, nbytes in self.live.values()))
        return out


def test_the_instrument_sees_tensors_that_are_kept():
    def run(keep: bool) -> int:
        kept = []
        with LiveTensorPeak() as tracker:
            for _ in range(10):
                tensor = torch.ones(1000) * 2  # 4000 bytes
                if keep:
                    kept.append(tensor)
        return tracker.peak

    assert run(keep=False) <= 3 * 4000 and run(keep=True) >= 10 * 4000


def test_peak_tensor_memory_does_not_grow_with_the_number_of_windows(generator):
    small = Generator(
        generator.dit,
        generator.vae,
        generator.text_encoder,
        dataclasses.replace(generator.info, state_t=2),  # windows of 5 frames
        generator.sampler,
        device=generator.device,
        dtype=generator.dtype,
    )
    spec = long_spec("video2world", resolution="16,16", num_steps=1, chunk_size=5, num_output_frames=5)
    small(spec)  # caches the prompt embeddings, so every measured run does the same work per window
    peaks = {}
    for num_chunks in (1, 2, 3, 4):
        frames = spec.chunk_size + (num_chunks - 1) * (spec.chunk_size - spec.chunk_overlap)
        with LiveTensorPeak() as tracker:
            result = small(spec.model_copy(update={"num_output_frames": frames}))
        assert result is not None and len(result.metadata["chunks"]) == num_chunks
        peaks[num_chunks] = tracker.peak
    assert peaks[2] == peaks[3] == peaks[4], peaks  # later windows repeat the same work
    assert peaks[2] <= 1.05 * peaks[1], peaks  # the first differs only by its conditioning


def test_benchmark_smoke_runs(tmp_path):
    from bench.autoregressive import main as bench_main

    out = tmp_path / "autoregressive.jsonl"
    bench_main(["--device", "cpu", "--smoke", "--out", str(out)])
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["chunks"], r["frames"], len(r["s_per_chunk"])) for r in records] == [(1, 9, 1), (2, 17, 2)]
    assert all(r["s_per_evaluation"] > 0 and r["peak_gib"] is None for r in records)  # no peak on a CPU
