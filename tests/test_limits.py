import json

import pytest

from cosmos_ray.core.limits import SpecLimits, spec_cost
from cosmos_ray.core.manifest import spec_from_row
from cosmos_ray.core.registry import DEFAULT_MODEL, MODELS
from cosmos_ray.core.spec import GenerationSpec, SpecError


def _spec(**fields) -> GenerationSpec:
    return GenerationSpec.from_dict({"inference_type": "text2world", "name": "s", "prompt": "a cube", **fields})


def test_defaults_accept_the_official_defaults_and_720p():
    SpecLimits().check(_spec(resolution="704,1280"))


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"enable_autoregressive": True, "num_output_frames": 100001}, "num_output_frames"),
        ({"cosmos_ray_num_frames": 100001}, "cosmos_ray_num_frames"),
        ({"resolution": "16000,16000"}, "resolution"),
        ({"num_steps": 1000}, "num_steps"),
        ({"num_generations": 1001}, "num_generations"),
    ],
)
def test_a_spec_over_a_limit_names_the_sample_and_field(fields, field):
    with pytest.raises(SpecError) as caught:
        SpecLimits().check(_spec(**fields))
    assert caught.value.field == field and "at most" in caught.value.reason and "'s'" in str(caught.value)


def test_num_output_frames_is_unlimited_where_the_official_script_ignores_it():
    SpecLimits().check(_spec(num_output_frames=100001))  # single window: the video has the model's native length


def test_limits_are_configurable_and_must_be_positive():
    with pytest.raises(SpecError):
        SpecLimits(max_num_steps=10).check(_spec(num_steps=11))
    with pytest.raises(ValueError, match="max_pixels"):
        SpecLimits(max_pixels=0)


# The issue-28 request: 93 windows of one output frame each, every window a full 93-frame generation.
WINDOW_PER_FRAME = {"enable_autoregressive": True, "num_output_frames": 93, "chunk_size": 1, "chunk_overlap": 0}


def test_the_cost_counts_windows_steps_passes_and_tokens_in_reference_clips():
    model = MODELS[DEFAULT_MODEL]
    assert spec_cost(_spec(resolution="704,1280"), model).clips == 1.0  # the official defaults: one clip
    assert spec_cost(_spec(resolution="704,1280", guidance=0), model).clips == 0.5  # no unconditional pass
    # a quarter of the tokens: a quarter of the linear work and a sixteenth of the attention, by the composition
    # docs/performance.md gives for one 2B forward at 84,480 tokens (self-attention 1.637 PFLOP of 1.925)
    quarter = (0.288 / 4 + 1.637 / 16) / 1.925
    assert spec_cost(_spec(resolution="352,640"), model).clips == pytest.approx(quarter, rel=0.01)
    assert spec_cost(_spec(resolution="704,1280", num_steps=70), model).clips == 2.0
    assert spec_cost(_spec(cosmos_ray_num_frames=9), model).tokens == 3 * 44 * 80  # 9 frames: 3 latent frames
    long_video = spec_cost(_spec(enable_autoregressive=True, num_output_frames=153), model)  # chunk 77, overlap 1
    assert long_video.windows == 2 and long_video.clips == 2.0  # each window is a whole native generation
    assert spec_cost(_spec(**WINDOW_PER_FRAME, num_steps=50), model).windows == 93
    distilled = spec_cost(_spec(resolution="704,1280"), MODELS["2B/distilled"])
    assert distilled.passes == 1  # unguided


def test_a_spec_over_the_cost_limit_is_refused_with_its_cost_and_what_to_change():
    spec = _spec(**WINDOW_PER_FRAME, num_steps=50)
    SpecLimits().check(_spec(resolution="704,1280"))  # every single field of `spec` is within its limit ...
    with pytest.raises(SpecError) as caught:
        SpecLimits(max_cost=3).check(spec)  # ... but not its work
    error = caught.value
    assert error.field == "chunk_size"
    assert "132.86 reference clips (93 window(s) x 50 steps x 2 pass(es)" in error.reason
    assert "max_cost" in error.reason and "larger chunk_size" in error.reason
    with pytest.raises(SpecError) as caught:
        SpecLimits(max_cost=1).check(_spec(resolution="704,1280", num_steps=50))
    assert caught.value.field == "num_steps" and "fewer num_steps" in caught.value.reason


def test_an_operator_raises_the_cost_limit():
    SpecLimits(max_cost=200).check(_spec(**WINDOW_PER_FRAME, num_steps=50))
    with pytest.raises(ValueError, match="max_cost"):
        SpecLimits(max_cost=0)


def test_the_cost_limit_is_checked_against_the_jobs_model(tmp_path):
    """The batch job's check stage: a row over the cost is an invalid row; the model decides what it costs."""
    row = {"spec_json": json.dumps({"inference_type": "text2world", "name": "s", "prompt": "p", "num_steps": 4})}
    limits = SpecLimits(max_cost=0.1)  # 4 guided steps at 720p are 0.11 clips; 4 unguided ones 0.06
    with pytest.raises(SpecError, match="field 'num_steps'"):
        spec_from_row(row, limits, model=MODELS["2B/post-trained"])
    spec_from_row(row, limits, model=MODELS["2B/distilled"])
