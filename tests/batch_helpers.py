"""What the batch job's tests on Ray share: the tiny specs they run, the manifests that hold them, the
placement groups a run leaves, and waiting on a job."""

import io
import json
import time
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from cosmos_ray.core.manifest import MANIFEST_SCHEMA

REPO = Path(__file__).resolve().parents[1]
PROMPT = "A small orange square slides across a grey floor."


def spec(name: str, inference_type: str = "text2world", **fields) -> dict:
    return {
        "inference_type": inference_type,
        "name": name,
        "prompt": PROMPT,
        "cosmos_ray_num_frames": 9,
        "num_steps": 2,
        **fields,
    }


def manifest_row(data: dict | str, source: str) -> dict:
    spec_json = data if isinstance(data, str) else json.dumps(data)
    name = "" if isinstance(data, str) else data["name"]
    return {"spec_json": spec_json, "name": name, "inference_type": "", "source": source}


def write_manifest(url: str, rows: list[dict], storage_options: dict | None = None) -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), buffer)
    with fsspec.open(url, "wb", **(storage_options or {})) as f:
        f.write(buffer.getvalue())


def live_placement_groups(prefix: str) -> list[str]:
    return [
        info["name"]
        for info in ray.util.placement_group_table().values()
        if info["name"].startswith(prefix) and info["state"] != "REMOVED"
    ]


def wait_for(condition, timeout_s: float, describe=lambda: "timed out") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, describe()
        time.sleep(0.5)
