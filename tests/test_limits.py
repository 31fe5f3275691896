import pytest

from cosmos_ray.core.limits import SpecLimits
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
