"""The GPU stage's pool actor (`GroupActor`) retries a sample once when a rank worker of its group died (the group
restarts), and only then records it as failed; a sample that a rank failed on its own is not retried."""

import json
from collections.abc import Iterator

import pyarrow as pa
import pytest
import ray

from cosmos_ray.core.registry import DEFAULT_MODEL
from cosmos_ray.core.spec import SpecError
from pipelines.batch import PENDING_SCHEMA
from pipelines.batch.stages.generate import RANK_DEATH_RETRIES, GroupActor
from pipelines.group import GroupConfig, SampleError
from tests.batch_helpers import spec


def _pending(name: str) -> pa.Table:
    row = {"row": 0, "source": "s.jsonl:1", "spec_json": json.dumps(spec(name)), "blocked": None, "error": None}
    return pa.Table.from_pylist([row], schema=PENDING_SCHEMA)


class _FailingGroup:
    """Stands in for a GPUGroup whose every call fails with `error`; counts the calls."""

    def __init__(self, error: SampleError):
        self.error = error
        self.calls = 0

    def stream(self, _spec) -> Iterator:
        self.calls += 1
        raise self.error
        yield  # a generator, as GPUGroup.stream


def _actor_with(group: _FailingGroup) -> GroupActor:
    actor = GroupActor.__new__(GroupActor)  # no placement group: the group is the stand-in
    actor.group = group  # type: ignore[assignment]
    actor.model = DEFAULT_MODEL
    return actor


def test_a_sample_whose_rank_dies_every_time_fails_after_one_retry():
    group = _FailingGroup(SampleError("a rank worker died: ActorDiedError: gone", group_broken=True))
    (row,) = _actor_with(group)(_pending("dies")).to_pylist()
    assert group.calls == 1 + RANK_DEATH_RETRIES == 2
    assert row["error"] == "a rank worker died: ActorDiedError: gone" and row["frames"] == b""


@pytest.mark.parametrize(
    "error",
    [
        SampleError("SpecError: bad", cause=SpecError("s", "prompt", "bad")),  # the sample's own fault
        SampleError("ValueError: x (and 1 rank(s) still running 5s later)", cause=ValueError("x"), group_broken=True),
    ],
)
def test_a_sample_that_a_rank_failed_is_not_retried(error):
    group = _FailingGroup(error)
    (row,) = _actor_with(group)(_pending("fails")).to_pylist()
    assert group.calls == 1 and row["error"] == str(error)


@pytest.mark.ray
def test_a_killed_rank_workers_sample_is_generated_on_the_restarted_group(ray_session):
    actor = GroupActor(GroupConfig(gpus_per_group=2, failure_grace_s=5), "cosmos-ray-test-rank-death-")
    try:
        workers_before = list(actor.group.workers)
        ray.kill(actor.group.workers[1])  # its process is gone, as on a lost node
        (row,) = actor(_pending("survives")).to_pylist()
        assert row["error"] is None and row["frames_shape"] == [9, 64, 96, 3]
        assert actor.group.restarts == 1 and set(actor.group.workers).isdisjoint(workers_before)
    finally:
        actor.group.shutdown()
