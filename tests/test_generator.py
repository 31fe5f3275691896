"""Generator with the tiny preset on CPU: the video, its metadata and progress, conditioning frames, bit-identical
reruns, input errors, the distilled model, a parallel group of gloo ranks, and end-to-end parity with diffusers'
pipeline (and its benchmark). (Where its weights come from: test_generator_sources.py; the local CLI:
test_local_cli.py.)"""

import json

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from cosmos_ray.conditioning import read_conditioning
from cosmos_ray.core.media import MediaError, write_mp4
from cosmos_ray.core.progress import Step
from cosmos_ray.core.spec import SpecError
from cosmos_ray.generator import Generator, to_uint8_frames
from cosmos_ray.parallel import ParallelContext
from cosmos_ray.sampling.few_step import FewStepSampler
from cosmos_ray.sampling.guided import GuidedSampler, SamplerConfig, initial_noise
from cosmos_ray.sampling.schedule import ScheduleConfig
from tests.generator_helpers import KINDS, make_spec

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # diffusers + numpy 2


@pytest.fixture(scope="module")
def generator() -> Generator:
    return Generator.from_pretrained("tiny", device="cpu")


@pytest.mark.parametrize("kind", KINDS)
def test_frames_size_fps_and_metadata(generator, kind):
    spec = make_spec(kind, fps=24, seed=11)
    result = generator(spec)
    assert result.frames.dtype == np.uint8 and result.frames.shape == (9, 64, 96, 3)  # "none": 64x96
    assert result.fps == 24
    meta = result.metadata
    assert meta["spec"] == spec.to_dict() and meta["sample_id"] == spec.sample_id
    assert (meta["seed"], meta["model"], meta["weights"]) == (11, "2B/post-trained", "tiny")
    assert (meta["num_steps"], meta["evaluations"], meta["guidance"], meta["offload"]) == (3, 4, 7, "none")
    assert (meta["resolution"], meta["num_frames"], meta["fps"]) == ([64, 96], 9, 24)
    assert set(meta["timings_s"]) == {"text_encode", "conditioning", "sampling", "decode", "total"}
    json.dumps(meta)  # records must be JSON


def test_explicit_resolution_and_frame_count(generator):
    result = generator(make_spec("text2world", resolution="32,48", cosmos_ray_num_frames=5, guidance=0))
    assert result.frames.shape == (5, 32, 48, 3)


@pytest.mark.parametrize("num_output_frames", [77, 5])
def test_a_spec_without_cosmos_ray_num_frames_makes_the_native_93_frames(generator, num_output_frames):
    """As the official non-autoregressive inference: the model's 24 latent frames, whatever
    `num_output_frames` says (it only matters in the official autoregressive mode)."""
    spec = make_spec("text2world", resolution="16,16", cosmos_ray_num_frames=None, num_output_frames=num_output_frames)
    assert generator.info.state_t == 24 and generator.num_frames(spec) == 93
    result = generator(spec)
    assert result.frames.shape == (93, 16, 16, 3) and result.metadata["num_frames"] == 93


def test_progress_is_reported_per_step(generator):
    seen: list[Step] = []
    generator(make_spec("text2world", num_steps=2), progress=seen.append)
    assert seen == [Step(1, 2), Step(2, 2)]  # num_steps, although post-trained sampling evaluates the model 3 times
    assert (seen[0].chunk, seen[0].num_chunks, str(seen[0])) == (1, 1, "step 1/2")


@pytest.mark.parametrize("kind, num_pixel", [("image2world", 1), ("video2world", 5)])
def test_conditional_frames_reproduce_the_input(generator, kind, num_pixel):
    """The generated video starts with the conditioning frames as the VAE reproduces them."""
    spec = make_spec(kind)
    result = generator(spec)
    round_trip = to_uint8_frames(generator.decode(generator.encode_conditioning(spec, 64, 96))[0])
    input_frames = read_conditioning(spec, num_pixel, 64, 96)
    assert round_trip.shape == input_frames.shape
    held = np.abs(result.frames[:num_pixel].astype(float) - round_trip).mean()
    # The held latents end 0.5% of the way towards their noise (the first sigma is 200/201, not 1).
    assert held < 3.0
    assert np.abs(result.frames[num_pixel:].astype(float) - round_trip[-1:]).mean() > 5 * held


def test_same_spec_and_seed_give_bit_identical_latents(generator):
    spec = make_spec("video2world", seed=5)
    first = generator.generate_latents(spec)
    generator(make_spec("text2world", prompt="something else entirely", seed=6))  # other work in between
    again = generator.generate_latents(spec)
    assert torch.equal(first, again)
    assert not torch.equal(generator.generate_latents(make_spec("video2world", seed=6)), first)


def test_short_video_input_names_the_sample(generator, tmp_path):
    path = tmp_path / "short.mp4"
    frames = np.zeros((3, 64, 96, 3), np.uint8)
    path.write_bytes(write_mp4(frames, fps=16))
    with pytest.raises(MediaError, match="sample 'video2world-test': input video .* has 3 frames"):
        generator(make_spec("video2world", input_path=str(path)))


def test_too_few_output_frames_for_the_conditional_frames(generator):
    with pytest.raises(
        SpecError, match="sample 'video2world-test': field 'cosmos_ray_num_frames' 1 frames make 1 latent"
    ):
        generator(make_spec("video2world", cosmos_ray_num_frames=1))


def test_one_call_makes_one_video_so_several_generations_are_refused(generator):
    with pytest.raises(SpecError, match="field 'num_generations' asks for 2 videos; one call makes one"):
        generator(make_spec("text2world", num_generations=2))


# --- the distilled model ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def distilled() -> Generator:
    return Generator.from_pretrained("tiny", model="2B/distilled", device="cpu")


def test_distilled_model_takes_its_recipe_with_tiny_shapes(distilled, generator):
    assert distilled.sampler == FewStepSampler()
    assert (distilled.dit.cfg.timestep_scale, distilled.dit.cfg.fp32_modulation) == (1.0, False)
    assert distilled.dit.cfg.model_channels == generator.dit.cfg.model_channels  # the tiny shapes
    assert torch.equal(distilled.dit.blocks[0].mlp.layer1.weight, generator.dit.blocks[0].mlp.layer1.weight)


def test_distilled_model_runs_four_steps_without_guidance(distilled, monkeypatch):
    seen: list = []
    encoded: list[list[str]] = []
    encode = distilled.text_encoder.encode

    def recording_encode(prompts, *args):
        encoded.append(prompts)
        return encode(prompts, *args)

    monkeypatch.setattr(distilled.text_encoder, "encode", recording_encode)
    spec = make_spec("text2world", num_steps=35, guidance=7)
    latents = distilled.generate_latents(spec, progress=seen.append)
    assert seen == [Step(1, 4), Step(2, 4), Step(3, 4), Step(4, 4)]
    assert encoded == [[spec.prompt]]  # the negative prompt is never encoded
    assert torch.equal(distilled.generate_latents(make_spec("text2world", guidance=0, num_steps=4)), latents)
    seen.clear()
    distilled.generate_latents(make_spec("text2world", num_steps=2), progress=seen.append)
    assert seen == [Step(1, 2), Step(2, 2)]  # fewer steps take the first ones


def test_distilled_metadata_records_what_ran(distilled):
    meta = distilled(make_spec("text2world", num_steps=35, guidance=7)).metadata
    assert (meta["model"], meta["num_steps"], meta["evaluations"], meta["guidance"]) == ("2B/distilled", 35, 4, 0)


@pytest.mark.parametrize("kind", ["image2world", "video2world"])
def test_distilled_model_refuses_conditioned_specs_naming_the_field(distilled, kind):
    with pytest.raises(SpecError, match=f"field 'inference_type' {kind} is not supported by model 2B/distilled"):
        distilled(make_spec(kind))


# --- a parallel group --------------------------------------------------------------------------------------

PARALLEL_SPECS = (make_spec("video2world", seed=3), make_spec("text2world", guidance=0))  # cfg split, Ulysses


def _generate_on_rank(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    with ParallelContext.init(rank, world_size, f"file://{init_file}", backend="gloo") as ctx:
        generator = Generator.from_pretrained("tiny", parallel=ctx)
        results = [generator(spec) for spec in PARALLEL_SPECS]
        torch.save([None if r is None else r.frames for r in results], f"{out_dir}/rank{rank}.pt")


def test_a_parallel_group_makes_the_single_process_video(generator, tmp_path):
    """Two gloo ranks (guidance split for guidance 7, Ulysses for guidance 0, split decode): rank 0 returns
    the video one process makes, rank 1 returns None."""
    mp.spawn(_generate_on_rank, args=(2, str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=2)
    rank0, rank1 = (torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in range(2))
    assert rank1 == [None, None]
    for frames, spec in zip(rank0, PARALLEL_SPECS):
        single = generator(spec).frames
        assert frames.shape == single.shape
        assert np.abs(frames.astype(int) - single).max() <= 1


# --- end-to-end parity with diffusers' Cosmos2_5_PredictBasePipeline ---------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@torch.no_grad()
def test_video_matches_diffusers_pipeline(generator, kind):
    """Same weights (through our key tables), text embeddings and initial noise: the same float video.

    diffusers feeds the DiT exact sigmas, so ours runs with unquantized timesteps here.
    """
    from tests.oracles import diffusers_pipeline  # imported here: the spawned ranks above need no diffusers

    ours = Generator(
        generator.dit,
        generator.vae,
        generator.text_encoder,
        generator.info,
        GuidedSampler(SamplerConfig(ScheduleConfig(quantize_timesteps=False))),
        device=generator.device,
        dtype=generator.dtype,
    )
    spec = make_spec(kind)
    latents = ours.generate_latents(spec)
    video = (ours.decode(latents) + 1) / 2  # (1, 3, T, H, W) in [0, 1]

    num_latent = spec.num_conditional_frames
    conditioning = None
    if num_latent:
        frames = read_conditioning(spec, 1 + 4 * (num_latent - 1), 64, 96)
        conditioning = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0
    pipeline = diffusers_pipeline(generator.dit, generator.vae)
    theirs = pipeline(
        video=conditioning,
        prompt_embeds=generator.text_encoder.encode([spec.prompt]),
        negative_prompt_embeds=generator.text_encoder.encode([spec.negative_prompt]),
        height=64,
        width=96,
        num_frames=spec.cosmos_ray_num_frames,
        num_inference_steps=spec.num_steps + 1,
        guidance_scale=spec.guidance,
        latents=initial_noise(spec.seed, tuple(latents.shape)),
        output_type="pt",
        num_latent_conditional_frames=max(num_latent or 0, 1),
    ).frames  # (1, T, 3, H, W) in [0, 1]
    theirs = theirs.permute(0, 2, 1, 3, 4)
    assert ((video - theirs).norm() / theirs.norm()).item() < 1e-4


def test_benchmark_smoke_runs(tmp_path):
    from bench.generator import main as bench_main

    out = tmp_path / "generate.jsonl"
    bench_main(["--device", "cpu", "--smoke", "--types", "video2world", "--out", str(out)])
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["impl"] for r in records] == ["ours", "diffusers"]
    for record in records:
        assert record["evaluations"] == 3 and record["ms_per_evaluation"] > 0 and record["ms_decode"] > 0
    assert records[1]["frames_rel_err_vs_ours"] < 0.01
