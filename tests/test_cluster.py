"""cluster.yaml against Ray's own cluster schema and our defaults; jobs/runtime_env.yaml; and a job submitted
with `ray job submit --working-dir . --runtime-env jobs/runtime_env.yaml` to a local `ray start --head`."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.local_ray import local_head

pytestmark = pytest.mark.ray  # needs a local Ray cluster: `pytest -m 'not ray'` skips it

REPO = Path(__file__).resolve().parents[1]


def _load(relative: str) -> dict:
    return yaml.safe_load((REPO / relative).read_text())


@pytest.fixture(scope="module")
def cluster() -> dict:
    return _load("cluster.yaml")


def _ray_schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def _gpu_node_types(cluster: dict) -> dict[str, dict]:
    return {name: node for name, node in cluster["available_node_types"].items() if node["resources"].get("GPU", 0) > 0}


# --- cluster.yaml -----------------------------------------------------------------------------------------


def test_cluster_yaml_matches_rays_schema(cluster):
    from ray.autoscaler._private.util import prepare_config, validate_config

    jsonschema.validate(cluster, _ray_schema())
    validate_config(prepare_config(copy.deepcopy(cluster)))  # what `ray up` does with the file


@pytest.mark.parametrize(
    "break_it",
    [
        lambda c: c.update(max_workers="eight"),
        lambda c: c["available_node_types"]["gpu_8x"].pop("resources"),
        lambda c: c["docker"].update(imag="typo"),
        lambda c: c.update(idle_timeout="10"),
    ],
)
def test_schema_check_catches_mistakes(cluster, break_it):
    broken = copy.deepcopy(cluster)
    break_it(broken)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, _ray_schema())


def test_gpu_nodes_hold_whole_groups(cluster):
    """Every GPU node type fits a whole number of the default batch groups and Serve replicas."""
    from jobs.generate import parse_args
    from pipelines.serve import ServeArgs

    job_gpus = parse_args(["--manifest", "m", "--output", "o", "--preset", "tiny"]).gpus_per_group
    serve_config = _load("jobs/serve_config.yaml")
    group_sizes = {job_gpus, ServeArgs().gpus_per_replica} | {
        ServeArgs.model_validate(app["args"]).gpus_per_replica for app in serve_config["applications"]
    }
    nodes = _gpu_node_types(cluster)
    node_gpus = {name: node["resources"]["GPU"] for name, node in nodes.items()}
    assert set(node_gpus.values()) >= {8, 1}
    for size in group_sizes:
        assert any(gpus % size == 0 for gpus in node_gpus.values()), f"no node type holds a group of {size}"
        for name, gpus in node_gpus.items():
            assert gpus < size or gpus % size == 0, f"{name}: groups of {size} leave {gpus % size} GPUs idle"
    for name, node in nodes.items():
        assert node["resources"]["CPU"] >= node_gpus[name]  # each rank's bundle is {GPU: 1, CPU: 1}
        assert node["min_workers"] <= node["max_workers"] <= cluster["max_workers"]


def test_head_is_cpu_only_and_autoscales_gpu_nodes(cluster):
    head = cluster["available_node_types"][cluster["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # no Ray Data task or replica lands on the head
    assert all(node["min_workers"] == 0 for node in _gpu_node_types(cluster).values())
    assert 0 < cluster["idle_timeout_minutes"] <= 30


def test_every_node_installs_this_checkout(cluster):
    (remote,) = [remote for remote, local in cluster["file_mounts"].items() if local == "."]
    remote_in_shell = remote.replace("~", "$HOME")
    assert any(
        re.search(rf"pip install .*-e \"?{re.escape(remote_in_shell)}(\[[a-z,]+\])?\"?", command)
        for command in cluster["setup_commands"]
    )


def test_nodes_run_this_projects_image(cluster):
    from deploy.image import images

    # The Dockerfile: Ray's GPU image of the pinned Ray with this project installed (tests/test_image.py).
    assert cluster["docker"]["image"] == images().image


def _ray_start_commands(cluster: dict) -> list[str]:
    commands = cluster["head_start_ray_commands"] + cluster["worker_start_ray_commands"]
    return [command for command in commands if "ray start" in command]


def test_every_node_runs_ray_with_token_auth_and_the_dashboard_on_loopback(cluster):
    """Closed by default: whoever reaches the GCS or the dashboard without Ray's token cannot submit a job."""
    starts = _ray_start_commands(cluster)
    assert len(starts) == 2
    for command in starts:
        assert command.index("export RAY_AUTH_MODE=token;") < command.index("ray start"), command
    assert cluster["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"  # the default token path of Ray
    (head,) = [command for command in starts if "--head" in command]
    assert re.search(r"--dashboard-host=127\.0\.0\.1\b", head)  # reached through `ray dashboard`'s tunnel


def test_a_head_started_as_cluster_yaml_starts_it_refuses_clients_without_the_token(tmp_path):
    (head_command,) = [command for command in _ray_start_commands(_load("cluster.yaml")) if "--head" in command]
    exported = dict(re.findall(r"export (RAY_\w+)=(\S+);", head_command))
    token = tmp_path / "auth_token"
    token.write_text("0123456789abcdef" * 4)
    with local_head("--num-cpus=1", env={**exported, "RAY_AUTH_TOKEN_PATH": str(token)}) as head:
        jobs_api = f"{head.dashboard_url}/api/jobs/"
        for header, status in [({}, 401), ({"Authorization": "Bearer wrong"}, 403)]:
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(urllib.request.Request(jobs_api, headers=header), timeout=30)
            assert refused.value.code == status
        allowed = urllib.request.Request(jobs_api, headers={"Authorization": f"Bearer {token.read_text()}"})
        assert urllib.request.urlopen(allowed, timeout=30).status == 200
        list_jobs = [sys.executable, "-m", "ray.scripts.scripts", "job", "list", "--address", head.dashboard_url]
        without = {**head.env, "RAY_AUTH_MODE": "disabled"}
        assert subprocess.run(list_jobs, env=without, capture_output=True, timeout=120).returncode != 0
        assert subprocess.run(list_jobs, env=head.env, capture_output=True, timeout=120).returncode == 0


# --- jobs/runtime_env.yaml --------------------------------------------------------------------------------


def test_runtime_env_is_valid_and_uploads_the_code(tmp_path):
    from ray._private.runtime_env.packaging import create_package
    from ray.runtime_env import RuntimeEnv

    env = _load("jobs/runtime_env.yaml")
    RuntimeEnv(**env)  # Ray's own validation of the fields
    package = tmp_path / "working_dir.zip"
    create_package(str(REPO), package, include_gitignore=True, excludes=env["excludes"])
    names = set(zipfile.ZipFile(package).namelist())
    assert {"pyproject.toml", "cosmos_ray/__init__.py", "pipelines/serve/app.py", "jobs/generate.py"} <= names
    assert not any(name.startswith(".git/") or "__pycache__" in name for name in names)


# --- ray job submit against a local head node ---------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_head():
    """A local head with 2 logical GPUs (tests/local_ray.py); yields (dashboard URL, environment for clients)."""
    with local_head("--num-cpus=4", "--num-gpus=2") as head:
        yield head.dashboard_url, head.env


def test_ray_job_submit_runs_the_tiny_job(ray_head, tmp_path):
    from cosmos_ray.core.manifest import write_manifest
    from cosmos_ray.core.outputs import OutputStore
    from cosmos_ray.core.spec import GenerationSpec

    address, env = ray_head
    spec = GenerationSpec.from_dict(
        {
            "inference_type": "text2world",
            "name": "submitted",
            "prompt": "a cube",
            "cosmos_ray_num_frames": 5,
            "num_steps": 2,
        }
    )
    manifest, output = tmp_path / "manifest.parquet", tmp_path / "out"
    write_manifest([(spec, "test")], str(manifest))
    submit = [
        sys.executable,
        "-m",
        "ray.scripts.scripts",
        "job",
        "submit",
        "--address",
        address,
        "--working-dir",
        ".",
        "--runtime-env",
        "jobs/runtime_env.yaml",
        "--",
        "python",
        "-m",
        "jobs.generate",
        "--manifest",
        str(manifest),
        "--output",
        str(output),
        "--preset",
        "tiny",
        "--gpus-per-group",
        "1",
        "--groups",
        "1",
    ]
    finished = subprocess.run(submit, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-4000:]
    assert OutputStore(str(output)).is_done(spec.sample_id)
    assert (output / "videos" / f"{spec.sample_id}.mp4").stat().st_size > 0
