"""Safety guardrails: the official prompt and video checks, from NVIDIA's `cosmos-guardrail` package.

The official inference (`cosmos_predict2/inference.py`, on by default, `disable_guardrails` to turn off) runs,
on rank 0:

    prompt  Blocklist (keyword lists, fuzzy and lemmatized matching), then Qwen3Guard (Qwen3Guard-Gen-0.6B,
            an LLM that labels the prompt Safe / Unsafe / Controversial; only Unsafe blocks)
    video   VideoContentSafetyFilter (SigLIP so400m embedding of every frame -> a 7-class classifier; more
            than 10 % of the frames in an unsafe class blocks), then RetinaFaceFilter (pixelates every face)

with the official settings where the package's defaults differ (the constants below, docs/guardrails.md).

`Guardrails` is the small interface the pipelines use; `CosmosGuardrails` implements it with the package's
classes and weights (the `[guardrails]` extra; weights from the Hugging Face hub, or its cache offline).
It differs from calling the package's `is_safe` methods in one way, on purpose: a check that fails to run
raises instead of passing. In cosmos-guardrail 0.3.2 both model checks swallow their errors and allow the
input; with transformers 5 (which the package requires) SigLIP's `get_image_features` returns an output
object, so every frame's check raises inside the package and every video passes. `CosmosGuardrails`
classifies the frames with the package's own encoder and classifier, reading the pooled embedding from either
return type, and lets any error through (the sample fails; nothing unchecked is written).

Whether a job runs them is `guardrail_setting`: on by default with NVIDIA's weights, as the official
inference, and because the weights' license (NVIDIA Open Model License, section 2.1) ends the rights of a
user who disables a guardrail without a substantially similar one of their own; off by default with the
random-weight presets, which contain no NVIDIA model. Torch-free at import: the package loads only when a
process uses a check.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np

from cosmos_ray.core.presets import RANDOM_PRESETS

GUARDRAIL_CHECKPOINT = "nvidia/Cosmos-Guardrail1"  # the official release's guardrail weights (Hugging Face)
PACKAGE = "cosmos_guardrail"
VIDEO_FRAMES_PER_BATCH = 16  # frames per SigLIP call of the video check

# The official settings, where the package's defaults differ (docs/guardrails.md, "Settings"; the official tree
# at nvidia-cosmos/cosmos-predict2.5 7e5ffc83, cosmos_predict2/_src/imaginaire/auxiliary/guardrail/):
BLOCKLIST_PARTIAL_MATCH_MIN_CHARS = 6  # blocklist/blocklist.py: words this long are also matched partially ...
BLOCKLIST_PARTIAL_MATCH_LETTER_COUNT = 0.4  # ... with up to this many characters of difference (package: 4, 0.5)
QWEN3GUARD_DTYPE = "bfloat16"  # qwen3guard/qwen3guard.py (the package leaves the model as loaded)
# video_content_safety_filter.py: a frame counts as unsafe when its class is one of these (class 2, Violence,
# is not in the official class table, so it does not count; the package's table has it) ...
VIDEO_UNSAFE_CLASSES = {1: "Sexual_Content", 3: "Drugs", 4: "Child_Abuse", 5: "Hate_and_Harassment", 6: "Self-Harm"}
VIDEO_UNSAFE_FRAMES_CUTOFF = 0.10  # ... and a video is blocked when more than this share of its frames are unsafe
INSTALL_HINT = "pip install 'cosmos-ray[guardrails]'"
LICENSE_NOTE = (
    "the NVIDIA Open Model License of the Cosmos weights ends your rights if you disable a guardrail without "
    "a substantially similar one of your own"
)

Part = Literal["prompt", "video"]


class Verdict(NamedTuple):
    """What a check decided: `allowed`, and why not (empty when allowed)."""

    allowed: bool
    reason: str = ""


class Guardrails(Protocol):
    """The checks a job runs: on the prompt before generation, on the frames after decoding.

    Implementations are pickled to the processes that use them before they load anything: `load(part)` loads
    the models of one part there (else they load on first use), so a process that checks prompts never holds
    the video models.
    """

    @property
    def name(self) -> str: ...  # recorded in every video's metadata

    def load(self, part: Part, device: str | None = None) -> None: ...

    def check_prompt(self, prompt: str) -> Verdict: ...

    def check_video(self, frames: np.ndarray) -> Verdict: ...  # frames: uint8 (T, H, W, 3)

    def blur_faces(self, frames: np.ndarray) -> np.ndarray: ...  # uint8 (T, H, W, 3), a new array


class Blocked(Exception):
    """A guardrail refused a sample's prompt or its generated video; nothing of it is written."""

    def __init__(self, check: Part, reason: str):
        super().__init__(check, reason)  # both in args, so the exception pickles across processes
        self.check = check
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.check} blocked by the guardrails: {self.reason}"


def check_prompt(guardrails: Guardrails, prompt: str) -> None:
    """Raise `Blocked` if the guardrails refuse `prompt` (the official inference checks the prompt only, not
    the negative prompt)."""
    verdict = guardrails.check_prompt(prompt)
    if not verdict.allowed:
        raise Blocked("prompt", verdict.reason)


def guard_video(guardrails: Guardrails, frames: np.ndarray) -> np.ndarray:
    """The frames to write: checked, then with faces blurred; raises `Blocked` if the video is refused."""
    verdict = guardrails.check_video(frames)
    if not verdict.allowed:
        raise Blocked("video", verdict.reason)
    return guardrails.blur_faces(frames)


@dataclass(frozen=True)
class GuardrailSetting:
    """Whether a job runs guardrails (`checks`, None when off) and why; `str()` is its summary-line phrase."""

    checks: Guardrails | None
    reason: str

    @property
    def on(self) -> bool:
        return self.checks is not None

    def __str__(self) -> str:
        return f"guardrails {'on' if self.on else 'off'} ({self.reason})"


def guardrail_setting(flag: bool | None, source: str, checks: Guardrails | None = None) -> GuardrailSetting:
    """The guardrails of a job whose model is `source` (a preset name or a checkpoint), given the entry
    point's `--guardrails` / `--no-guardrails` (`flag`; None when neither was given). `checks`: the
    implementation to run when on (default: `CosmosGuardrails()`)."""
    random_weights = source in RANDOM_PRESETS
    if flag is None:
        flag = not random_weights
        reason = (
            "default for a random-weight preset: it contains no NVIDIA model; --guardrails turns them on"
            if random_weights
            else "default with NVIDIA weights, as in the official inference; --no-guardrails turns them off"
        )
    elif flag:
        reason = "--guardrails"
    else:
        reason = "--no-guardrails" + ("" if random_weights else f": {LICENSE_NOTE}")
    return GuardrailSetting((checks or CosmosGuardrails()) if flag else None, reason)


def check_installed(setting: GuardrailSetting) -> None:
    """Raise ValueError (one line) when the official checks are on but `cosmos-guardrail` is not installed;
    cheap (no import), so jobs call it before they start anything."""
    if isinstance(setting.checks, CosmosGuardrails) and importlib.util.find_spec(PACKAGE) is None:
        raise ValueError(
            f"guardrails are on ({setting.reason}) but cosmos-guardrail is not installed: {INSTALL_HINT}, "
            "or pass --no-guardrails (README: Guardrails)"
        )


class CosmosGuardrails:
    """The official checks, with the models and weights of NVIDIA's `cosmos-guardrail` package.

    `checkpoint`: the Hugging Face repo of the guardrail weights (blocklist, video classifier, RetinaFace);
    Qwen3Guard and SigLIP come from their own repos. Offline, set HF_HUB_OFFLINE=1 with them in the hub cache.
    """

    def __init__(self, checkpoint: str = GUARDRAIL_CHECKPOINT):
        self.checkpoint = checkpoint
        self._prompt_checks: list[Any] | None = None  # [Blocklist, Qwen3Guard]
        self._video_filter: Any = None  # VideoContentSafetyFilter
        self._face_filter: Any = None  # RetinaFaceFilter
        self._device: dict[Part, str] = {}

    @property
    def name(self) -> str:
        return f"cosmos-guardrail {importlib.metadata.version('cosmos-guardrail')} ({self.checkpoint})"

    def load(self, part: Part, device: str | None = None) -> None:
        import torch

        package = _package()
        self._device[part] = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if part == "prompt" and self._prompt_checks is None:
            blocklist = package.Blocklist(
                self.checkpoint,
                guardrail_partial_match_min_chars=BLOCKLIST_PARTIAL_MATCH_MIN_CHARS,
                guardrail_partial_match_letter_count=BLOCKLIST_PARTIAL_MATCH_LETTER_COUNT,
            )
            qwen3guard = package.Qwen3Guard().to(self._device[part], dtype=getattr(torch, QWEN3GUARD_DTYPE))
            self._prompt_checks = [blocklist, qwen3guard]
        if part == "video" and self._video_filter is None:
            self._video_filter = package.VideoContentSafetyFilter(self.checkpoint).to(self._device[part]).eval()
            self._face_filter = package.RetinaFaceFilter(self.checkpoint).to(self._device[part]).eval()

    def check_prompt(self, prompt: str) -> Verdict:
        self.load("prompt", self._device.get("prompt"))
        assert self._prompt_checks is not None
        blocklist, qwen3guard = self._prompt_checks
        allowed, message = blocklist.is_safe(prompt)
        if not allowed:
            return Verdict(False, f"Blocklist: {message}")
        # Not Qwen3Guard.is_safe, which allows the prompt when the model fails; this raises instead.
        allowed, message = qwen3guard.extract_label_and_categories(prompt)
        return Verdict(True) if allowed else Verdict(False, f"Qwen3Guard: {message}")

    def check_video(self, frames: np.ndarray) -> Verdict:
        import PIL.Image
        import torch

        self.load("video", self._device.get("video"))
        encoder, classifier = self._video_filter.encoder, self._video_filter.model
        device = next(classifier.parameters()).device
        unsafe: list[tuple[int, int]] = []  # (frame, class) of each frame in an unsafe class
        for start in range(0, len(frames), VIDEO_FRAMES_PER_BATCH):
            images = [PIL.Image.fromarray(frame) for frame in frames[start : start + VIDEO_FRAMES_PER_BATCH]]
            with torch.inference_mode():
                inputs = encoder.processor(images=images, return_tensors="pt").to(device)
                output = encoder.model.get_image_features(**inputs)
                embedding = getattr(output, "pooler_output", output)  # (B, 1152); transformers 5: an output object
                embedding = embedding / embedding.norm(dim=-1, keepdim=True)
                classes = classifier.network(embedding).argmax(dim=-1).tolist()  # (B,), 0 is "Safe"
            unsafe += [(start + offset, c) for offset, c in enumerate(classes) if c in VIDEO_UNSAFE_CLASSES]
        return video_verdict(unsafe, len(frames))

    def blur_faces(self, frames: np.ndarray) -> np.ndarray:
        self.load("video", self._device.get("video"))
        # The package pixelates the faces in place: give it a copy (the frames may be a read-only buffer).
        return np.asarray(self._face_filter.postprocess(np.array(frames, dtype=np.uint8)), dtype=np.uint8)


def video_verdict(unsafe: list[tuple[int, int]], num_frames: int) -> Verdict:
    """The official rule: a video is blocked when more than `VIDEO_UNSAFE_FRAMES_CUTOFF` of its `num_frames`
    frames are in an unsafe class; `unsafe` lists (frame, class) of those frames, in order."""
    if not unsafe or len(unsafe) / num_frames <= VIDEO_UNSAFE_FRAMES_CUTOFF:  # the official comparison
        return Verdict(True)
    frame, first = unsafe[0]
    return Verdict(
        False,
        f"VideoContentSafetyFilter: {len(unsafe)} of {num_frames} frames are unsafe "
        f"(over {VIDEO_UNSAFE_FRAMES_CUTOFF:.0%}; the first, frame {frame}, is {VIDEO_UNSAFE_CLASSES[first]})",
    )


def _package() -> Any:
    """The package's module of checks; an ImportError that says how to install it."""
    try:
        from cosmos_guardrail import cosmos_guardrail
    except ImportError as error:
        raise ImportError(f"guardrails need the cosmos-guardrail package ({INSTALL_HINT}): {error}") from error
    return cosmos_guardrail
