"""The multiview engine (`cosmos_ray.multiview`) on the CPU with the tiny preset: seven views of 29 frames in the
official camera order, the prompt at front_wide only, deterministic per seed; and the local CLI end to end."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from cosmos_ray.core.media import read_video
from cosmos_ray.core.multiview_spec import CAMERAS, FRAMES_PER_VIEW, MULTIVIEW_MODEL, MultiviewSpec
from cosmos_ray.core.options import EngineOptions
from cosmos_ray.core.outputs import OK, OutputStore
from cosmos_ray.core.spec import DEFAULT_NEGATIVE_PROMPT, GenerationSpec
from cosmos_ray.families import load_engine
from cosmos_ray.generator import Generator
from cosmos_ray.models.multiview_dit import CONTEXT_TOKENS_PER_VIEW, MultiviewDiT
from cosmos_ray.multiview import EMPTY_PROMPT, MultiviewEngine
from cosmos_ray.parallel import ParallelContext
from cosmos_ray.stages import to_uint8_frames
from jobs import local

TINY_SIZE = (64, 96)  # the tiny preset's trained resolution


def _spec(**fields) -> MultiviewSpec:
    return MultiviewSpec.from_dict(
        {"inference_type": "text2world", "name": "drive", "prompt": "A car on a road.", "num_steps": 1, **fields}
    )


@pytest.fixture(scope="module")
def engine() -> MultiviewEngine:
    built = load_engine(EngineOptions(source="tiny", model=MULTIVIEW_MODEL), device="cpu")
    assert isinstance(built, MultiviewEngine) and isinstance(built.generator.dit, MultiviewDiT)
    return built


@pytest.fixture(scope="module")
def first(engine):
    """The result of `_spec()` and the latents it was decoded from."""
    latents = []
    sample = engine.generator.sample_latents

    def keep(*args, **kwargs):
        latents.append(sample(*args, **kwargs))
        return latents[-1]

    engine.generator.sample_latents = keep
    try:
        result = engine(_spec())
    finally:
        del engine.generator.sample_latents
    return result, latents[0]


def test_seven_views_of_29_frames_stacked_in_time_in_camera_order(engine, first):
    result, latents = first
    assert result.frames.shape == (len(CAMERAS) * FRAMES_PER_VIEW, *TINY_SIZE, 3) and result.frames.dtype == np.uint8
    assert result.fps == 30 and result.metadata["model"] == MULTIVIEW_MODEL
    assert result.metadata["stack_mode"] == "time"
    assert result.metadata["views"] == [
        {"camera": camera, "frames": [k * FRAMES_PER_VIEW, (k + 1) * FRAMES_PER_VIEW]}
        for k, camera in enumerate(CAMERAS)
    ]
    assert CAMERAS == ("front_wide", "cross_right", "rear_right", "rear", "rear_left", "cross_left", "front_tele")
    state_t = engine.generator.info.state_t
    assert latents.shape[2] == len(CAMERAS) * state_t == 56
    # view k of the video is view k of the sequence decoded on its own
    for k in (0, 6):
        alone = to_uint8_frames(engine.generator.decode(latents[:, :, k * state_t : (k + 1) * state_t])[0])
        start, stop = result.metadata["views"][k]["frames"]
        assert np.array_equal(result.frames[start:stop], alone), CAMERAS[k]
    assert not np.array_equal(result.frames[:FRAMES_PER_VIEW], result.frames[FRAMES_PER_VIEW : 2 * FRAMES_PER_VIEW])


class _Stop(Exception):
    pass


def _latents(engine: MultiviewEngine, spec: MultiviewSpec, monkeypatch) -> torch.Tensor:
    """The sampled latents of `spec`, stopping the engine before its decode (the VAE is a pure function)."""
    sample, latents = engine.generator.sample_latents, []

    def keep(*args, **kwargs):
        latents.append(sample(*args, **kwargs))
        raise _Stop

    with monkeypatch.context() as patch:
        patch.setattr(engine.generator, "sample_latents", keep)
        with pytest.raises(_Stop):
            engine(spec)
    return latents[0]


def _generate_on_rank(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    """In a gloo group: the guided `_spec()` whole (guidance halves: cfg 2 x ulysses 1), and the latents of an
    unguided one (Ulysses 2: each rank holds 28 of the 56 frames, so the cut falls inside a view)."""
    torch.set_num_threads(1)
    with ParallelContext.init(rank, world_size, f"file://{init_file}", backend="gloo") as ctx:
        engine = load_engine(EngineOptions(source="tiny", model=MULTIVIEW_MODEL), parallel=ctx)
        assert isinstance(engine, MultiviewEngine)
        result = engine(_spec())
        sample, latents = engine.generator.sample_latents, []

        def keep(*args, **kwargs):
            latents.append(sample(*args, **kwargs))
            raise _Stop

        engine.generator.sample_latents = keep  # type: ignore[method-assign]
        try:
            engine(_spec(guidance=0))
        except _Stop:
            pass
    torch.save({"frames": None if result is None else result.frames, "latents": latents[0]}, f"{out_dir}/rank{rank}.pt")


def test_a_group_of_two_makes_the_single_process_sample(engine, first, monkeypatch, tmp_path):
    """Two gloo ranks: rank 0 returns the video one process makes (each rank decoding a run of whole views), rank 1
    returns None; the unguided latents, whose Ulysses slices cut a view, are one process's too."""
    mp.spawn(_generate_on_rank, args=(2, str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=2)
    rank0, rank1 = (torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in range(2))
    assert rank1["frames"] is None
    single = first[0].frames
    assert rank0["frames"].shape == single.shape
    assert np.abs(rank0["frames"].astype(int) - single).max() <= 1  # the cfg halves' float32 GEMMs round otherwise
    unguided = _latents(engine, _spec(guidance=0), monkeypatch)
    for rank in (rank0, rank1):
        assert ((rank["latents"] - unguided).norm() / unguided.norm()).item() < 1e-5


def test_deterministic_per_seed_and_seeds_and_prompts_differ(engine, first, monkeypatch):
    _, latents = first
    assert torch.equal(_latents(engine, _spec(), monkeypatch), latents)
    assert not torch.allclose(_latents(engine, _spec(seed=1), monkeypatch), latents)
    assert not torch.allclose(_latents(engine, _spec(prompt="A truck in the rain."), monkeypatch), latents)


def test_the_prompt_conditions_front_wide_and_the_empty_prompt_the_other_views(engine, monkeypatch):
    """Official: the prompt's embedding at front_wide, " "'s elsewhere; the unconditional pass has the default
    negative prompt at front_wide and " " elsewhere; both reach the sampler."""
    generator = engine.generator
    seen: dict[str, Any] = {}

    def spy(spec, prompts, conditional, seed, latent_frames, size, progress=None):
        seen.update(prompts=prompts, conditional=conditional, latent_frames=latent_frames, size=size)
        raise RuntimeError("stop after the spy")

    monkeypatch.setattr(generator, "sample_latents", spy)
    with pytest.raises(RuntimeError, match="stop after the spy"):
        engine(_spec(prompt="A bus at night.", guidance=3))
    prompt, negative = seen["prompts"]
    assert seen["conditional"] is None and seen["latent_frames"] == 56 and seen["size"] == TINY_SIZE
    text, empty, default_negative = generator.encode_texts(["A bus at night.", EMPTY_PROMPT, DEFAULT_NEGATIVE_PROMPT])
    assert EMPTY_PROMPT == " " and not torch.equal(empty, text)
    views = prompt.unflatten(1, (len(CAMERAS), CONTEXT_TOKENS_PER_VIEW))[0]
    negative_views = negative.unflatten(1, (len(CAMERAS), CONTEXT_TOKENS_PER_VIEW))[0]
    assert torch.equal(views[0], text[0]) and torch.equal(negative_views[0], default_negative[0])
    for k in range(1, len(CAMERAS)):
        assert torch.equal(views[k], empty[0]) and torch.equal(negative_views[k], empty[0]), CAMERAS[k]
    seen.clear()
    with pytest.raises(RuntimeError, match="stop after the spy"):
        engine(_spec(guidance=0))
    # guidance 0 still runs the unconditional pass: the official multiview guidance is uncond + g (cond - uncond)
    assert torch.equal(seen["prompts"][1], negative)


def test_the_engine_refuses_the_other_format(engine):
    with pytest.raises(TypeError, match="reads MultiviewSpec specs, not GenerationSpec"):
        engine(GenerationSpec(inference_type="text2world", name="s", prompt="p"))


def test_a_base_generator_refuses_a_multiview_spec():
    generator = Generator.from_pretrained("tiny", device="cpu")
    with pytest.raises(TypeError, match="takes the base models' spec format, not a MultiviewSpec"):
        generator(_spec())


def test_the_local_cli_writes_the_stacked_mp4(tmp_path):
    spec = {"inference_type": "text2world", "name": "drive", "prompt": "A car on a road.", "num_steps": 1}
    path = tmp_path / "multiview.json"
    path.write_text(json.dumps(spec))
    out = tmp_path / "out"
    argv = ["-i", str(path), "-o", str(out), "--preset", "tiny", "--model", MULTIVIEW_MODEL, "--device", "cpu"]
    assert local.main(argv) == 0
    store = OutputStore(str(out))
    sample_id = MultiviewSpec.from_dict(spec).sample_id
    record = store.read_record(sample_id)
    assert record is not None and record.status == OK
    assert [view["camera"] for view in record.metadata["views"]] == list(CAMERAS)
    video = read_video(store.video_url(sample_id))
    assert video.shape == (len(CAMERAS) * FRAMES_PER_VIEW, *TINY_SIZE, 3)


def test_the_local_cli_reads_specs_in_the_models_format(tmp_path, capsys):
    multiview = tmp_path / "multiview.json"
    multiview.write_text(json.dumps(_spec().to_dict()))
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"inference_type": "text2world", "name": "b", "prompt": "p", "resolution": "none"}))
    out = str(tmp_path / "out")
    assert local.main(["-i", str(multiview), "-o", out, "--preset", "tiny", "--model", "2B/post-trained"]) == 1
    assert (
        "belongs to the official multiview format, which model 2B/auto/multiview generates; run it with --model "
        "2B/auto/multiview" in capsys.readouterr().err
    )
    assert local.main(["-i", str(base), "-o", out, "--preset", "tiny", "--model", MULTIVIEW_MODEL]) == 1
    assert "field 'resolution' belongs to the base models' format, not to the multiview format of model " in (
        capsys.readouterr().err
    )
