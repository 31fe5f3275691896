"""The driver's placement decisions and one-line job errors, without a Ray cluster (tests/test_batch_placement.py
runs them on one)."""

import pytest
from ray.data.exceptions import SystemException
from ray.exceptions import ActorDiedError, RayTaskError, UserCodeException

from cosmos_ray.core.storage import StorageNotFoundError
from pipelines import placement
from pipelines.batch import failure_message
from pipelines.group import GroupConfig
from pipelines.placement import ClusterGPUs, PlacementError, check_layout, pool_size


def test_a_group_that_fits_a_node_now_never_asks_the_autoscaler():
    def unreachable():
        raise AssertionError("asked the autoscaler")

    check_layout(ClusterGPUs(nodes=(8, 2)), 8, largest_addable=unreachable)


def test_a_fixed_cluster_names_the_numbers_and_the_layouts_that_fit():
    with pytest.raises(PlacementError) as caught:
        check_layout(ClusterGPUs(nodes=(2, 2)), 4, largest_addable=lambda: 0)
    assert str(caught.value) == (
        "a GPU group of 4 needs 4 GPUs on one node, but the largest node has 2 and no autoscaler can add nodes; "
        "the cluster has 4 GPU(s) on 2 node(s) (GPUs per node: 2, 2)"
    )
    assert caught.value.layouts == [(2, 2), (1, 4)]


def test_autoscaler_node_types_decide():
    check_layout(ClusterGPUs(nodes=(0,)), 8, largest_addable=lambda: 8)  # a node type of 8 can be added
    check_layout(ClusterGPUs(nodes=(0,)), 8, largest_addable=lambda: None)  # unknown: the job waits
    with pytest.raises(PlacementError, match="no node type of the autoscaler has more than 4") as caught:
        check_layout(ClusterGPUs(nodes=(0,)), 8, largest_addable=lambda: 4)
    assert caught.value.layouts == []  # no GPU node now


def test_pool_size_is_what_the_nodes_hold_now_and_at_least_one():
    assert pool_size(ClusterGPUs(nodes=(8, 4, 2)), 4) == 3
    assert pool_size(ClusterGPUs(nodes=(0,)), 4) == 1  # an autoscaling cluster without GPU nodes yet


def test_groups_that_share_a_gpu_fit_as_many_times_as_their_share_divides_it():
    assert pool_size(ClusterGPUs(nodes=(8, 1)), 0.25) == 36
    assert pool_size(ClusterGPUs(nodes=(1,)), 0.3) == 3  # 0.9 of the GPU: a fourth would not fit
    assert pool_size(ClusterGPUs(nodes=(2,)), 0.2) == 10


def test_a_shared_gpu_is_for_groups_of_one_rank():
    with pytest.raises(ValueError, match="gpus_per_rank 0.5 .* is for groups of one rank"):
        GroupConfig(gpus_per_group=2, gpus_per_rank=0.5)
    with pytest.raises(ValueError, match=r"gpus_per_rank must be in \(0, 1\], got 0"):
        GroupConfig(gpus_per_rank=0)
    assert GroupConfig(gpus_per_rank=0.5, use_gpus=False).bundles == [{"CPU": 1.0}]


def test_the_autoscaler_that_only_mirrors_nodes_adds_none(monkeypatch):
    monkeypatch.setattr(placement, "_reported_cluster_config", lambda: None)
    monkeypatch.setattr(placement, "_autoscaler_node_types", lambda: {"ab12": "node_ab12", "cd34": "node_cd34"})
    assert placement.largest_addable_node() == 0
    monkeypatch.setattr(placement, "_autoscaler_node_types", lambda: {"ab12": "ray.head.default"})
    assert placement.largest_addable_node() is None  # a configured autoscaler whose node types Ray 2.60 hides


def test_reported_node_types_give_the_largest_addable_node(monkeypatch):
    from ray.core.generated import autoscaler_pb2

    config = autoscaler_pb2.ClusterConfig()
    for name, gpus, max_count in (("cpu", 0, 4), ("gpu_8x", 8, 0), ("gpu_4x", 4, -1)):
        group = config.node_group_configs.add(name=name, max_count=max_count)
        group.resources["GPU"] = gpus
    monkeypatch.setattr(placement, "_reported_cluster_config", lambda: config)
    assert placement.largest_addable_node() == 4  # gpu_8x may not launch any node (max_count 0)


def test_failure_message_strips_rays_wrapping():
    missing = StorageNotFoundError("read", "s3://b/out/meta/x.json", "not found")
    assert failure_message(RayTaskError("check_rows", "Traceback ...", missing)) == str(missing)
    wrapped = UserCodeException("UDF failed to process a data block.")
    wrapped.__cause__ = ValueError("bad value\nmore detail")
    assert failure_message(wrapped) == "ValueError: bad value"
    # a pool actor whose __init__ raised: Ray's report ends with the innermost exception
    last_line = "RuntimeError: GPU group g could not start: FileNotFoundError: no checkpoint"
    traceback = f"Traceback (most recent call last):\n  File x\n{last_line}"
    died = ActorDiedError(RayTaskError("MapWorker.__init__", traceback, RuntimeError(last_line)))
    assert failure_message(died) == last_line
    try:  # as Ray Data raises it to the driver
        raise died from SystemException()
    except ActorDiedError as raised:
        assert failure_message(raised) == last_line
