"""The batch job with guardrails on a local Ray, with the stand-in of tests/guardrail_standin.py (the official
checks need their weights): blocked prompts and videos are recorded, never written, and the job goes on."""

import logging
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from cosmos_ray.core.guardrails import GuardrailSetting
from cosmos_ray.core.outputs import OutputStore
from pipelines.batch import BatchConfig, run
from pipelines.group import GroupConfig
from tests.batch_helpers import manifest_row, spec, write_manifest
from tests.guardrail_standin import GREY, StandInGuardrails

pytestmark = pytest.mark.ray  # needs a local Ray cluster: `pytest -m 'not ray'` skips it


def test_blocked_prompts_and_videos_are_recorded_never_written_and_the_job_goes_on(ray_session, tmp_path, caplog):
    rows = [
        manifest_row(spec("allowed", seed=1), "g.jsonl:1"),
        manifest_row(spec("bad-prompt", prompt="A forbidden square."), "g.jsonl:2"),
        manifest_row(spec("bad-video", cosmos_ray_num_frames=5), "g.jsonl:3"),  # the stand-in blocks 5 frames
    ]
    manifest, output = tmp_path / "manifest.parquet", tmp_path / "out"
    write_manifest(str(manifest), rows)
    checks = StandInGuardrails(blocked_frame_counts=(5,))
    config = BatchConfig(
        manifest=str(manifest),
        output=str(output),
        run_id="guarded",
        groups=1,
        group=GroupConfig(),
        guardrails=GuardrailSetting(checks, "the tests' stand-in"),
    )
    with caplog.at_level(logging.INFO, logger="pipelines.batch"):
        summary = run(config)
    assert (summary.ok, summary.failed, summary.blocked, summary.skipped) == (1, 0, 2, 0)
    assert "1 ok, 0 failed, 2 blocked, 0 skipped" in str(summary)
    assert "; guardrails on (the tests' stand-in); table:" in str(summary)
    store = OutputStore(str(output))
    allowed, bad_prompt, bad_video = store.read_run_table("guarded")
    assert [r.status for r in (allowed, bad_prompt, bad_video)] == ["ok", "blocked", "blocked"]
    assert bad_prompt.error == "prompt blocked by the guardrails: stand-in: the prompt contains 'forbidden'"
    assert "sampling" not in bad_prompt.metadata.get("timings_s", {})  # never reached a GPU
    assert bad_video.error == "video blocked by the guardrails: stand-in: a video of 5 frames"
    for record in (bad_prompt, bad_video):
        assert record.sample_id is not None
        assert store.read_record(record.sample_id) == record  # the meta file says why
        assert not Path(store.video_url(record.sample_id)).exists() and record.video_url is None
    assert allowed.metadata["guardrails"] == "stand-in" and "guardrails" in allowed.metadata["timings_s"]
    reader = imageio_ffmpeg.read_frames(allowed.video_url)
    next(reader)  # the stream's info
    pixels = np.frombuffer(b"".join(reader), np.uint8)
    assert np.abs(pixels.astype(int) - GREY).max() <= 2  # the stand-in's "face blur" ran before the mp4 was written
    assert "2 sample(s) blocked by the guardrails, all in the run table:" in caplog.text
    assert "run guarded: guardrails on (the tests' stand-in)" in caplog.text
