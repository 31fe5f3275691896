"""The Serve app on a local Serve instance with the tiny preset and logical GPUs, and the inputs it may read.

Package-scoped: one server for every module of tests/test_serve/, started once as when these tests were one module,
and shut down (with the logical GPU its replica holds) when the package's last test is done.
"""

from __future__ import annotations

import socket
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image
from ray import serve

from pipelines.serve import ServeArgs, build_app
from tests.media_helpers import png_header
from tests.test_serve.helpers import CHECKS, RETRY_AFTER_S


@pytest.fixture(scope="package")
def media_dir(tmp_path_factory) -> Path:
    """Conditioning inputs under the one folder the test server may read."""
    folder = tmp_path_factory.mktemp("inputs")
    frames = np.random.default_rng(0).integers(0, 255, (9, 64, 96, 3), dtype=np.uint8)
    Image.fromarray(frames[0]).save(folder / "cube.png")
    _write_video(folder / "cube.mp4", frames)
    _write_video(folder / "short.mp4", frames[:3])  # video2world needs the last 5 frames of its input
    (folder / "broken.png").write_bytes(b"not an image")
    (folder / "bomb.png").write_bytes(png_header(12000, 12000))  # refused from its header (MediaLimits)
    return folder


def _write_video(path: Path, frames: np.ndarray) -> None:
    writer = imageio_ffmpeg.write_frames(str(path), (96, 64), fps=16, macro_block_size=1)
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


@pytest.fixture(scope="package")
def server(ray_session, s3_endpoint, media_dir):
    """The app with the tiny preset: one single-GPU replica (logical GPU), room for 3 requests at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = ServeArgs(
        preset="tiny",
        gpus_per_replica=1,
        max_replicas=1,
        max_queued_requests=1,  # + 2 ongoing on the replica = capacity 3
        retry_after_s=RETRY_AFTER_S,
        allowed_input_prefixes=[str(media_dir)],
        allowed_output_prefixes=[s3_endpoint.bucket("served") + "/results"],
        storage_options=s3_endpoint.storage_options,
        guardrails=True,
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(args, CHECKS), name="cosmos", route_prefix="/")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
