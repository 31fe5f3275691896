"""deploy/kuberay/: the RayJob and RayService against KubeRay's own CRD schemas (a copy of KubeRay v1.7.0's in
tests/data/kuberay), and against this repository: the same entry points as `ray job submit` and `serve deploy`,
worker groups that mirror cluster.yaml's node types, the image, the Secrets and the checkpoint volume."""

from __future__ import annotations

import copy
import functools
import gzip
import importlib
import shlex
from pathlib import Path, PurePosixPath

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
KUBERAY = REPO / "deploy" / "kuberay"
CRDS = Path(__file__).parent / "data" / "kuberay"
KUBERAY_VERSION = "1.7.0"  # of the CRDs in tests/data/kuberay, and the operator docs/deploy.md installs

RAYJOB, RAYSERVICE = "rayjob.yaml", "rayservice.yaml"
CRD_OF = {RAYJOB: "rayjobs", RAYSERVICE: "rayservices"}
CLUSTER_SPEC_KEY = {"RayJob": "rayClusterSpec", "RayService": "rayClusterConfig"}

RAY_AUTH_SECRET = "cosmos-ray-ray-auth"
OBJECT_STORAGE_SECRET = "cosmos-ray-object-storage"
API_TOKENS_SECRET = "cosmos-ray-api-tokens"
CHECKPOINTS_CLAIM = "cosmos-ray-checkpoints"
# Serve args that differ from jobs/serve_config.yaml because they name paths inside the pods.
POD_PATH_ARGS = {"checkpoint_dir", "api_tokens_file"}


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _manifest(name: str) -> dict:
    return _load(KUBERAY / name)


@functools.cache
def _crd_schema(plural: str) -> tuple[dict, dict]:
    """(the CRD, the openAPIV3Schema of its stored version), the latter made strict like the API server."""
    with gzip.open(CRDS / f"ray.io_{plural}.yaml.gz", "rt") as file:
        crd = yaml.load(file, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # 1 MB: libyaml if there
    (stored,) = [version for version in crd["spec"]["versions"] if version["storage"]]
    return crd, _reject_unknown_fields(stored["schema"]["openAPIV3Schema"])


def _reject_unknown_fields(schema):
    """The API server rejects fields a structural schema does not name (kubectl's strict field validation);
    JSON Schema accepts them unless `additionalProperties: false` says otherwise, so add it wherever the schema
    lists properties and does not preserve unknown fields."""
    if isinstance(schema, list):
        return [_reject_unknown_fields(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _reject_unknown_fields(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    return strict


def _validate(manifest: dict, plural: str) -> None:
    crd, schema = _crd_schema(plural)
    assert manifest["apiVersion"] == f"{crd['spec']['group']}/v1"
    assert manifest["kind"] == crd["spec"]["names"]["kind"]
    jsonschema.Draft4Validator(schema).validate(manifest)


def _cluster_spec(manifest: dict) -> dict:
    return manifest["spec"][CLUSTER_SPEC_KEY[manifest["kind"]]]


def _pod_specs(manifest: dict) -> dict[str, dict]:
    """Group name ('head' for the head) -> pod spec."""
    spec = _cluster_spec(manifest)
    pods = {"head": spec["headGroupSpec"]["template"]["spec"]}
    pods.update({group["groupName"]: group["template"]["spec"] for group in spec["workerGroupSpecs"]})
    return pods


def _mounts(pod: dict) -> dict[str, tuple[str, dict]]:
    """Mount path -> (volume name, volume source) of the pod's Ray container."""
    (container,) = pod["containers"]
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    return {m["mountPath"]: (m["name"], volumes[m["name"]]) for m in container.get("volumeMounts", [])}


def _volume_holding(pod: dict, path: str) -> dict | None:
    """The volume source that `path` lies in, in the pod's Ray container; None if it lies in none."""
    for mount_path, (_, volume) in _mounts(pod).items():
        if PurePosixPath(path).is_relative_to(mount_path):
            return volume
    return None


@pytest.fixture(scope="module")
def cluster() -> dict:
    return _load(REPO / "cluster.yaml")


# --- the CRD schemas -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [RAYJOB, RAYSERVICE])
def test_manifest_matches_kuberays_crd_schema(name):
    _validate(_manifest(name), CRD_OF[name])


def _worker_group(manifest: dict) -> dict:
    return _cluster_spec(manifest)["workerGroupSpecs"][0]


@pytest.mark.parametrize(
    "break_it",
    [
        lambda m: _cluster_spec(m).update(workerGroupSpec=[]),  # a typo: unknown field
        lambda m: _worker_group(m).update(maxReplicas="4"),  # wrong type
        lambda m: _worker_group(m).pop("groupName"),  # required
        lambda m: _cluster_spec(m)["authOptions"].update(mode="tokens"),  # not in the enum
        lambda m: _worker_group(m)["template"]["spec"]["containers"][0]["resources"]["limits"].update(
            memory="200 GB"  # not a Kubernetes quantity
        ),
        lambda m: m["spec"].update(entrypoint=["python", "-m", "jobs.generate"]),  # a string, not a list
        lambda m: _worker_group(m)["template"]["spec"]["containers"][0].update(imagePullPolice="Always"),  # deep
    ],
)
def test_schema_check_catches_mistakes(break_it):
    broken = copy.deepcopy(_manifest(RAYJOB))
    break_it(broken)
    with pytest.raises(jsonschema.ValidationError):
        _validate(broken, CRD_OF[RAYJOB])


def test_docs_install_the_operator_whose_crds_we_check():
    deploy_md = (REPO / "docs" / "deploy.md").read_text()
    assert f"kuberay/kuberay-operator --version {KUBERAY_VERSION}" in deploy_md
    assert f"**v{KUBERAY_VERSION}**" in (CRDS / "README.md").read_text()


# --- the same entry points as ray job submit and serve deploy -------------------------------------------------


def test_rayjob_runs_the_batch_job_entry_point():
    from jobs.generate import parse_args

    manifest = _manifest(RAYJOB)
    python, dash_m, module, *args = shlex.split(manifest["spec"]["entrypoint"])
    assert (python, dash_m, module) == ("python", "-m", "jobs.generate")
    parsed = parse_args(args)  # exits (SystemExit 2) on an argument jobs.generate does not take
    assert parsed.checkpoint_dir and parsed.manifest.startswith("s3://") and parsed.output.startswith("s3://")
    assert parsed.autoscale or parsed.groups, "the cluster starts without GPUs: --groups or --autoscale waits for them"
    for group, pod in _pod_specs(manifest).items():
        if group != "head":
            volume = _volume_holding(pod, parsed.checkpoint_dir)
            assert volume and volume["persistentVolumeClaim"]["claimName"] == CHECKPOINTS_CLAIM, group

    runtime_env = yaml.safe_load(manifest["spec"]["runtimeEnvYAML"])
    assert runtime_env == {"env_vars": _load(REPO / "jobs" / "runtime_env.yaml")["env_vars"]}  # code: the image's


def test_rayservice_deploys_the_serve_config():
    from pipelines.serve import ServeArgs

    manifest = _manifest(RAYSERVICE)
    deployed = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    serve_config = _load(REPO / "jobs" / "serve_config.yaml")
    (app,) = deployed["applications"]
    (reference,) = serve_config["applications"]

    # The same application as `serve deploy jobs/serve_config.yaml`, but for the paths that live in the pods.
    assert {k: v for k, v in deployed.items() if k != "applications"} == {
        k: v for k, v in serve_config.items() if k != "applications"
    }
    assert {k: v for k, v in app.items() if k != "args"} == {k: v for k, v in reference.items() if k != "args"}
    keys = app["args"].keys() | reference["args"].keys()
    differing = {key for key in keys if app["args"].get(key) != reference["args"].get(key)}
    assert differing <= POD_PATH_ARGS, f"{sorted(differing - POD_PATH_ARGS)} differ from jobs/serve_config.yaml"

    module, attribute = app["import_path"].split(":")
    assert hasattr(importlib.import_module(module), attribute)
    args = ServeArgs.model_validate(app["args"])

    # Bearer tokens on by default: the token file is the mounted Secret, on every pod (replicas and proxies
    # run on any of them). The checkpoint folder is on the shared volume of every GPU pod.
    assert args.api_tokens_file and args.checkpoint_dir
    for group, pod in _pod_specs(manifest).items():
        volume = _volume_holding(pod, args.api_tokens_file)
        assert volume and volume["secret"]["secretName"] == API_TOKENS_SECRET, group
        if group != "head":
            volume = _volume_holding(pod, args.checkpoint_dir)
            assert volume and volume["persistentVolumeClaim"]["claimName"] == CHECKPOINTS_CLAIM, group


# --- cluster.yaml's shape, the image, the Secrets, the volume -------------------------------------------------


@pytest.mark.parametrize("name", [RAYJOB, RAYSERVICE])
def test_worker_groups_mirror_cluster_yaml(name, cluster):
    spec = _cluster_spec(_manifest(name))
    node_types = {
        node_type.replace("_", "-"): node
        for node_type, node in cluster["available_node_types"].items()
        if node_type != cluster["head_node_type"]
    }
    groups = {group["groupName"]: group for group in spec["workerGroupSpecs"]}
    assert groups.keys() == node_types.keys()
    for group_name, group in groups.items():
        node = node_types[group_name]
        (container,) = group["template"]["spec"]["containers"]
        resources = container["resources"]
        assert resources["requests"] == resources["limits"], f"{group_name}: a GPU pod should not be overcommitted"
        assert int(resources["limits"]["nvidia.com/gpu"]) == node["resources"]["GPU"], group_name
        assert int(resources["limits"]["cpu"]) >= node["resources"]["GPU"], group_name  # a {GPU: 1, CPU: 1} per rank
        assert (group["minReplicas"], group["maxReplicas"]) == (node["min_workers"], node["max_workers"]), group_name
        assert group["replicas"] == 0  # GPU pods come with demand, as in cluster.yaml

    # The head as cluster.yaml's: no CPUs for Ray, so no task or replica lands there; autoscaling with its timeout.
    head = cluster["available_node_types"][cluster["head_node_type"]]
    assert head["resources"] == {"CPU": 0} and spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["autoscalerOptions"]["idleTimeoutSeconds"] == cluster["idle_timeout_minutes"] * 60


@pytest.mark.parametrize("name", [RAYJOB, RAYSERVICE])
def test_every_pod_runs_the_image_with_the_secrets(name):
    from deploy.image import images

    names = images()
    spec = _cluster_spec(_manifest(name))
    assert spec["rayVersion"] == names.ray_version
    assert spec["authOptions"] == {"mode": "token", "secretName": RAY_AUTH_SECRET}  # Ray's own token auth
    for group, pod in _pod_specs(_manifest(name)).items():
        (container,) = pod["containers"]
        assert container["image"] == names.image, group
        # object storage credentials from the Secret, as environment variables boto3/s3fs read
        assert {"secretRef": {"name": OBJECT_STORAGE_SECRET}} in container["envFrom"], group


def test_checkpoint_volume_is_shared_by_the_pods():
    claim = _load(KUBERAY / "checkpoints-pvc.yaml")
    assert claim["kind"] == "PersistentVolumeClaim" and claim["metadata"]["name"] == CHECKPOINTS_CLAIM
    assert set(claim["spec"]["accessModes"]) & {"ReadWriteMany", "ReadOnlyMany"}  # pods on many nodes at once
    for name in (RAYJOB, RAYSERVICE):
        for group, pod in _pod_specs(_manifest(name)).items():
            for path, (_, volume) in _mounts(pod).items():
                if "persistentVolumeClaim" in volume:
                    assert volume["persistentVolumeClaim"] == {"claimName": CHECKPOINTS_CLAIM, "readOnly": True}
                    assert path == "/checkpoints", (name, group)
