"""A `ray start --head --block` of a test's own: free ports, its own temp dir, its own process group.

Stopping it kills that process group and then any process still naming its temp dir (nodes that an autoscaler
started, their workers), so a test stops exactly what it started; `ray stop` would stop every Ray instance on
the machine. Token auth is off: it is a local test cluster.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Every port `ray start --head` would otherwise take at a fixed default, so that heads of parallel runs coexist.
HEAD_PORT_FLAGS = (
    "ray-client-server-port",
    "node-manager-port",
    "object-manager-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "metrics-export-port",
    "runtime-env-agent-port",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class LocalHead:
    gcs_address: str  # host:port, for `ray.init(address=...)` and `--address`
    dashboard_url: str  # http://host:port, for `ray job submit` and the State API
    env: dict[str, str]  # the environment the head runs with; run clients (jobs, `python`) with it too
    temp_dir: Path
    log: Path  # the output of `ray start`

    def session_log(self, name: str, tail: int = 3000) -> str:
        """The last `tail` characters of a log of the session (e.g. 'monitor.log', the autoscaler's)."""
        path = self.temp_dir / "session_latest" / "logs" / name
        return path.read_text(errors="replace")[-tail:] if path.exists() else f"({name}: none)"


@contextlib.contextmanager
def local_head(
    *ray_start_args: str, gcs_port: int | None = None, env: dict[str, str] | None = None
) -> Iterator[LocalHead]:
    """Start a head with `ray_start_args` (e.g. --num-gpus=2); yields once its dashboard answers."""
    temp_dir = Path(tempfile.mkdtemp(prefix="rayhead", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    gcs_port = gcs_port or free_port()
    dashboard_port = free_port()
    command = [
        sys.executable,
        "-m",
        "ray.scripts.scripts",
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs_port}",
        "--disable-usage-stats",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        f"--temp-dir={temp_dir}",
        *(f"--{flag}={free_port()}" for flag in HEAD_PORT_FLAGS),
        *ray_start_args,
    ]
    # A job's `python` must be this interpreter, as it would be in an activated environment.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    head_env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PATH": path, **(env or {})}
    head = LocalHead(
        gcs_address=f"127.0.0.1:{gcs_port}",
        dashboard_url=f"http://127.0.0.1:{dashboard_port}",
        env=head_env,
        temp_dir=temp_dir,
        log=temp_dir / "ray-start.log",
    )
    with open(head.log, "wb") as log:
        process = subprocess.Popen(command, env=head_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_for_dashboard(head, process)
            yield head
        finally:
            os.killpg(process.pid, signal.SIGKILL)  # the head and every process it started share its group
            process.wait()
            _kill_processes_naming(str(temp_dir))
            shutil.rmtree(temp_dir, ignore_errors=True)


def _wait_for_dashboard(head: LocalHead, process: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ray start exited with {process.returncode}:\n{head.log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"{head.dashboard_url}/api/version", timeout=2).read()
            return
        except urllib.error.HTTPError as error:
            if error.code == 401:  # it answers, and wants Ray's token (a head started with RAY_AUTH_MODE=token)
                return
            time.sleep(0.5)
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the dashboard at {head.dashboard_url} did not come up in {timeout_s}s")


def _kill_processes_naming(text: str) -> None:
    """SIGKILL every process of this user whose command line contains `text` (Linux /proc; a no-op elsewhere)."""
    needle = text.encode()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (entry / "cmdline").read_bytes() and entry.stat().st_uid == os.getuid():
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ValueError):  # gone meanwhile, or not ours to read
            continue
