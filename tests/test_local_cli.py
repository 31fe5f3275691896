"""The local CLI (`python -m jobs.local`) with the tiny preset on CPU: videos, skips and failure records,
generations, per-spec adapters, guardrails (the stand-in of tests/guardrail_standin.py), and the arguments it
refuses before any weight loads."""

import json

import imageio_ffmpeg
import numpy as np
import pytest

from cosmos_ray.core.media import write_mp4
from cosmos_ray.core.offload_config import OffloadConfig
from cosmos_ray.core.spec import GenerationSpec
from cosmos_ray.generator import Generator
from jobs import local
from tests.adapter_helpers import file_sha256, write_lora
from tests.generator_helpers import make_spec
from tests.guardrail_standin import GREY, StandInGuardrails
from tests.media_helpers import png_header

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # diffusers + numpy 2


def test_cli_generates_skips_and_records_failures(tmp_path, capsys):
    specs = tmp_path / "specs.jsonl"
    rows = [
        make_spec("text2world", name="t2w", guidance=0).to_dict(),
        make_spec("image2world", name="i2w", fps=8).to_dict(),
    ]
    specs.write_text("\n".join(json.dumps(row) for row in rows))
    out = tmp_path / "out"
    assert local.main(["-i", str(specs), "-o", str(out), "--preset", "tiny", "--device", "cpu"]) == 0
    for row in rows:
        spec = GenerationSpec.from_dict(row)
        record = json.loads((out / "meta" / f"{spec.sample_id}.json").read_text())
        assert record["status"] == "ok" and record["metadata"]["seed"] == spec.seed
        reader = imageio_ffmpeg.read_frames(str(out / "videos" / f"{spec.sample_id}.mp4"))
        meta = next(reader)
        assert (meta["fps"], meta["size"], sum(1 for _ in reader)) == (spec.fps, (96, 64), 9)
    assert "2 ok, 0 skipped, 0 failed, 0 blocked" in capsys.readouterr().out

    short = tmp_path / "short.mp4"
    short.write_bytes(write_mp4(np.zeros((2, 64, 96, 3), np.uint8), fps=16))
    specs.write_text(
        specs.read_text() + "\n" + json.dumps(make_spec("video2world", name="v2w", input_path=str(short)).to_dict())
    )
    assert local.main(["-i", str(specs), "-o", str(out), "--preset", "tiny", "--device", "cpu"]) == 1
    captured = capsys.readouterr()
    assert "0 ok, 2 skipped, 1 failed, 0 blocked" in captured.out
    assert "v2w: failed: sample 'v2w': input video" in captured.err


def test_cli_refuses_inputs_over_the_media_limits_before_decoding(tmp_path, capsys):
    """A 45-byte PNG declaring 12000 x 12000 pixels is a failed sample with the reason (not a crash, not
    430 MB of pixels); `--media-limit` moves the bound (here below the tiny example image)."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(12000, 12000))
    rows = [make_spec("image2world", name="bomb", input_path=str(bomb)), make_spec("image2world", name="small")]
    specs = tmp_path / "specs.jsonl"
    specs.write_text("\n".join(json.dumps(row.to_dict()) for row in rows))
    base = ["-i", str(specs), "-o", str(tmp_path / "out"), "--preset", "tiny", "--device", "cpu"]
    assert local.main(base) == 1
    captured = capsys.readouterr()
    assert "1 ok, 0 skipped, 1 failed, 0 blocked" in captured.out
    assert "bomb: failed: sample 'bomb': cannot read input_path" in captured.err
    assert "12000x12000 pixels (144000000), more than the 33177600 allowed here" in captured.err
    record = json.loads((tmp_path / "out" / "meta" / f"{rows[0].sample_id}.json").read_text())
    assert record["status"] == "failed" and "12000x12000" in record["error"]

    assert local.main([*base, "--overwrite", "--media-limit", "max_pixels=100"]) == 1
    assert "small: failed: sample 'small': cannot read input_path" in capsys.readouterr().err


def test_cli_generates_each_generation_with_its_seed(tmp_path, capsys):
    specs = tmp_path / "specs.json"
    spec = make_spec("text2world", name="gens", guidance=0, seed=7, num_steps=1, num_generations=2)
    specs.write_text(json.dumps(spec.to_dict()))
    out = tmp_path / "out"
    assert local.main(["-i", str(specs), "-o", str(out), "--preset", "tiny", "--device", "cpu"]) == 0
    seeds = [
        json.loads((out / "meta" / f"{g.sample_id}.json").read_text())["metadata"]["seed"] for g in spec.generations()
    ]
    assert seeds == [7, 8]
    assert "2 ok, 0 skipped, 0 failed, 0 blocked" in capsys.readouterr().out


def test_cli_records_blocked_prompts_and_videos_and_writes_only_checked_blurred_videos(tmp_path, capsys):
    rows = [
        make_spec("text2world", name="allowed", guidance=0).to_dict(),
        {**make_spec("text2world", name="bad-prompt", guidance=0).to_dict(), "prompt": "A forbidden cube."},
        {**make_spec("text2world", name="bad-video", guidance=0).to_dict(), "cosmos_ray_num_frames": 5},
    ]
    specs = tmp_path / "specs.jsonl"
    specs.write_text("\n".join(json.dumps(row) for row in rows))
    out = tmp_path / "out"
    argv = ["-i", str(specs), "-o", str(out), "--preset", "tiny", "--device", "cpu", "--guardrails"]
    assert local.main(argv, checks=StandInGuardrails(blocked_frame_counts=(5,))) == 1
    captured = capsys.readouterr()
    assert "1 ok, 0 skipped, 0 failed, 2 blocked; guardrails on (--guardrails); run table:" in captured.out
    assert "bad-prompt: prompt blocked by the guardrails: stand-in: the prompt contains 'forbidden'" in captured.err
    assert "bad-video: video blocked by the guardrails: stand-in: a video of 5 frames" in captured.err
    allowed, bad_prompt, bad_video = (GenerationSpec.from_dict(row).sample_id for row in rows)
    for sample_id in (bad_prompt, bad_video):
        assert json.loads((out / "meta" / f"{sample_id}.json").read_text())["status"] == "blocked"
        assert not (out / "videos" / f"{sample_id}.mp4").exists()
    assert json.loads((out / "meta" / f"{allowed}.json").read_text())["metadata"]["guardrails"] == "stand-in"
    reader = imageio_ffmpeg.read_frames(str(out / "videos" / f"{allowed}.mp4"))
    next(reader)
    assert np.abs(np.frombuffer(b"".join(reader), np.uint8).astype(int) - GREY).max() <= 2  # blurred, then written


def test_cli_states_its_guardrail_setting(tmp_path, capsys):
    specs = tmp_path / "specs.json"
    specs.write_text(json.dumps(make_spec("text2world", name="t", guidance=0).to_dict()))
    assert local.main(["-i", str(specs), "-o", str(tmp_path / "out"), "--preset", "tiny", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "1 ok, 0 skipped, 0 failed, 0 blocked; guardrails off (default for a random-weight preset" in out


def test_cli_needs_a_model(capsys):
    with pytest.raises(SystemExit):
        local.parse_args(["-i", "specs.json", "-o", "out"])
    assert "one of the arguments --preset --checkpoint-dir is required" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "2B/mini"], ["invalid choice: '2B/mini' (choose from", "14B/post-trained"]),
        (["--model", "2B/post-trained", "--preset", "random-14B"], ["preset 'random-14B' has the released 14B"]),
    ],
)
def test_cli_rejects_a_wrong_model_before_loading(args, message, capsys):
    with pytest.raises(SystemExit):
        local.parse_args(
            ["-i", "specs.json", "-o", "out", *args] + ([] if "--preset" in args else ["--preset", "tiny"])
        )
    err = capsys.readouterr().err
    assert all(part in err for part in message)


def test_cli_refuses_distilled_image2world_before_any_weight_loads(tmp_path, capsys, monkeypatch):
    specs = tmp_path / "specs.jsonl"
    specs.write_text(json.dumps(make_spec("image2world", name="i2w").to_dict()))
    monkeypatch.setattr(Generator, "from_pretrained", lambda *a, **k: pytest.fail("weights were loaded"))
    argv = ["-i", str(specs), "-o", str(tmp_path / "out"), "--preset", "tiny", "--model", "2B/distilled"]
    assert local.main(argv) == 1
    err = capsys.readouterr().err
    assert (
        "sample 'i2w' (" in err and "field 'inference_type' image2world is not supported by model 2B/distilled" in err
    )


def test_cli_offload_flags_reach_the_generator(tmp_path, monkeypatch):
    made: dict[str, object] = {}

    def fake_from_pretrained(source, **kwargs):
        made.update(kwargs, source=source)
        raise RuntimeError("stop here")

    specs = tmp_path / "specs.jsonl"
    specs.write_text(json.dumps(make_spec("text2world").to_dict()))
    monkeypatch.setattr(Generator, "from_pretrained", fake_from_pretrained)
    argv = ["-i", str(specs), "-o", str(tmp_path / "out"), "--preset", "random-14B", "--model", "14B/pre-trained"]
    with pytest.raises(RuntimeError, match="stop here"):
        local.main(argv + ["--offload_diffusion_model", "--offload-text-encoder"])
    assert (made["source"], made["model"]) == ("random-14B", "14B/pre-trained")
    assert made["offload"] == OffloadConfig(diffusion_model=True, tokenizer=False, text_encoder=True)


def test_cli_generates_each_spec_with_its_adapters_and_again_when_they_change(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COSMOS_RAY_CACHE_DIR", str(tmp_path / "cache"))
    lora = write_lora(tmp_path / "robot.pt")
    specs = tmp_path / "specs.jsonl"

    def write_specs(scale: float) -> None:
        with_lora = make_spec("text2world", name="with", guidance=0, num_steps=1).to_dict()
        with_lora["cosmos_ray_loras"] = [{"path": "robot.pt", "scale": scale}]  # relative to the spec file
        without = make_spec("text2world", name="without", guidance=0, num_steps=1).to_dict()
        specs.write_text(f"{json.dumps(with_lora)}\n{json.dumps(without)}")

    out = tmp_path / "out"
    command = ["-i", str(specs), "-o", str(out), "--preset", "tiny", "--device", "cpu"]
    write_specs(0.5)
    assert local.main(command) == 0
    records = {r["name"]: r for r in (json.loads(meta.read_text()) for meta in (out / "meta").glob("*.json"))}
    assert records["with"]["metadata"]["loras"] == [{"path": lora, "scale": 0.5, "sha256": file_sha256(lora)}]
    assert json.loads(records["with"]["spec_json"])["cosmos_ray_loras"] == [{"path": lora, "scale": 0.5}]
    assert "loras" not in records["without"]["metadata"] and "cosmos_ray_loras" not in records["without"]["spec_json"]

    write_specs(1.0)
    assert local.main(command) == 0
    assert "1 ok, 1 skipped, 0 failed" in capsys.readouterr().out  # the changed adapter is a new sample


def test_cli_refuses_specs_for_another_checkpoint_before_loading(tmp_path, capsys):
    specs = tmp_path / "spec.json"
    specs.write_text(json.dumps({**make_spec("text2world", name="mine").to_dict(), "cosmos_ray_checkpoint": "/c.pt"}))
    assert local.main(["-i", str(specs), "-o", str(tmp_path / "out"), "--preset", "tiny", "--device", "cpu"]) == 1
    error = capsys.readouterr().err
    assert f"sample 'mine' ({specs}): field 'cosmos_ray_checkpoint' names checkpoint '/c.pt'" in error
    assert not (tmp_path / "out").exists()
