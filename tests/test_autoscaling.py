"""The tiny batch job on Ray's fake multi-node autoscaler: GPU worker nodes of cluster.yaml's node types start
for the job's GPU group (its placement group) and are removed once idle.

`provider: type: fake_multinode` is Ray's own provider for testing autoscaling on one machine: the head runs the
same autoscaler (monitor) that `ray up cluster.yaml` runs on a cloud head, and each node it launches is a raylet
on this machine with the node type's logical resources. The node types are cluster.yaml's (names, GPUs, the
CPU-less head); only sizes are scaled down (`fake_autoscaling_config`). docs/deploy.md says what this proves
and what only a cloud run can.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.local_ray import free_port, local_head

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[1]
FAKE_HEAD_TYPE = "ray.head.default"  # the fake provider's name for the head it runs on
GROUP_GPUS = 2  # a group of 2 GPUs fits only the 8-GPU node type: the job needs a gpu_8x node
JOB_TIMEOUT_S = 300
SCALE_DOWN_TIMEOUT_S = 120


def fake_autoscaling_config(cluster: dict, gcs_address: str) -> dict:
    """cluster.yaml for the fake multi-node provider.

    Kept: the worker node types with their names, logical GPUs and `min_workers`; the head's resources (no
    CPUs: tasks and actors wait for worker nodes, as on the real cluster); `upscaling_speed`. Scaled down for a
    2-core machine: CPUs per worker type to its GPUs + 1 (a {GPU: 1, CPU: 1} bundle per rank, plus the group's
    pool actor), one node per type, small object stores, and an idle timeout of seconds instead of minutes.
    """
    head = cluster["available_node_types"][cluster["head_node_type"]]
    node_types = {FAKE_HEAD_TYPE: {"resources": dict(head["resources"]), "node_config": {}, "max_workers": 0}}
    for name, node in cluster["available_node_types"].items():
        if name == cluster["head_node_type"]:
            continue
        gpus = node["resources"]["GPU"]
        node_types[name] = {
            "resources": {"CPU": gpus + 1, "GPU": gpus, "object_store_memory": 200 * 1024**2},
            "node_config": {},
            "min_workers": node["min_workers"],
            "max_workers": 1,
        }
    return {
        "cluster_name": "fake-" + cluster["cluster_name"],
        "max_workers": len(node_types) - 1,
        "upscaling_speed": cluster["upscaling_speed"],
        "idle_timeout_minutes": 0.2,
        "provider": {
            "type": "fake_multinode",
            "gcs_address": gcs_address,  # the provider's nodes join this head (default: port 6379)
            "use_node_id_as_ip": True,  # all nodes share one IP: tell them apart by node id
            "disable_node_updaters": True,  # nothing to ssh into or set up
            "disable_launch_config_check": True,
        },
        "auth": {},
        "docker": {},
        "available_node_types": node_types,
        "head_node_type": FAKE_HEAD_TYPE,
        # The autoscaler validates the config against Ray's schema but fills no defaults: name the empty rest.
        **{key: [] for key in ["initialization_commands", "setup_commands", "head_setup_commands"]},
        **{key: [] for key in ["worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands"]},
        **{key: [] for key in ["cluster_synced_files", "rsync_exclude", "rsync_filter"]},
        "file_mounts": {},
        "file_mounts_sync_continuously": False,
    }


def _node_type(resources: dict, node_types: dict) -> str:
    """The node type whose logical CPUs and GPUs a node has (each type of the fake config has its own)."""
    shape = (resources.get("CPU", 0), resources.get("GPU", 0))
    names = [
        name
        for name, node in node_types.items()
        if (node["resources"].get("CPU", 0), node["resources"].get("GPU", 0)) == shape
    ]
    return names[0] if len(names) == 1 else f"unknown {shape}"


def _bundle_node_types(group, nodes: dict[str, str]) -> set[str]:
    """The node types holding a placement group's bundles (none while it is pending)."""
    return {nodes.get(bundle["node_id"], "?") for bundle in group.bundles or [] if bundle.get("node_id")}


class ClusterWatch:
    """Samples, through the State API, which worker node types are alive and where the job's groups are placed."""

    def __init__(self, dashboard_url: str, node_types: dict):
        self.dashboard_url = dashboard_url
        self.node_types = node_types
        self.started = time.monotonic()
        self.samples: list[dict] = []
        self.failures: list[str] = []  # State API calls that failed (a busy machine): skipped, not fatal

    def sample(self) -> dict | None:
        """The cluster now, also appended to `samples`; None if the State API did not answer."""
        from ray.util.state.exception import RayStateApiException

        try:
            return self._sample()
        except RayStateApiException as error:
            self.failures.append(f"{time.monotonic() - self.started:.1f}s: {error}")
            return None

    def _sample(self) -> dict:
        from ray.util.state import list_nodes, list_placement_groups

        nodes = {
            node.node_id: _node_type(node.resources_total, self.node_types)
            for node in list_nodes(address=self.dashboard_url, limit=1000, raise_on_missing_output=False)
            if node.state == "ALIVE"
        }
        groups = [
            group
            for group in list_placement_groups(
                address=self.dashboard_url, detail=True, limit=1000, raise_on_missing_output=False
            )
            if group.name.startswith("cosmos-ray-") and group.state != "REMOVED"
        ]
        sample = {
            "t": round(time.monotonic() - self.started, 1),
            "workers": sorted(kind for kind in nodes.values() if kind != FAKE_HEAD_TYPE),
            # each GPU group's placement group: its state and the node types holding its bundles
            "groups": [(group.state, sorted(_bundle_node_types(group, nodes))) for group in groups],
        }
        self.samples.append(sample)
        return sample

    def timeline(self) -> str:
        lines = [f"{s['t']:7.1f}s workers={s['workers']} groups={s['groups']}" for s in self.samples]
        return "\n".join(lines + [f"State API failed at {failure}" for failure in self.failures])


def test_gpu_nodes_start_for_the_groups_and_leave_when_idle(tmp_path):
    from cosmos_ray.core.manifest import write_manifest
    from cosmos_ray.core.outputs import OutputStore
    from cosmos_ray.core.spec import GenerationSpec

    cluster = yaml.safe_load((REPO / "cluster.yaml").read_text())
    gcs_port = free_port()
    config = fake_autoscaling_config(cluster, f"127.0.0.1:{gcs_port}")
    config_path = tmp_path / "autoscaling.yaml"
    config_path.write_text(yaml.safe_dump(config))
    head_resources = config["available_node_types"][FAKE_HEAD_TYPE]["resources"]

    spec = GenerationSpec.from_dict(
        {"inference_type": "text2world", "name": "scaled", "prompt": "a cube", "num_output_frames": 5, "num_steps": 2}
    )
    manifest, output = tmp_path / "manifest.parquet", tmp_path / "out"
    write_manifest([(spec, "test")], str(manifest))

    with local_head(
        f"--autoscaling-config={config_path}",
        f"--num-cpus={head_resources.get('CPU', 0)}",
        f"--num-gpus={head_resources.get('GPU', 0)}",
        "--object-store-memory=200000000",
        gcs_port=gcs_port,
        env={
            # the fake provider refuses to start without RAY_FAKE_CLUSTER; the autoscaler updates every second
            "RAY_FAKE_CLUSTER": "1",
            "AUTOSCALER_UPDATE_INTERVAL_S": "1",
            # Ray Data's Parquet reader asks for 32 one-CPU footer-reader actors whatever the file count. On a
            # CPU-less head that demand alone launches the node type with the most CPUs (gpu_8x) before the
            # group asks for it; with one reader the CPU stages fit gpu_1x, and gpu_8x comes for the group.
            "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS": "1",
        },
    ) as head:
        watch = ClusterWatch(head.dashboard_url, config["available_node_types"])
        before = watch.sample()
        assert before and before["workers"] == [], "the cluster starts with the head alone"

        # As on a real cluster with no GPU node up: --groups makes the job wait for GPUs instead of counting them.
        command = [sys.executable, "-m", "jobs.generate", "--address", head.gcs_address]
        command += ["--manifest", str(manifest), "--output", str(output), "--preset", "tiny"]
        command += ["--gpus-per-group", str(GROUP_GPUS), "--groups", "1"]
        job_log = tmp_path / "job.log"
        with open(job_log, "wb") as log:
            job = subprocess.Popen(command, cwd=REPO, env=head.env, stdout=log, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + JOB_TIMEOUT_S
                while job.poll() is None and time.monotonic() < deadline:
                    watch.sample()
                    time.sleep(1)
            finally:
                job.kill()
                job.wait()

        def explain() -> str:
            return (
                f"timeline:\n{watch.timeline()}\n--- job log:\n{job_log.read_text(errors='replace')[-3000:]}\n"
                f"--- autoscaler:\n{head.session_log('monitor.log')}"
            )

        assert job.returncode == 0, explain()
        assert OutputStore(str(output)).is_done(spec.sample_id), explain()

        # The autoscaler launched a gpu_8x node once the group's placement group asked for 2 GPUs on one node
        # (not before), and the group was placed there.
        first_group = next((i for i, sample in enumerate(watch.samples) if sample["groups"]), None)
        first_gpu_8x = next((i for i, sample in enumerate(watch.samples) if "gpu_8x" in sample["workers"]), None)
        assert first_group is not None and first_gpu_8x is not None, explain()
        assert first_group <= first_gpu_8x, explain()
        placed = {kind for s in watch.samples for state, kinds in s["groups"] if state == "CREATED" for kind in kinds}
        assert placed == {"gpu_8x"}, explain()

        # Idle worker nodes leave: back to the head alone.
        deadline = time.monotonic() + SCALE_DOWN_TIMEOUT_S
        while time.monotonic() < deadline:
            now = watch.sample()
            if now and not now["workers"]:
                break
            time.sleep(1)
        assert watch.samples[-1]["workers"] == [], explain()
