"""GPUGroup on a local Ray with logical GPUs: two tiny-preset ranks on CPU (gloo), failures per sample."""

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import ray

from cosmos_ray.core.media import MediaError
from cosmos_ray.core.options import EngineOptions
from cosmos_ray.core.progress import Cancelled, Step
from cosmos_ray.core.spec import GenerationSpec, SpecError
from pipelines.group import GPUGroup, GroupConfig, SampleError, wait_for_ranks

pytestmark = pytest.mark.ray  # needs a local Ray cluster: `pytest -m 'not ray'` skips it

GROUP_NAME = "test-group"


def tiny_spec(**fields) -> GenerationSpec:
    data = {
        "inference_type": "text2world",
        "name": "group-test",
        "prompt": "A red ball rolls across a table.",
        "cosmos_ray_num_frames": 9,
        "num_steps": 2,
        "guidance": 0,
        **fields,
    }
    return GenerationSpec.from_dict(data)


def placement_group_state(name: str) -> str | None:
    states = [info["state"] for info in ray.util.placement_group_table().values() if info["name"] == name]
    return states[-1] if states else None


@pytest.fixture(scope="module")
def group(ray_session):
    group = GPUGroup(GroupConfig(gpus_per_group=2, failure_grace_s=5), name=GROUP_NAME)
    yield group
    group.shutdown()


def test_group_holds_a_strict_pack_placement_group_of_one_gpu_per_rank(group):
    (info,) = [info for info in ray.util.placement_group_table().values() if info["name"] == GROUP_NAME]
    assert info["state"] == "CREATED"
    assert info["strategy"] == "STRICT_PACK"
    assert list(info["bundles"].values()) == [{"GPU": 1.0, "CPU": 1.0}] * 2
    assert len(group.workers) == 2


def test_generate_returns_rank_zero_video_from_both_ranks(group):
    result = group.generate(tiny_spec(fps=24))
    assert result.frames.dtype == np.uint8 and result.frames.shape == (9, 64, 96, 3)
    assert result.fps == 24
    assert result.metadata["world_size"] == 2
    assert result.metadata["timings_s"]["sampling"] > 0


def test_progress_reports_each_step_of_rank_zero_in_the_calling_thread(group):
    steps, threads = [], set()
    for event in group.stream(tiny_spec(num_steps=3)):
        if isinstance(event, Step):
            steps.append(event)
            threads.add(threading.get_ident())
    total = steps[-1].total
    assert total >= 3  # the sampler's model evaluations: at least one per step
    assert steps == [Step(step, total) for step in range(1, total + 1)]
    assert threads == {threading.get_ident()}


def test_a_long_video_runs_its_windows_on_both_ranks_and_reports_each(group):
    """An autoregressive spec: two windows, each denoised context-parallel; progress per window and step."""
    spec = tiny_spec(
        enable_autoregressive=True,
        num_output_frames=17,
        chunk_size=9,
        chunk_overlap=1,
        resolution="32,32",
        cosmos_ray_num_frames=None,  # the length is num_output_frames
    )
    *steps, result = group.stream(spec)
    assert result.frames.shape == (17, 32, 32, 3)
    assert [chunk["frames"] for chunk in result.metadata["chunks"]] == [[0, 9], [8, 17]]
    total = steps[0].total
    assert [(s.chunk, s.num_chunks, s.step) for s in steps] == [
        (chunk, 2, step) for chunk in (1, 2) for step in range(1, total + 1)
    ]


def test_a_cancelled_sample_stops_on_both_ranks_between_steps_and_the_group_goes_on(group):
    steps = []
    with pytest.raises(SampleError) as caught:
        for event in group.stream(tiny_spec(num_steps=20), key="to-cancel"):
            steps.append(event)
            if len(steps) == 2:
                group.cancel("to-cancel")
    assert isinstance(caught.value.cause, Cancelled) and not caught.value.group_broken
    assert 2 <= len(steps) < steps[0].total  # stopped between steps, well before the end
    restarts = group.restarts
    assert group.generate(tiny_spec(seed=5)).frames.shape == (9, 64, 96, 3)  # same workers, next sample
    assert group.restarts == restarts


def test_a_sample_cancelled_before_it_starts_stops_at_its_first_step(group):
    group.cancel("early")
    with pytest.raises(SampleError) as caught:
        list(group.stream(tiny_spec(num_steps=20), key="early"))
    assert isinstance(caught.value.cause, Cancelled) and "step 1/" in str(caught.value.cause)


def test_calls_from_two_threads_both_complete(group):
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(group.generate, tiny_spec(seed=seed)) for seed in (1, 2)]
        first, second = (future.result(timeout=300) for future in futures)  # ranks in different samples would hang
    assert first.metadata["seed"] == 1 and second.metadata["seed"] == 2
    assert not np.array_equal(first.frames, second.frames)


def test_a_failing_spec_is_a_sample_error_and_the_group_goes_on(group, tmp_path):
    missing = tmp_path / "missing.png"
    with pytest.raises(SampleError, match="MediaError.*missing.png") as error:
        group.generate(tiny_spec(inference_type="image2world", input_path=str(missing)))
    assert isinstance(error.value.cause, MediaError)  # the rank's own exception, for callers to classify
    assert not error.value.group_broken
    assert group.restarts == 0
    assert group.generate(tiny_spec()).frames.shape == (9, 64, 96, 3)


def test_a_spec_the_generator_refuses_keeps_its_field(group, tmp_path):
    too_few_frames = tiny_spec(
        inference_type="video2world", input_path=str(tmp_path / "clip.mp4"), cosmos_ray_num_frames=1
    )
    with pytest.raises(SampleError, match="SpecError") as error:
        group.generate(too_few_frames)
    assert isinstance(error.value.cause, SpecError) and error.value.cause.field == "cosmos_ray_num_frames"
    assert not error.value.group_broken


def test_a_dead_rank_fails_its_sample_and_the_group_restarts(group):
    workers_before = list(group.workers)
    ray.kill(group.workers[1])
    with pytest.raises(SampleError, match="a rank worker died") as error:
        group.generate(tiny_spec())
    assert error.value.group_broken
    assert group.workers == []  # every rank of the broken group is gone ...
    result = group.generate(tiny_spec())  # ... and the next sample starts new ones in the same placement group
    assert result.frames.shape == (9, 64, 96, 3)
    assert group.restarts == 1
    assert set(group.workers).isdisjoint(workers_before)
    assert placement_group_state(GROUP_NAME) == "CREATED"


@ray.remote
def _fail() -> None:
    raise ValueError("rank 1 fails")


@ray.remote
def _sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "done"


def test_ranks_still_running_after_a_failure_break_the_group(ray_session):
    stuck = _sleep.remote(600)  # a rank waiting in a collective for the failed one
    with pytest.raises(SampleError, match=r"ValueError: rank 1 fails \(and 1 rank\(s\) still running") as error:
        wait_for_ranks([stuck, _fail.remote()], failure_grace_s=1)
    assert error.value.group_broken
    assert ray.wait([stuck], timeout=0)[1] == [stuck]  # gave up on it instead of waiting
    ray.cancel(stuck, force=True)


def test_ranks_that_all_fail_leave_the_group_usable(ray_session):
    with pytest.raises(SampleError, match="ValueError: rank 1 fails") as error:
        wait_for_ranks([_fail.remote(), _sleep.remote(0)], failure_grace_s=30)
    assert not error.value.group_broken
    assert isinstance(error.value.cause, ValueError) and str(error.value.cause) == "rank 1 fails"


@ray.remote(num_cpus=0)
class _GroupOwner:
    """An actor that owns a group, as the batch job's pool actor and a Serve replica do."""

    def generate(self, specs: list[GenerationSpec]) -> tuple[list[str], bool]:
        group = GPUGroup(GroupConfig())
        outcomes = []
        for spec in specs:
            try:
                outcomes.append(str(group.generate(spec).frames.shape))
            except SampleError as error:
                outcomes.append(type(error.cause).__name__)
        group.shutdown()
        return outcomes, "torch" in sys.modules


def test_the_owner_of_a_group_never_loads_torch(ray_session, tmp_path):
    """Specs, steps, results and a failed sample's cause all reach the owning actor without the engine."""
    bad_input = tiny_spec(inference_type="image2world", input_path=str(tmp_path / "missing.png"))
    owner = _GroupOwner.remote()  # type: ignore[attr-defined]  # (Ray's typing of an actor class)
    outcomes, loaded_torch = ray.get(owner.generate.remote([tiny_spec(), bad_input]))
    assert outcomes == [str((9, 64, 96, 3)), "UnreadableMediaError"]
    assert not loaded_torch


def test_group_config_rejects_bad_values():
    with pytest.raises(ValueError, match="gpus_per_group"):
        GroupConfig(gpus_per_group=0)
    with pytest.raises(ValueError, match="dtype"):
        GroupConfig(engine=EngineOptions(dtype="int8"))


def test_shutdown_kills_the_ranks_and_removes_the_placement_group(group):  # last: it ends the module's group
    workers = list(group.workers)
    group.shutdown()
    group.shutdown()  # idempotent
    assert placement_group_state(GROUP_NAME) == "REMOVED"
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(workers[0].rendezvous_address.remote())
