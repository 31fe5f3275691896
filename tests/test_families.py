"""The model-family seam: a family registered beside the official models runs through the entry points.

The family here is a test-only engine that paints each video one grey level (its seed), so what the entry
point wrote can be traced back to it. Registering it and its model is all it takes (docs/architecture.md,
"Where to add a model family")."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cosmos_ray.core.media import read_video
from cosmos_ray.core.options import EngineOptions
from cosmos_ray.core.outputs import OK, OutputStore
from cosmos_ray.core.progress import Progress, Step
from cosmos_ray.core.registry import MODELS, CheckpointFile, OfficialModel, register_model
from cosmos_ray.core.result import GenerationResult
from cosmos_ray.core.spec import GenerationSpec
from cosmos_ray.families import FAMILIES, load_engine, register_family
from cosmos_ray.generator import Generator
from cosmos_ray.multiview import MultiviewEngine
from cosmos_ray.parallel import ParallelContext
from jobs import local

FAMILY, MODEL = "test-grey", "test/grey"


class GreyEngine:
    """A family's engine: `steps` fake denoising steps, then frames of one grey level (the spec's seed)."""

    def __init__(self, options: EngineOptions, device: torch.device | str | None):
        self.options = options
        self.device = torch.device(device or "cpu")

    def __call__(self, spec: GenerationSpec, progress: Progress | None = None) -> GenerationResult:
        for step in range(1, spec.num_steps + 1):
            if progress is not None:
                progress(Step(step, spec.num_steps))
        height, width = spec.height_width or (32, 48)
        frames = np.full((spec.cosmos_ray_num_frames or 9, height, width, 3), spec.seed, np.uint8)
        return GenerationResult(frames, spec.fps, {"sample_id": spec.sample_id, "model": self.options.model})


def load_grey(options: EngineOptions, device: torch.device | str | None, parallel: ParallelContext | None):
    assert parallel is None  # one process
    return GreyEngine(options, device)


@pytest.fixture
def grey_family():
    register_family(FAMILY, load_grey)
    register_model(
        OfficialModel(
            name=MODEL,
            purpose="one grey level per video (tests)",
            size="2B",
            dit_file=CheckpointFile("none", "none"),
            experiment="none",
            sampler_recipe="post-trained",
            inference_types=("text2world",),
            family=FAMILY,
        )
    )
    yield
    del MODELS[MODEL], FAMILIES[FAMILY]


def test_load_engine_builds_the_engine_of_the_models_family(grey_family):
    engine = load_engine(EngineOptions(model=MODEL), device="cpu")
    assert isinstance(engine, GreyEngine)
    with pytest.raises(ValueError, match="already registered"):
        register_family(FAMILY, load_grey)


def test_a_registered_family_runs_in_the_local_cli(grey_family, tmp_path):
    specs = tmp_path / "specs.jsonl"
    seeds = {"grey-7": 7, "grey-200": 200}
    lines = [
        {"inference_type": "text2world", "name": name, "prompt": "grey", "seed": seed} for name, seed in seeds.items()
    ]
    specs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out"
    assert local.main(["-i", str(specs), "-o", str(out), "--preset", "tiny", "--model", MODEL]) == 0
    store = OutputStore(str(out))
    for line in lines:
        spec = GenerationSpec.from_dict(line)
        record = store.read_record(spec.sample_id)
        assert record is not None and record.status == OK and record.metadata["model"] == MODEL
        video = read_video(store.video_url(spec.sample_id))
        assert video.shape == (9, 32, 48, 3)
        assert abs(float(video.mean()) - seeds[spec.name]) < 3  # the family's grey level, through H.264


def test_a_spec_the_familys_model_cannot_generate_is_refused_before_loading(grey_family, tmp_path, capsys):
    (tmp_path / "x.png").write_bytes(b"")  # exists: the spec is valid, only the model refuses it
    specs = tmp_path / "specs.json"
    specs.write_text(json.dumps({"inference_type": "image2world", "name": "i", "prompt": "p", "input_path": "x.png"}))
    assert local.main(["-i", str(specs), "-o", str(tmp_path / "out"), "--preset", "tiny", "--model", MODEL]) == 1
    assert "image2world is not supported by model test/grey" in capsys.readouterr().err


def test_a_family_engine_refuses_a_generator_without_its_net():
    """`FamilyEngine`: the multiview engine over a base generator (a plain `MiniTrainDiT`) is refused at once."""
    generator = Generator.from_options(EngineOptions(source="tiny"), device="cpu")
    with pytest.raises(
        TypeError, match="MultiviewEngine needs a generator whose DiT is a MultiviewDiT, not MiniTrainDiT"
    ):
        MultiviewEngine(generator)
