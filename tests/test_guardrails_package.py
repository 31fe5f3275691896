"""`CosmosGuardrails` on NVIDIA's `cosmos-guardrail` package itself, as far as it runs without its weights.

Skipped where the package cannot be imported: it is not in the `test` extra (it needs torchvision, whose PyPI
wheels do not load beside the CPU torch CI installs), so these run in an environment with the `[guardrails]`
extra and a matching torch/torchvision.

No weights can be downloaded, so each test lays out a Hugging Face hub cache of its own (offline mode) with
small stand-ins of the gated files, and the package's classes load them as they would the real ones:

- Blocklist: the real code (better-profanity censoring, NLTK tokenizing and lemmatizing, exact and partial
  matching) on our own word lists; our NLTK data is minimal (an empty WordNet: lemmas are the words).
- RetinaFaceFilter: the real detector network and post-processing, with a checkpoint whose detection heads we
  set so that it finds no face, or a face at every anchor.
- VideoContentSafetyFilter: the real classifier and the package's SigLIP loading, with a small random SigLIP
  and a classifier whose bias picks the class.
- Qwen3Guard needs its LLM's weights: replaced by a stand-in here, as everywhere else in the tests.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from cosmos_ray.core.guardrails import Blocked, CosmosGuardrails, Verdict, check_prompt, guard_video

try:
    from cosmos_guardrail import cosmos_guardrail as package
except Exception as error:  # noqa: BLE001 - not installed, or its torchvision/transformers imports fail here
    pytest.skip(f"cosmos-guardrail cannot be imported here: {type(error).__name__}: {error}", allow_module_level=True)

import huggingface_hub.constants
import torch

QWEN3GUARD = package.Qwen3Guard  # before the tests put their stand-in in its place
REPO_ID = "local/guardrail"  # our stand-in of nvidia/Cosmos-Guardrail1
COMMIT = "0" * 40
FRAMES = np.random.default_rng(0).integers(0, 255, (3, 64, 96, 3), dtype=np.uint8)


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """An offline Hugging Face hub cache; `snapshot(hub, repo)` adds a repo to it."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    return tmp_path / "hub"


def snapshot(cache: Path, repo_id: str) -> Path:
    """The snapshot folder of `repo_id` in a hub cache laid out as `snapshot_download` finds it offline."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    folder = repo / "snapshots" / COMMIT
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Qwen3GuardStandIn:
    """The LLM check's place in the chain; records what reached it."""

    prompts: list[str] = []

    def to(self, device):
        return self

    def extract_label_and_categories(self, prompt: str) -> tuple[bool, str]:
        self.prompts.append(prompt)
        if "explode" in prompt:
            raise AttributeError("'NoneType' object has no attribute 'lower'")  # no "Safety:" label in its answer
        return True, ""


@pytest.fixture
def blocklist_checkpoint(hub, monkeypatch) -> None:
    """blocklist/ as in the guardrail repo: custom (censored, fuzzy), whitelist, exact_match word lists, and
    the NLTK data the package reads (punkt_tab for tokenizing, WordNet for lemmas; both minimal here)."""
    blocklist = snapshot(hub, REPO_ID) / "blocklist"
    for folder, words in {"custom": ["banana"], "whitelist": ["bananarama"], "exact_match": ["kiwi fruit"]}.items():
        (blocklist / folder).mkdir(parents=True)
        (blocklist / folder / "words.txt").write_text("\n".join(words) + "\n")
    punkt = blocklist / "nltk_data" / "tokenizers" / "punkt_tab" / "english"
    wordnet = blocklist / "nltk_data" / "corpora" / "wordnet"
    punkt.mkdir(parents=True)
    wordnet.mkdir(parents=True)
    for name in ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab"):
        (punkt / name).write_text("")
    for name in (
        "lexnames",
        "index.sense",
        *(f"{kind}.{pos}" for pos in ("noun", "verb", "adj", "adv") for kind in ("index", "data")),
        *(f"{pos}.exc" for pos in ("noun", "verb", "adj", "adv")),
    ):
        (wordnet / name).write_text("")
    Qwen3GuardStandIn.prompts = []
    monkeypatch.setattr(package, "Qwen3Guard", Qwen3GuardStandIn)


def test_the_blocklist_blocks_listed_words_before_the_llm_check(blocklist_checkpoint):
    checks = CosmosGuardrails(REPO_ID)
    checks.load("prompt", "cpu")
    blocked = checks.check_prompt("A banana on a table.")
    assert blocked == Verdict(False, "Blocklist: Prompt blocked by censorship: Censored Prompt: A **** on a table.")
    assert not checks.check_prompt("A b@nana").allowed  # better-profanity's character variants
    exact = checks.check_prompt("A kiwi  fruit salad")
    assert not exact.allowed and "exact match blocklist" in exact.reason and "kiwi fruit" in exact.reason
    assert checks.check_prompt("Bananarama plays on a stage.") == Verdict(True, "")  # whitelisted
    assert checks.check_prompt("A robot arm stacks cubes.") == Verdict(True, "")
    assert Qwen3GuardStandIn.prompts == ["Bananarama plays on a stage.", "A robot arm stacks cubes."]
    with pytest.raises(Blocked, match="prompt blocked by the guardrails: Blocklist: "):
        check_prompt(checks, "Two banana trees")


def test_a_failing_llm_check_raises_instead_of_allowing_the_prompt(blocklist_checkpoint):
    checks = CosmosGuardrails(REPO_ID)
    with pytest.raises(AttributeError):
        checks.check_prompt("A robot makes the tower explode.")
    # The package's own wrapper allows the prompt when its model fails:
    assert QWEN3GUARD.is_safe(Qwen3GuardStandIn(), "A robot makes the tower explode.") == (
        True,
        "Unexpected error occurred when running Qwen3Guard guardrail.",
    )


def video_checkpoint(hub: Path, repo_id: str, *, predicted_class: int = 0, face_logit: float = -5.0) -> None:
    """The video part of a guardrail repo, with stand-ins of its weights:

    - video_content_safety_filter/: a small random SigLIP where the package looks for SigLIP so400m (its
      1152-wide image embedding kept), and safety_filter.pt whose last layer always answers `predicted_class`;
    - face_blur_filter/Resnet50_Final.pth: the package's RetinaFace with its class head answering `face_logit`
      (negative: no face; positive: a face at every anchor) and its box head the anchors themselves.
    """
    import sentencepiece
    from retinaface.data import cfg_re50
    from retinaface.models.retinaface import RetinaFace
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor, SiglipTokenizer

    torch.manual_seed(0)
    folder = snapshot(hub, repo_id) / "video_content_safety_filter"
    folder.mkdir()
    siglip = snapshot(folder, "google/siglip-so400m-patch14-384")
    vocabulary = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(["a robot arm stacks cubes", "a car drives on a road"] * 50),
        model_writer=vocabulary,
        vocab_size=20,
    )
    (folder / "spiece.model").write_bytes(vocabulary.getvalue())
    tokenizer = SiglipTokenizer(vocab_file=str(folder / "spiece.model"))
    SiglipProcessor(SiglipImageProcessor(size={"height": 32, "width": 32}), tokenizer).save_pretrained(siglip)
    vision = {"hidden_size": 1152, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    text = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = SiglipConfig(
        text_config={**text, "vocab_size": 20}, vision_config={**vision, "image_size": 32, "patch_size": 16}
    )
    SiglipModel(config).save_pretrained(siglip)
    classifier = package.VideoSafetyModel(package.ModelConfig(input_size=1152, num_classes=7))
    last = classifier.network.layers[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    last.bias.data[predicted_class] = 5.0
    torch.save({"model": classifier.state_dict()}, folder / "safety_filter.pt")

    state = RetinaFace(cfg={**cfg_re50, "pretrain": False}, phase="test").state_dict()
    for key, value in state.items():
        if key.startswith(("ClassHead", "BboxHead")):
            value.zero_()
        if key.startswith("ClassHead") and key.endswith("bias"):  # (background, face) logits of 2 anchors
            value.copy_(torch.tensor([0.0, face_logit, 0.0, face_logit]))
    (snapshot(hub, repo_id) / "face_blur_filter").mkdir()
    torch.save(state, snapshot(hub, repo_id) / "face_blur_filter" / "Resnet50_Final.pth")


def loaded(repo_id: str) -> CosmosGuardrails:
    checks = CosmosGuardrails(repo_id)
    checks.load("video", "cpu")
    return checks


def test_the_face_filter_pixelates_what_retinaface_detects(hub):
    video_checkpoint(hub, "local/no-faces", face_logit=-5.0)
    video_checkpoint(hub, "local/faces-everywhere", face_logit=5.0)
    frames = FRAMES.copy()
    frames.setflags(write=False)  # as the batch job's frames (a view of an Arrow buffer)
    assert (guard_video(loaded("local/no-faces"), frames) == FRAMES).all()
    blurred = guard_video(loaded("local/faces-everywhere"), frames)
    assert blurred.shape == FRAMES.shape and blurred.dtype == np.uint8
    assert (blurred != FRAMES).mean() > 0.5  # pixelated
    assert (frames == FRAMES).all()  # the input is left as it was


@pytest.mark.parametrize(
    "predicted_class, verdict",
    [
        (0, Verdict(True, "")),
        (2, Verdict(True, "")),  # Violence: not in the official class table
        (
            3,
            Verdict(
                False, "VideoContentSafetyFilter: 3 of 3 frames are unsafe (over 10%; the first, frame 0, is Drugs)"
            ),
        ),
    ],
)
def test_the_video_filter_classifies_every_frame(hub, predicted_class, verdict):
    video_checkpoint(hub, REPO_ID, predicted_class=predicted_class)
    assert loaded(REPO_ID).check_video(FRAMES) == verdict


def test_the_package_video_check_lets_unsafe_frames_through_with_transformers_5(hub):
    """Why `CosmosGuardrails.check_video` does not call `VideoContentSafetyFilter.is_safe`: SigLIP's
    `get_image_features` returns an output object in transformers 5, the package's encoder fails on it for
    every frame, and `is_safe` logs a warning per frame and calls the video safe. If this fails, the package
    was fixed: check_video could call it again."""
    video_checkpoint(hub, REPO_ID, predicted_class=2)
    assert package.VideoContentSafetyFilter(REPO_ID).eval().is_safe(FRAMES) == (True, "safe frames detected")


def test_a_blocked_video_raises_and_is_not_blurred(hub):
    video_checkpoint(hub, REPO_ID, predicted_class=6, face_logit=5.0)
    with pytest.raises(
        Blocked, match="video blocked by the guardrails: VideoContentSafetyFilter: frame 0 is Self-Harm"
    ):
        guard_video(loaded(REPO_ID), FRAMES)
