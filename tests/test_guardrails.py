"""The guardrail interface without the package: the default setting, the exceptions, the stand-in's
verdicts and the blocked record. The pipelines' use of it is tested with the stand-in in
test_batch_guardrails, test_serve/test_guardrails and test_local_cli; the official package's own code, where it
can run here, in test_guardrails_package."""

import pickle

import numpy as np
import pytest

from cosmos_ray.core import guardrails
from cosmos_ray.core.guardrails import (
    Blocked,
    CosmosGuardrails,
    Verdict,
    check_installed,
    check_prompt,
    guard_video,
    guardrail_setting,
)
from cosmos_ray.core.outputs import BLOCKED, OutputStore
from cosmos_ray.core.spec import GenerationSpec
from tests.guardrail_standin import GREY, StandInGuardrails

SPEC = GenerationSpec.from_dict({"inference_type": "text2world", "name": "cubes", "prompt": "Cubes."})
FRAMES = np.random.default_rng(0).integers(0, 255, (5, 8, 12, 3), dtype=np.uint8)


def test_on_by_default_with_nvidia_weights_off_with_a_random_preset():
    checkpoint = guardrail_setting(None, "/models/Cosmos-Predict2.5-2B")
    assert checkpoint.on and isinstance(checkpoint.checks, CosmosGuardrails)
    assert checkpoint.checks.checkpoint == "nvidia/Cosmos-Guardrail1"
    assert str(checkpoint).startswith("guardrails on (default with NVIDIA weights, as in the official inference")
    preset = guardrail_setting(None, "tiny")
    assert not preset.on
    assert str(preset).startswith("guardrails off (default for a random-weight preset: it contains no NVIDIA model")


def test_the_flag_overrides_the_default_and_turning_them_off_cites_the_license():
    assert guardrail_setting(True, "tiny").on
    off = guardrail_setting(False, "/models/Cosmos-Predict2.5-2B")
    assert not off.on and "--no-guardrails: the NVIDIA Open Model License" in str(off)
    assert str(guardrail_setting(False, "tiny")) == "guardrails off (--no-guardrails)"
    standin = StandInGuardrails()
    assert guardrail_setting(True, "tiny", standin).checks is standin
    assert guardrail_setting(False, "tiny", standin).checks is None


def test_official_checks_without_the_package_are_refused_before_anything_starts(monkeypatch):
    monkeypatch.setattr(guardrails.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"cosmos-guardrail is not installed: pip install 'cosmos-ray\[guardrails\]'"):
        check_installed(guardrail_setting(None, "/models/ckpt"))
    check_installed(guardrail_setting(None, "tiny"))  # off: nothing needed
    check_installed(guardrail_setting(True, "tiny", StandInGuardrails()))  # not the package's checks


def test_a_blocked_prompt_raises_with_the_check_and_reason():
    checks = StandInGuardrails()
    check_prompt(checks, "A robot arm stacks cubes.")
    with pytest.raises(Blocked) as caught:
        check_prompt(checks, "A FORBIDDEN robot")
    assert (caught.value.check, caught.value.reason) == ("prompt", "stand-in: the prompt contains 'forbidden'")
    assert str(caught.value) == "prompt blocked by the guardrails: stand-in: the prompt contains 'forbidden'"


def test_an_allowed_video_is_blurred_and_a_blocked_one_raises():
    checks = StandInGuardrails(blocked_frame_counts=(5,))
    with pytest.raises(Blocked) as caught:
        guard_video(checks, FRAMES)
    assert caught.value.check == "video"
    blurred = guard_video(checks, FRAMES[:4])
    assert blurred.shape == (4, 8, 12, 3) and (blurred == GREY).all()
    assert checks.check_video(FRAMES[:4]) == Verdict(True, "")


def test_blocked_survives_pickling():  # it crosses processes inside Ray's task errors
    copy = pickle.loads(pickle.dumps(Blocked("video", "frame 3 is Violence")))
    assert (copy.check, copy.reason, str(copy)) == (
        "video",
        "frame 3 is Violence",
        str(Blocked("video", "frame 3 is Violence")),
    )


def test_the_official_checks_pickle_before_they_load():
    checks = pickle.loads(pickle.dumps(CosmosGuardrails("org/guardrail")))
    assert checks.checkpoint == "org/guardrail"


def test_a_blocked_sample_is_recorded_and_leaves_no_video(tmp_path):
    store = OutputStore(str(tmp_path))
    store.write_ok(SPEC, b"mp4 made without guardrails", {})
    record = store.write_blocked(SPEC, "video blocked by the guardrails: x", metadata={"run_id": "r"}, source="s:1")
    assert (record.status, record.error, record.video_url, record.metadata) == (
        BLOCKED,
        "video blocked by the guardrails: x",
        None,
        {"run_id": "r"},
    )
    assert store.read_record(SPEC.sample_id) == record
    assert not (tmp_path / "videos" / f"{SPEC.sample_id}.mp4").exists()
    assert not store.is_done(SPEC.sample_id)  # a rerun checks it again
