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


# --- the official settings (docs/guardrails.md, "Settings"), on a stand-in of the package's classes --------------


class _Recorded:
    """Stands in for a class of the package: records how it was built and moved."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs, self.moved = args, kwargs, None

    def to(self, *args, **kwargs):
        self.moved = (args, kwargs)
        return self

    def eval(self):
        return self


class _Classifier(_Recorded):
    """The video filter's classifier, answering the classes in `answers` frame by frame."""

    answers: list[int] = []
    seen = 0  # frames classified so far

    def parameters(self):
        import torch

        yield torch.zeros(1)

    def network(self, embedding):
        import torch

        start = self.seen
        self.seen += len(embedding)
        return torch.nn.functional.one_hot(torch.tensor(self.answers[start : self.seen]), 7).float()  # (B, 7)


class _Encoder:
    class processor:  # noqa: N801 - the attribute's name in the package
        def __init__(self, images, return_tensors):
            self.count = len(images)

        def to(self, device):
            return {"count": self.count}

    class model:  # noqa: N801
        @staticmethod
        def get_image_features(count):
            import torch

            return torch.ones(count, 4)  # (B, D), as SigLIP's pooled features


class _VideoFilter(_Recorded):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.encoder, self.model = _Encoder(), _Classifier()


@pytest.fixture
def package(monkeypatch):
    import types

    fake = types.SimpleNamespace(
        Blocklist=_Recorded, Qwen3Guard=_Recorded, VideoContentSafetyFilter=_VideoFilter, RetinaFaceFilter=_Recorded
    )
    monkeypatch.setattr(guardrails, "_package", lambda: fake)
    return fake


def test_the_prompt_checks_use_the_official_settings(package):
    import torch

    checks = CosmosGuardrails()
    checks.load("prompt", "cpu")
    assert checks._prompt_checks is not None
    blocklist, qwen3guard = checks._prompt_checks
    # official: Blocklist() with its defaults 6 / 0.4; the package's defaults are 4 / 0.5
    assert blocklist.args == ("nvidia/Cosmos-Guardrail1",)
    assert blocklist.kwargs == {"guardrail_partial_match_min_chars": 6, "guardrail_partial_match_letter_count": 0.4}
    assert qwen3guard.moved == (("cpu",), {"dtype": torch.bfloat16})  # official: bf16, on the CPU too


@pytest.mark.parametrize(
    ("answers", "allowed"),
    [
        ([0] * 91 + [3] * 9, True),  # 9 of 100 frames unsafe: not over 10 %
        ([0] * 90 + [3] * 10, True),  # 10 of 100: still not over
        ([0] * 89 + [3] * 11, False),  # 11 of 100: over
        ([2] * 100, True),  # class 2 (Violence) is not in the official class table
        ([2] * 50 + [6] * 50, False),
    ],
)
def test_the_video_check_blocks_as_the_official_one(package, answers, allowed):
    _Classifier.answers = answers
    verdict = CosmosGuardrails().check_video(np.zeros((len(answers), 4, 4, 3), np.uint8))
    assert verdict.allowed is allowed
    if not allowed:
        first = next(frame for frame, c in enumerate(answers) if c not in (0, 2))
        name = guardrails.VIDEO_UNSAFE_CLASSES[answers[first]]
        unsafe = sum(c not in (0, 2) for c in answers)
        expected = f"{unsafe} of 100 frames are unsafe (over 10%; the first, frame {first}, is {name})"
        assert verdict.reason == f"VideoContentSafetyFilter: {expected}"
