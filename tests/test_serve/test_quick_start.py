"""The README's Serve quick start: its `serve run` line as written, on a fresh local Ray without GPUs, then the
request of its curl line."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from cosmos_ray.core.registry import DEFAULT_MODEL, get_model
from tests.test_serve.helpers import _frames

pytestmark = pytest.mark.ray  # needs a local Ray cluster: `pytest -m 'not ray'` skips it

REPO = Path(__file__).resolve().parents[2]


def _readme_command(prefix: str) -> list[str]:
    """The README's command line that starts with `prefix` (continuation lines joined, comments dropped)."""
    text = (REPO / "README.md").read_text().replace("\\\n", " ")
    (line,) = [line.strip() for line in text.splitlines() if line.strip().startswith(prefix)]
    return shlex.split(line, comments=True)


def test_the_readme_serve_quick_start_works_without_gpus(tmp_path):
    """The README's `serve run` line as written, on a fresh local Ray that has no GPU (as on a laptop), then
    the request of the README's curl line."""
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", 8000)) == 0:
            pytest.skip("port 8000, where the quick start serves, is taken on this machine")
    command = _readme_command("serve run ")
    curl = _readme_command("curl ")
    body = REPO / curl[curl.index("-d") + 1].removeprefix("@")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # this venv's `serve`
        "RAY_ADDRESS": "local",  # a Ray of its own, never the test session's (which has logical GPUs)
        "CUDA_VISIBLE_DEVICES": "",  # and no GPU, whatever the machine has
    }
    log = tmp_path / "serve-run.log"
    with open(log, "wb") as output:
        served = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_until_healthy("http://localhost:8000", served, log, timeout_s=600)
        response = requests.post(
            "http://localhost:8000/v1/generate",
            data=body.read_bytes(),
            headers={"content-type": "application/json"},
            timeout=300,
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "video/mp4"
        spec = json.loads(body.read_text())
        native = 1 + 4 * (get_model(DEFAULT_MODEL).state_t - 1)  # the released models' 93 frames
        assert _frames(response.content, tmp_path) == (spec.get("cosmos_ray_num_frames", native), (96, 64))
    finally:
        _stop(served)


def _wait_until_healthy(url: str, served: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert served.poll() is None, f"`serve run` exited:\n{log.read_text()[-3000:]}"
        try:
            if requests.get(f"{url}/healthz", timeout=10).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or too busy starting to answer
            pass
        time.sleep(2)
    raise AssertionError(f"not serving after {timeout_s}s:\n{log.read_text()[-3000:]}")


def _stop(served: subprocess.Popen) -> None:
    """Ctrl-C, as a user would (Serve shuts the app down and the Ray it started); then kill what is left."""
    os.killpg(served.pid, signal.SIGINT)
    try:
        served.wait(timeout=120)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(served.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    served.wait()
