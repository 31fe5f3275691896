"""`SpecLimits` on every spec format: each limit a format has (steps, generations, frames, resolution, max_cost),
with the sample, field and reason of the refusal, and the cost of the multiview and robot models' work."""

import pytest

from cosmos_ray.core.action_spec import ACTION_MODEL, ActionSpec
from cosmos_ray.core.agibot_spec import AGIBOT_MODEL, AgibotSpec
from cosmos_ray.core.limits import REFERENCE_CLIP, SpecLimits, guidance_passes, spec_cost
from cosmos_ray.core.multiview_spec import MULTIVIEW_MODEL, MultiviewSpec
from cosmos_ray.core.registry import DEFAULT_MODEL, MODELS
from cosmos_ray.core.spec import GenerationSpec, SpecError
from cosmos_ray.sampling import get_sampler


def multiview(**fields) -> MultiviewSpec:
    return MultiviewSpec.from_dict({"inference_type": "text2world", "name": "mv", "prompt": "a road", **fields})


def action(**fields) -> ActionSpec:
    episode = {"input_root": "/data", "input_json_sub_folder": "annotations", "cosmos_ray_annotation": "0.json"}
    return ActionSpec.from_dict({"name": "ep", **episode, **fields})


def agibot(**fields) -> AgibotSpec:
    return AgibotSpec.from_dict({"name": "scene", "prompt": "a robot", "input_name": "0", **fields}, base_dir="/data")


def base(**fields) -> GenerationSpec:
    return GenerationSpec.from_dict({"inference_type": "text2world", "name": "s", "prompt": "a cube", **fields})


SPECS = {"base": base, "multiview": multiview, "action": action, "agibot": agibot}
MODEL_OF = {base: DEFAULT_MODEL, multiview: MULTIVIEW_MODEL, action: ACTION_MODEL, agibot: AGIBOT_MODEL}


def refusal(limits: SpecLimits, spec) -> SpecError:
    with pytest.raises(SpecError) as caught:
        limits.check(spec)
    return caught.value


@pytest.mark.parametrize("make", SPECS.values(), ids=SPECS)
def test_every_format_passes_the_default_limits_at_its_official_defaults(make):
    SpecLimits().check(make())


@pytest.mark.parametrize("make", SPECS.values(), ids=SPECS)
def test_every_format_has_its_steps_and_generations_bounded(make):
    error = refusal(SpecLimits(max_num_steps=34), make())
    assert error.field == "num_steps" and "at most 34" in error.reason and "got 35" in error.reason
    error = refusal(SpecLimits(max_num_generations=2), make(num_generations=3))
    assert error.field == "num_generations" and "at most 2" in error.reason


@pytest.mark.parametrize("make", SPECS.values(), ids=SPECS)
def test_every_format_has_its_work_bounded(make):
    """Checked without naming the model: a format is costed on the model that reads it."""
    cost = spec_cost(make(), MODELS[MODEL_OF[make]])
    error = refusal(SpecLimits(max_cost=cost.clips * 0.99), make())
    assert error.field == "num_steps" and "max_cost" in error.reason
    assert f"{cost.clips:.2f} reference clips" in error.reason and repr(make().name) in str(error)
    SpecLimits(max_cost=cost.clips * 1.01).check(make())


# --- the multiview model ---------------------------------------------------------------------------------------


def test_a_multiview_sample_weighs_its_attention_over_all_seven_views():
    cost = spec_cost(multiview(), MODELS[MULTIVIEW_MODEL])
    assert cost.tokens == 7 * 8 * (720 // 16) * (1280 // 16) == 201_600
    assert cost.passes == 2 and cost.evaluations == 35 and cost.windows == 1
    # per forward 10.0 PFLOP against the base model's 1.925 (docs/performance.md): 5.2 reference clips, not the
    # 2.4 of the token count
    assert cost.clips == pytest.approx(10.0 / 1.925, rel=0.01)
    assert cost.clips > 2 * cost.tokens / REFERENCE_CLIP.tokens


def test_the_multiview_recipe_runs_both_passes_at_guidance_0():
    assert spec_cost(multiview(guidance=0), MODELS[MULTIVIEW_MODEL]).passes == 2
    error = refusal(SpecLimits(max_cost=5), multiview(guidance=0))
    assert "guidance 0" not in error.reason  # it would not help
    assert "guidance 0 (one pass)" in refusal(SpecLimits(max_cost=5), agibot()).reason


def test_multiview_chunks_push_a_spec_over_the_cost_limit():
    one = spec_cost(multiview(), MODELS[MULTIVIEW_MODEL])
    spec = multiview(enable_autoregressive=True, num_chunks=7)
    cost = spec_cost(spec, MODELS[MULTIVIEW_MODEL])
    assert cost.windows == 7 and cost.clips == pytest.approx(7 * one.clips)
    SpecLimits().check(multiview(enable_autoregressive=True, num_chunks=6))  # 31.2 clips: within the default 32
    error = refusal(SpecLimits(), spec)
    assert error.field == "num_chunks"
    assert "36.40 reference clips (7 window(s) x 35 steps x 2 pass(es) x 201600 tokens)" in error.reason
    assert "more than the 32 allowed here" in error.reason and "fewer num_chunks" in error.reason
    assert "resolution" not in error.reason  # the model fixes it


def test_multiview_chunks_are_bounded_as_frames_per_view():
    spec = multiview(enable_autoregressive=True, num_chunks=4, chunk_overlap=1)  # 29 + 3 x 28 = 113 per view
    error = refusal(SpecLimits(max_num_output_frames=93), spec)
    assert error.field == "num_chunks" and "113 frames per view" in error.reason and "at most" in error.reason
    SpecLimits(max_num_output_frames=113).check(spec)
    SpecLimits(max_num_output_frames=29).check(multiview())  # one chunk: the model's own length, no field to lower


# --- the robot models -----------------------------------------------------------------------------------------


def test_an_agibot_scene_is_one_window_of_three_views():
    cost = spec_cost(agibot(), MODELS[AGIBOT_MODEL])
    assert cost.tokens == 3 * 24 * 44 * 80 and cost.windows == 1 and cost.passes == 2
    assert spec_cost(agibot(guidance=0), MODELS[AGIBOT_MODEL]).passes == 1
    error = refusal(SpecLimits(max_cost=8), agibot())  # 8.1 clips: three views attend to each other
    assert error.field == "num_steps" and "8.10 reference clips" in error.reason
    assert "fewer num_steps or guidance 0 (one pass)" in error.reason
    SpecLimits(max_num_output_frames=1, max_pixels=16 * 16).check(agibot(num_steps=10))  # neither is a field here


def test_an_action_chunk_is_bounded_by_its_frames_resolution_and_cost():
    model = MODELS[ACTION_MODEL]
    cost = spec_cost(action(), model)
    assert cost.tokens == 4 * (256 // 16) * (320 // 16) and cost.windows == 1  # one 13-frame chunk at 256x320
    assert spec_cost(action(chunk_size=24, resolution="512,640"), model).tokens == 7 * 32 * 40
    error = refusal(SpecLimits(max_num_output_frames=93), action(chunk_size=96))
    assert error.field == "chunk_size" and "97 frames" in error.reason and "lower chunk_size" in error.reason
    error = refusal(SpecLimits(max_pixels=256 * 320), action(resolution="512,640"))
    assert error.field == "resolution" and "got 512,640" in error.reason
    error = refusal(SpecLimits(max_pixels=100 * 100), action())
    assert error.field == "resolution" and "got none (256x320, the model's)" in error.reason
    error = refusal(SpecLimits(max_cost=0.5), action(chunk_size=400, resolution="1088,1920"))
    assert error.field == "num_steps" and "a smaller resolution" in error.reason


def test_guidance_passes_agree_with_every_models_sampler():
    for model in MODELS.values():
        sampler = get_sampler(model.sampler_recipe)
        for guidance in range(8):
            assert guidance_passes(model, guidance) == 1 + sampler.runs_unconditional(guidance), (model.name, guidance)
