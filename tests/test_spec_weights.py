"""The weights in a spec (issue 26): `cosmos_ray_checkpoint` and `cosmos_ray_loras`, their validation, and
`for_weights`, which every entry point applies before it takes a sample id."""

import jsonschema
import pytest

from cosmos_ray.core.adapters import LoraRef
from cosmos_ray.core.spec import GenerationSpec
from cosmos_ray.core.spec_schema import file_schema
from tests.spec_helpers import LABEL, TEXT, parse, rejects

ROBOT = {"inference_type": "text2world", "name": "robot", "prompt": "A robot arm stacks cubes.", "seed": 3}
LONG = {
    "inference_type": "image2world",
    "name": "robot",
    "prompt": "A robot arm stacks cubes.",
    "input_path": "s3://b/in.png",
    "enable_autoregressive": True,
    "num_output_frames": 150,
}
CHECKPOINT = "s3://models/robot-posttrained/model_ema_bf16.pt"
A, B = LoraRef("s3://models/loras/a.safetensors"), LoraRef("/loras/b.pt", 0.5)


@pytest.mark.parametrize(
    "data, sample_id",  # the ids of the commit before these fields existed
    [(ROBOT, "robot-af6b438e3d4d"), (LONG, "robot-cab537d59436")],
)
def test_stock_weights_without_adapters_keep_the_sample_ids(data, sample_id):
    spec = GenerationSpec.from_dict(data)
    assert spec.sample_id == sample_id
    run = spec.for_weights(None, ())
    assert run.sample_id == sample_id
    assert "cosmos_ray_checkpoint" not in run.to_dict() and "cosmos_ray_loras" not in run.to_dict()
    explicit_none = GenerationSpec.from_dict({**data, "cosmos_ray_loras": []}).for_weights(None, ())
    assert explicit_none.sample_id == sample_id  # no adapters either way


def test_the_run_fills_in_its_checkpoint_and_default_adapters():
    run = parse(TEXT).for_weights(CHECKPOINT, (A, B))
    assert (run.cosmos_ray_checkpoint, run.cosmos_ray_loras) == (CHECKPOINT, (A, B))
    assert run.to_dict()["cosmos_ray_loras"] == [A.to_dict(), B.to_dict()]
    assert GenerationSpec.from_dict(run.to_dict()) == run
    assert run.for_weights(CHECKPOINT, (A, B)) == run  # applying it again changes nothing


def test_a_specs_own_adapters_win_and_an_empty_list_means_none():
    own = parse(TEXT, cosmos_ray_loras=[{"path": "/loras/c.pt", "scale": 2}]).for_weights(None, (A,))
    assert own.cosmos_ray_loras == (LoraRef("/loras/c.pt", 2.0),)
    none = parse(TEXT, cosmos_ray_loras=[]).for_weights(None, (A,))
    assert none.cosmos_ray_loras == () and none.to_dict()["cosmos_ray_loras"] == []
    assert none.for_weights(None, (A,)) == none  # a stored spec JSON keeps meaning "none"
    assert GenerationSpec.from_dict(none.to_dict()).for_weights(None, (A,)) == none


def test_the_sample_id_changes_with_the_checkpoint_each_adapter_and_its_scale():
    spec = parse(TEXT)
    runs = [
        spec.for_weights(None),
        spec.for_weights(CHECKPOINT),
        spec.for_weights("s3://models/other.pt"),
        spec.for_weights(None, (A,)),
        spec.for_weights(None, (A, B)),
        spec.for_weights(None, (A, LoraRef(B.path, 0.25))),
        spec.for_weights(None, (LoraRef(A.path, 0.5),)),
    ]
    assert len({run.sample_id for run in runs}) == len(runs)


def test_a_spec_for_another_checkpoint_is_refused():
    spec = parse(TEXT, cosmos_ray_checkpoint="/ckpt/mine.pt")
    assert spec.for_weights("/ckpt/mine.pt").cosmos_ray_checkpoint == "/ckpt/mine.pt"
    with pytest.raises(
        ValueError,
        match="field 'cosmos_ray_checkpoint' names checkpoint '/ckpt/mine.pt', but this "
        "job generates with checkpoint '/ckpt/theirs.pt'; run this sample in a job with "
        "--checkpoint-path /ckpt/mine.pt, or leave the field out",
    ):
        spec.for_weights("/ckpt/theirs.pt")
    with pytest.raises(ValueError, match=r"generates with the stock weights \(no --checkpoint-path\)"):
        spec.for_weights(None)


def test_relative_adapter_paths_are_resolved_against_the_spec_files_folder():
    spec = GenerationSpec.from_dict(
        {**TEXT, "cosmos_ray_loras": [{"path": "loras/a.pt"}, {"path": "gs://b/c.pt", "scale": -1}]},
        base_dir="s3://bucket/specs",
    )
    assert spec.cosmos_ray_loras == (LoraRef("s3://bucket/specs/loras/a.pt"), LoraRef("gs://b/c.pt", -1.0))


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"cosmos_ray_loras": "a.pt"}, 'must be a list of {"path": ..., "scale": ...} objects or null, got \'a.pt\''),
        ({"cosmos_ray_loras": ["a.pt"]}, 'entry 0 must be an object {"path": ..., "scale": ...} (scale optional)'),
        ({"cosmos_ray_loras": [{"scale": 1}]}, "entry 0 must be an object"),
        ({"cosmos_ray_loras": [{"path": "/a.pt", "weight": 1}]}, "entry 0 must be an object"),
        ({"cosmos_ray_loras": [{"path": "/a.pt"}, {"path": " "}]}, "entry 1: path must be a non-empty string"),
        ({"cosmos_ray_loras": [{"path": "/a.pt", "scale": "1"}]}, "entry 0: scale must be a finite number"),
        ({"cosmos_ray_loras": [{"path": "/a.pt", "scale": True}]}, "entry 0: scale must be a finite number"),
        ({"cosmos_ray_loras": [{"path": "/a.pt", "scale": float("inf")}]}, "entry 0: scale must be a finite number"),
        (
            {"cosmos_ray_loras": [{"path": "/a.pt"}, {"path": "/a.pt", "scale": 2}]},
            "names adapter '/a.pt' twice; give it once, with the sum of its scales",
        ),
        ({"cosmos_ray_checkpoint": ""}, "must be a checkpoint path or URL, or null for the stock weights"),
        ({"cosmos_ray_checkpoint": 3}, "must be a string or null, got int 3"),
    ],
)
def test_bad_weights_are_refused_with_the_field_and_reason(changes, reason):
    field = next(iter(changes))
    error = rejects({**TEXT, **changes}, f"^{LABEL}field '{field}' ", source="specs.jsonl:4")
    assert reason in error.reason


def test_the_schema_documents_the_weights():
    validator = jsonschema.Draft202012Validator(file_schema())
    validator.validate({**TEXT, "cosmos_ray_checkpoint": CHECKPOINT, "cosmos_ray_loras": [A.to_dict(), {"path": "x"}]})
    for bad in ([{"path": "x", "weight": 1}], [{"scale": 1}], "x.pt"):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate({**TEXT, "cosmos_ray_loras": bad})
    properties = file_schema()["properties"]
    assert "--checkpoint-path" in properties["cosmos_ray_checkpoint"]["description"]
    assert "[] for none" in properties["cosmos_ray_loras"]["description"]
