"""Small things every run shows (issue 28, item 13): no deprecation warning of our own making, help that lists
what is accepted, singular counts, and CPU threads that fit the CPUs the process may use."""

import warnings

import pytest

from pipelines.placement import ClusterGPUs, PlacementError, check_layout


def test_make_manifest_help_names_every_spec_file_kind(capsys):
    from cosmos_ray.core.manifest import SPEC_FILE_SUFFIXES
    from jobs.make_manifest import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(" + ", ".join(SPEC_FILE_SUFFIXES) + ")" in help_text and ".yaml" in SPEC_FILE_SUFFIXES


def test_one_gpu_is_singular():
    with pytest.raises(PlacementError, match=r"^a GPU group of 1 needs 1 GPU on one node, but the largest node has 0"):
        check_layout(ClusterGPUs(nodes=(0,)), 1, largest_addable=lambda: 0)


def test_the_local_cli_fits_cpu_threads_to_the_cpus_it_may_use(monkeypatch):
    import torch

    from jobs import local

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr(local.os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3})
        monkeypatch.setattr(local, "_cgroup_cpu_quota", lambda: 1)  # a container allowed one CPU of the four
        assert local.limit_cpu_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setattr(local, "_cgroup_cpu_quota", lambda: None)  # no quota: the affinity decides
        assert local.limit_cpu_threads() == 4 and torch.get_num_threads() == 4
        monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice wins
        assert local.limit_cpu_threads() == 4
    finally:
        torch.set_num_threads(before)


@pytest.mark.ray
def test_the_stages_raise_no_deprecation_warning_of_ours(ray_session):
    import ray
    from ray.util.annotations import RayDeprecationWarning

    from pipelines.batch import BatchConfig
    from pipelines.batch.driver import stages

    config = BatchConfig(manifest="m", output="o")
    dataset: ray.data.Dataset = ray.data.from_items([{"x": 1}])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for stage in stages(config, "run", (1, 1), ()):
            dataset = stage.apply(dataset)  # lazy: nothing runs
    assert not [w for w in caught if issubclass(w.category, RayDeprecationWarning)], [str(w.message) for w in caught]
