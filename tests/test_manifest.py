"""Manifests: the examples round-trip, relative paths resolve, bad files are all reported and nothing is written."""

import json
import os

import pytest

from cosmos_ray.core.manifest import (
    MANIFEST_SCHEMA,
    ManifestError,
    expand_legacy,
    load_specs,
    make_manifest,
    read_manifest,
    spec_from_row,
)
from cosmos_ray.core.registry import DEFAULT_MODEL, MODELS
from cosmos_ray.core.spec import GenerationSpec, SpecError
from cosmos_ray.core.storage import Storage
from jobs import make_manifest as cli

BASE = MODELS[DEFAULT_MODEL]
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def example_specs() -> list[GenerationSpec]:
    """The examples parsed one by one, without the manifest code."""
    specs = []
    for name in ("image2world.json", "text2world.json", "video2world.json"):
        with open(os.path.join(EXAMPLES, name)) as f:
            specs.append(GenerationSpec.from_dict(json.load(f), base_dir=EXAMPLES))
    with open(os.path.join(EXAMPLES, "specs.jsonl")) as f:
        specs += [GenerationSpec.from_dict(json.loads(line), base_dir=EXAMPLES) for line in f if line.strip()]
    return specs


def write(path, content) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_examples_round_trip(tmp_path):
    out = str(tmp_path / "m" / "examples.parquet")
    written = make_manifest([os.path.join(EXAMPLES, "*.json"), os.path.join(EXAMPLES, "specs.jsonl")], out)
    rows = read_manifest(out)
    specs = [spec_from_row(row, model=BASE) for row in rows]
    assert specs == written == example_specs()
    assert {s.inference_type for s in specs} == {"text2world", "image2world", "video2world"}
    assert [row["name"] for row in rows] == [s.name for s in specs]
    assert rows[3]["source"] == os.path.join(EXAMPLES, "specs.jsonl") + ":1"
    image = next(s for s in specs if s.name == "square_slides")
    assert isinstance(image, GenerationSpec)
    assert image.input_path == os.path.join(EXAMPLES, "media", "square.png")
    assert image.prompt.startswith("An orange square slides") and not image.prompt.endswith("\n")


def test_manifest_schema(tmp_path):
    import pyarrow.parquet as pq

    out = str(tmp_path / "m.parquet")
    make_manifest([os.path.join(EXAMPLES, "text2world.json")], out)
    assert pq.read_schema(out).names == MANIFEST_SCHEMA.names
    row = read_manifest(out)[0]
    assert json.loads(row["spec_json"]) == GenerationSpec.from_dict(json.loads(row["spec_json"])).to_dict()
    assert row["inference_type"] == "text2world" and row["name"] == "snowy_crossing"


def test_relative_paths_resolve_against_each_file(tmp_path):
    write(tmp_path / "a" / "media" / "x.png", "png")
    write(tmp_path / "a" / "prompt.txt", "  From a file.\n")
    write(
        tmp_path / "a" / "one.json",
        {"inference_type": "image2world", "name": "one", "prompt_path": "prompt.txt", "input_path": "media/x.png"},
    )
    write(tmp_path / "b" / "x.png", "png")
    write(
        tmp_path / "b" / "more.jsonl",
        '{"inference_type": "image2world", "name": "two", "prompt": "p", "input_path": "x.png"}\n\n',
    )
    specs = dict(
        (s.name, s) for s, _ in load_specs([str(tmp_path / "a" / "one.json"), str(tmp_path / "b" / "*.jsonl")])
    )
    assert specs["one"].input_urls() == {"input_path": str(tmp_path / "a" / "media" / "x.png")}
    assert specs["one"].prompt == "From a file."
    assert specs["two"].input_urls() == {"input_path": str(tmp_path / "b" / "x.png")}


def test_json_list_and_older_samples_format(tmp_path):
    write(
        tmp_path / "list.json",
        [
            {"inference_type": "text2world", "name": "l0", "prompt": "a"},
            {"inference_type": "text2world", "name": "l1", "prompt": "b"},
        ],
    )
    write(tmp_path / "old.txt", "Old prompt.")
    write(
        tmp_path / "legacy.json",
        {
            "inference_type": "text2world",
            "seed": 5,
            "samples": {"first": {"prompt": "x"}, "second": {"prompt_path": "old.txt"}},
        },
    )
    loaded = load_specs([str(tmp_path / "*.json")])
    assert [(s.name, source.rsplit("/", 1)[1]) for s, source in loaded] == [
        ("first", "legacy.json:samples.first"),
        ("second", "legacy.json:samples.second"),
        ("l0", "list.json:0"),
        ("l1", "list.json:1"),
    ]
    assert [s.seed for s, _ in loaded[:2]] == [5, 5] and loaded[1][0].prompt == "Old prompt."


def test_older_samples_format_keeps_the_first_release_defaults(tmp_path):
    """The first release (the one that read `samples` files) defaulted to seed 1 and read `prompt_path` over
    `prompt`; the latest release's flat specs default to seed 0 and keep `prompt`."""
    write(tmp_path / "old.txt", "From the file.")
    samples = {"a": {"prompt": "inline"}, "b": {"prompt": "inline", "prompt_path": "old.txt"}}
    legacy = write(tmp_path / "legacy.json", {"inference_type": "text2world", "samples": samples})
    flat = write(tmp_path / "flat.json", {"inference_type": "text2world", "name": "c", "prompt": "inline"})
    (a, _), (b, _) = load_specs([legacy])
    assert (a.seed, a.prompt, b.prompt) == (1, "inline", "From the file.")
    assert load_specs([flat])[0][0].seed == 0


def test_yaml_spec_files(tmp_path):
    pytest.importorskip("yaml")
    good = write(tmp_path / "s.yaml", "inference_type: text2world\nname: y\nprompt: From YAML.\nseed: 3\n")
    assert [(s.name, s.seed, s.prompt) for s, _ in load_specs([good])] == [("y", 3, "From YAML.")]
    bad = write(tmp_path / "bad.yml", "name: [unclosed\n")
    with pytest.raises(ManifestError, match=f"{bad}: invalid YAML: "):
        load_specs([bad])


def test_expand_legacy():
    data = {"inference_type": "image2world", "guidance": 3, "samples": {"a": {"prompt": "p", "input_path": "a.jpg"}}}
    assert expand_legacy(data) == {
        "a": {
            "inference_type": "image2world",
            "seed": 1,
            "guidance": 3,
            "name": "a",
            "prompt": "p",
            "input_path": "a.jpg",
        }
    }
    with pytest.raises(ValueError, match="'samples' must map names to sample objects, got list"):
        expand_legacy({"samples": []})


def test_bad_files_are_all_reported_and_nothing_is_written(tmp_path):
    good = write(tmp_path / "good.json", {"inference_type": "text2world", "name": "ok", "prompt": "p"})
    bad_jsonl = write(
        tmp_path / "bad.jsonl",
        "\n".join(
            [
                json.dumps({"inference_type": "text2world", "name": "g9", "prompt": "p", "guidance": 9}),
                "{not json",
                json.dumps(
                    {"inference_type": "image2world", "name": "img", "prompt": "p", "input_path": "missing.png"}
                ),
                json.dumps({"inference_type": "text2world", "name": "ok", "prompt": "again"}),
            ]
        ),
    )
    broken = write(tmp_path / "broken.json", "{")
    other = write(tmp_path / "notes.txt", "a: 1")
    out = tmp_path / "out" / "m.parquet"
    with pytest.raises(ManifestError) as info:
        make_manifest(
            [good, bad_jsonl, broken, other, str(tmp_path / "nope.json"), str(tmp_path / "none-*.jsonl")], str(out)
        )
    problems = info.value.problems
    assert problems == [
        f"{tmp_path}/nope.json: no such file",
        f"{tmp_path}/none-*.jsonl: no files match",
        f"{bad_jsonl}:2: invalid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        f"{broken}: invalid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        f"{other}: unsupported file type (use .json, .jsonl, .yaml, .yml)",
        f"sample 'g9' ({bad_jsonl}:1): field 'guidance' must be in 0..7, got 9",
        f"sample 'img' ({bad_jsonl}:3): field 'input_path' has no file at {tmp_path}/missing.png",
        f"sample 'ok' ({bad_jsonl}:4): field 'name' is not unique (also used in {good})",
    ]
    assert str(info.value).startswith("8 problem(s) in the spec files:\n  - ")
    assert not out.exists() and not out.parent.exists()


def test_input_check_can_be_skipped(tmp_path):
    spec = write(
        tmp_path / "s.json",
        {"inference_type": "video2world", "name": "v", "prompt": "p", "input_path": "s3://bucket/v.mp4"},
    )
    assert load_specs([spec], check_inputs=False)[0][0].input_urls() == {"input_path": "s3://bucket/v.mp4"}


def test_no_specs(tmp_path):
    empty = write(tmp_path / "empty.jsonl", "\n")
    with pytest.raises(ManifestError, match="no specs found in"):
        load_specs([empty])


def test_spec_from_row_errors():
    with pytest.raises(SpecError, match=r"^sample m.jsonl:3: field 'spec_json' is not valid spec JSON"):
        spec_from_row({"spec_json": "{", "source": "m.jsonl:3"}, model=BASE)
    with pytest.raises(SpecError, match=r"^sample manifest row: field 'spec_json' is not valid spec JSON"):
        spec_from_row({"name": "x"}, model=BASE)
    with pytest.raises(SpecError, match=r"sample 'x' \(m.jsonl:3\): field 'seed' must be an integer"):
        spec_from_row(
            {
                "spec_json": '{"inference_type": "text2world", "name": "x", "prompt": "p", "seed": "1"}',
                "source": "m.jsonl:3",
            },
            model=BASE,
        )


def test_read_manifest_rejects_other_tables(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = str(tmp_path / "other.parquet")
    pq.write_table(pa.table({"prompt": ["x"]}), path)
    with pytest.raises(ValueError, match="is not a cosmos-ray manifest: missing column"):
        read_manifest(path)


def test_cli(tmp_path, capsys):
    out = str(tmp_path / "cli.parquet")
    assert cli.main([os.path.join(EXAMPLES, "*.json"), "-o", out]) == 0
    assert capsys.readouterr().out == f"wrote 3 spec(s) to {out}\n"
    bad = write(tmp_path / "bad.json", {"inference_type": "text2world", "name": "b", "prompt": "p", "fps": 0})
    assert cli.main([bad, "-o", str(tmp_path / "never.parquet")]) == 1
    err = capsys.readouterr().err
    assert "field 'fps' must be in 1..240, got 0" in err and err.endswith("no manifest was written\n")
    assert not (tmp_path / "never.parquet").exists()


def test_cli_storage_options_nest_like_the_generate_job():
    args = cli.parse_args(
        [
            "a.json",
            "-o",
            "m.parquet",
            "--storage-option",
            "client_kwargs.region_name=us-east-1",
            "--storage-option",
            "anon=true",
        ]
    )
    assert args.storage.options == {"client_kwargs": {"region_name": "us-east-1"}, "anon": True}
    assert cli.parse_args(["a.json", "-o", "m.parquet"]).storage.options is None


def test_cli_rejects_bad_storage_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(["a.json", "-o", "m.parquet", "--storage-option", "no-equals-sign"])
    assert exit_info.value.code == 2
    assert "expected KEY=VALUE, got 'no-equals-sign'" in capsys.readouterr().err


def test_s3_sources_and_output(s3_bucket):
    root, options = s3_bucket
    for path in ("video2world.json", "prompts/square.txt", "media/square.mp4", "specs.jsonl", "media/square.png"):
        with open(os.path.join(EXAMPLES, path), "rb") as f:
            Storage(options).write_bytes_atomic(f"{root}/specs/{path}", f.read())
    out = f"{root}/manifests/m.parquet"
    specs = make_manifest([f"{root}/specs/*.json", f"{root}/specs/specs.jsonl"], out, storage=Storage(options))
    assert specs[0].input_urls() == {"input_path": f"{root}/specs/media/square.mp4"}
    assert specs[0].prompt.startswith("An orange square")
    assert [spec_from_row(r, model=BASE) for r in read_manifest(out, storage=Storage(options))] == specs
    option_flags = ["--storage-option", f"key={options['key']}", "--storage-option", f"secret={options['secret']}"]
    for key, value in options["client_kwargs"].items():
        option_flags += ["--storage-option", f"client_kwargs.{key}={value}"]
    assert cli.main([f"{root}/specs/video2world.json", "-o", f"{root}/m2.parquet", *option_flags]) == 0


# --- limits, checking a manifest, storage errors ------------------------------------------------------------


def test_specs_over_a_limit_are_problems_with_their_source(tmp_path):
    from cosmos_ray.core.limits import SpecLimits

    specs = write(
        tmp_path / "big.jsonl",
        "\n".join(
            json.dumps({"inference_type": "text2world", "name": name, "prompt": "p", **fields})  # type: ignore[dict-item]
            for name, fields in [
                ("long", {"cosmos_ray_num_frames": 100001}),
                ("huge", {"resolution": "16000,16000"}),
                ("fine", {}),
            ]
        ),
    )
    with pytest.raises(ManifestError) as info:
        load_specs([specs])
    assert info.value.problems == [
        f"sample 'long' ({specs}:1): field 'cosmos_ray_num_frames' must be at most 961 here, got 100001",
        f"sample 'huge' ({specs}:2): field 'resolution' must have at most 2088960 pixels (height x width) here, "
        "got 16000,16000",
    ]
    with pytest.raises(ManifestError, match="'fine'.*'num_steps' must be at most 10 here, got 35"):
        load_specs([specs], limits=SpecLimits(max_num_output_frames=100001, max_pixels=16000**2, max_num_steps=10))


def test_cli_limit_flags(tmp_path, capsys):
    spec = write(tmp_path / "s.json", {"inference_type": "text2world", "name": "s", "prompt": "p", "num_steps": 40})
    assert cli.main([spec, "-o", str(tmp_path / "m.parquet"), "--max-num-steps", "30"]) == 1
    assert "field 'num_steps' must be at most 30 here, got 40" in capsys.readouterr().err
    assert cli.main([spec, "-o", str(tmp_path / "m.parquet"), "--max-num-steps", "40"]) == 0
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args([spec, "-o", "m.parquet", "--max-pixels", "0"])
    assert exit_info.value.code == 2


def test_spec_from_row_checks_limits_when_given():
    from cosmos_ray.core.limits import SpecLimits

    row = {"spec_json": '{"inference_type": "text2world", "name": "x", "prompt": "p"}', "source": "m.jsonl:3"}
    assert spec_from_row(row, SpecLimits(), model=BASE).name == "x"
    with pytest.raises(SpecError, match=r"^sample 'x' \(m.jsonl:3\): field 'num_steps' must be at most 2 here"):
        spec_from_row(row, SpecLimits(max_num_steps=2), model=BASE)


def test_check_manifest_reads_the_footer_only(tmp_path):
    from cosmos_ray.core.manifest import check_manifest
    from cosmos_ray.core.storage import StorageNotFoundError

    out = str(tmp_path / "m.parquet")
    make_manifest([os.path.join(EXAMPLES, "*.json")], out)
    assert check_manifest(out) == 3
    with pytest.raises(StorageNotFoundError, match=f"^cannot read {tmp_path}/nope.parquet: not found$"):
        check_manifest(str(tmp_path / "nope.parquet"))
    write(tmp_path / "specs.json", "{}")
    with pytest.raises(ValueError, match=f"^{tmp_path}/specs.json is not a Parquet manifest: "):
        check_manifest(str(tmp_path / "specs.json"))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"prompt": ["x"]}), tmp_path / "other.parquet")
    with pytest.raises(ValueError, match="other.parquet is not a cosmos-ray manifest: missing column"):
        check_manifest(str(tmp_path / "other.parquet"))


def test_cli_without_s3_credentials_prints_one_line(s3_endpoint, monkeypatch, capsys, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    argv = [
        "s3://bucket/specs/*.jsonl",
        "-o",
        str(tmp_path / "m.parquet"),
        "--storage-option",
        "skip_instance_cache=true",
    ]
    assert cli.main([*argv, "--storage-option", f"endpoint_url={s3_endpoint.url}"]) == 1
    assert capsys.readouterr().err == (
        "error: cannot list s3://bucket/specs/*.jsonl: no credentials found (set them in the environment or the "
        "storage options)\nno manifest was written\n"
    )
