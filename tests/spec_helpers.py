"""What the GenerationSpec tests share: one spec of each inference type, parsing one with changes, and
checking a rejection's message."""

import pytest

from cosmos_ray.core.spec import GenerationSpec, SpecError

TEXT = {"inference_type": "text2world", "name": "snowy_stop_light", "prompt": "A stop light in the snow."}
IMAGE = {"inference_type": "image2world", "name": "bus", "prompt": "A bus.", "input_path": "/data/bus.jpg"}
VIDEO = {"inference_type": "video2world", "name": "pour", "prompt": "A robot.", "input_path": "/data/pour.mp4"}
LABEL = r"sample 'snowy_stop_light' \(specs.jsonl:4\): "  # how a rejection of `parse(TEXT, ...)` starts


def parse(base: dict, **changes) -> GenerationSpec:
    return GenerationSpec.from_dict({**base, **changes}, source="specs.jsonl:4")


def rejects(data, match: str, **kwargs) -> SpecError:
    with pytest.raises(SpecError, match=match) as info:
        GenerationSpec.from_dict(data, **kwargs)
    return info.value
