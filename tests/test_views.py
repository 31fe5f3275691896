"""Models with their own spec format on every entry point, and results of several views written as one video per
view besides the stacked one, without Ray: the views' cuts, their files, records, run tables and shards; manifest
rows, manifests and Serve bodies parsed in the format of the model; the local CLI's per-view videos."""

import io
import json
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cosmos_ray.core.limits import SpecLimits
from cosmos_ray.core.manifest import read_manifest, spec_from_row
from cosmos_ray.core.media import read_video
from cosmos_ray.core.multiview_spec import CAMERAS, FRAMES_PER_VIEW, MULTIVIEW_MODEL, MultiviewSpec
from cosmos_ray.core.outputs import OK, OutputRecord, OutputStore
from cosmos_ray.core.registry import DEFAULT_MODEL, MODELS
from cosmos_ray.core.shards import ShardStore
from cosmos_ray.core.spec import GenerationSpec, SpecError
from cosmos_ray.core.storage import Storage
from cosmos_ray.core.views import View, encode_video, views_of
from jobs import make_manifest as make_manifest_cli
from pipelines.batch import CHECK_COLUMNS, PENDING, SKIPPED, check_rows
from pipelines.batch.plan import plan
from pipelines.serve import ServeArgs
from pipelines.serve.ingress import api, document_model
from pipelines.serve.policy import ApiError, RequestPolicy, parse_spec

MULTIVIEW = {"inference_type": "text2world", "name": "drive", "prompt": "A car on a road.", "num_steps": 1}
BASE = {"inference_type": "text2world", "name": "square", "prompt": "A square.", "resolution": "none"}


def stacked(views: int, frames: int, height: int = 16, width: int = 16) -> np.ndarray:
    """uint8 (views x frames, H, W, 3), view k a flat grey of 40 + 60 k."""
    return np.concatenate([np.full((frames, height, width, 3), 40 + 60 * k, np.uint8) for k in range(views)])


# --- the views of a result -------------------------------------------------------------------------------------


def test_views_are_read_by_frames_or_rows_under_camera_or_view():
    frames = np.zeros((6, 32, 16, 3), np.uint8)
    in_time = {"views": [{"camera": "front_wide", "frames": [0, 3]}, {"camera": "rear", "frames": [3, 6]}]}
    assert views_of(in_time, frames.shape) == [View("front_wide", "frames", 0, 3), View("rear", "frames", 3, 6)]
    in_height = {"views": [{"view": "top", "rows": [0, 16]}, {"view": "wrist", "rows": [16, 32]}]}
    top, wrist = views_of(in_height, frames.shape)
    assert top.cut(frames).shape == wrist.cut(frames).shape == (6, 16, 16, 3)
    assert views_of({"seed": 0}, frames.shape) == []  # a result of one view


@pytest.mark.parametrize(
    "entries, words",
    [
        ({"camera": "front_wide", "frames": [0, 3]}, "must be a list"),
        (["front_wide"], "must be an object"),
        ([{"frames": [0, 3]}], "must name its view under one of camera, view"),
        ([{"camera": "front wide", "frames": [0, 3]}], "letters, digits"),
        ([{"camera": "a", "view": "b", "frames": [0, 3]}], "must name its view"),
        ([{"camera": "a"}], "must give its range under one of frames, rows, columns"),
        ([{"camera": "a", "frames": [0, 3], "rows": [0, 3]}], "must give its range"),
        ([{"camera": "a", "frames": [0, 7]}], r"frames must be \[start, stop\) with 0 <= start < stop <= 6"),
        ([{"camera": "a", "rows": [4, 4]}], "rows must be"),
        ([{"camera": "a", "frames": [0, 3]}, {"camera": "a", "frames": [3, 6]}], "names view 'a' twice"),
    ],
)
def test_malformed_views_are_refused_saying_which_entry_and_why(entries, words):
    with pytest.raises(ValueError, match=words):
        views_of({"views": entries}, (6, 32, 16, 3))


def test_each_view_becomes_its_own_mp4_beside_the_stacked_one(tmp_path):
    frames = stacked(views=3, frames=2)
    metadata = {"views": [{"camera": name, "frames": [2 * k, 2 * k + 2]} for k, name in enumerate("abc")]}
    video = encode_video(frames, 8, metadata)
    assert list(video.views) == ["a", "b", "c"]
    assert video.num_bytes == len(video.mp4) + sum(len(mp4) for mp4 in video.views.values())
    for k, (name, mp4) in enumerate(video.views.items()):
        (tmp_path / f"{name}.mp4").write_bytes(mp4)
        decoded = read_video(str(tmp_path / f"{name}.mp4"))
        assert decoded.shape == (2, 16, 16, 3)
        assert abs(int(decoded.mean()) - (40 + 60 * k)) <= 3  # that view's grey, not another's
    assert encode_video(frames, 8, {}).views == {}


# --- files, records, run tables, shards --------------------------------------------------------------------------

SPEC = MultiviewSpec.from_dict(MULTIVIEW)
VIEWS = {"front_wide": b"front video", "rear": b"rear video"}


def test_views_are_written_before_the_record_that_lists_them(tmp_path):
    store = OutputStore(str(tmp_path))
    record = store.write_ok(SPEC, b"stacked", {"seed": 0}, source="s.json", views=VIEWS)
    sample_id = SPEC.sample_id
    assert record.views == [
        {"view": "front_wide", "video_url": str(tmp_path / "views" / sample_id / "front_wide.mp4")},
        {"view": "rear", "video_url": str(tmp_path / "views" / sample_id / "rear.mp4")},
    ]
    assert (tmp_path / "views" / sample_id / "rear.mp4").read_bytes() == b"rear video"
    assert json.loads((tmp_path / "meta" / f"{sample_id}.json").read_bytes())["views"] == record.views
    assert store.is_done(sample_id)
    (tmp_path / "views" / sample_id / "rear.mp4").unlink()
    assert not store.is_done(sample_id)  # every file of the sample must be there
    store.write_ok(SPEC, b"stacked", {"seed": 0}, views=VIEWS)
    store.write_blocked(SPEC, "refused")
    assert not (tmp_path / "views" / sample_id).exists() or not any((tmp_path / "views" / sample_id).iterdir())
    assert not (tmp_path / "videos" / f"{sample_id}.mp4").exists()


def test_the_run_table_lists_each_samples_views(tmp_path):
    store = OutputStore(str(tmp_path))
    written = store.write_ok(SPEC, b"stacked", {}, views=VIEWS)
    skipped = store.skipped(SPEC, views=["front_wide", "rear"])
    base = store.write_ok(GenerationSpec.from_dict(BASE), b"video", {})
    store.write_run_table("r", [written, skipped, base])
    read = store.read_run_table("r")
    assert [r.views for r in read] == [written.views, written.views, []]
    assert read[0].view_urls == [view["video_url"] for view in written.views]
    old_row = {**base.to_row(), "views": None}  # a run table written before views had no such column
    assert OutputRecord.from_row(old_row).views == []


def test_a_shard_holds_a_samples_views_under_its_key(tmp_path):
    store = OutputStore(str(tmp_path))
    store.write_ok(SPEC, b"stacked", {}, views=VIEWS)
    base = GenerationSpec.from_dict(BASE)
    store.write_ok(base, b"video", {})
    shards = ShardStore(store)
    index = shards.write_shard("shard-000000.tar", [SPEC.sample_id, base.sample_id])
    tar_bytes = (tmp_path / "shards" / "shard-000000.tar").read_bytes()
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        names = tar.getnames()
    key = SPEC.sample_id.replace(".", "_")
    assert names[:4] == [f"{key}.mp4", f"{key}.front_wide.mp4", f"{key}.rear.mp4", f"{key}.json"]
    multiview_row, base_row = index.to_pylist()
    for view in multiview_row["views"]:
        assert tar_bytes[view["offset"] : view["offset"] + view["size"]] == VIEWS[view["view"]]
    assert base_row["views"] == []
    assert shards.read_index(["sample_id", "views"]).num_rows == 2


def test_index_files_written_before_views_read_with_no_views(tmp_path):
    store = OutputStore(str(tmp_path))
    base = GenerationSpec.from_dict(BASE)
    store.write_ok(base, b"video", {})
    shards = ShardStore(store)
    index = shards.write_shard("shard-000000.tar", [base.sample_id])
    pq.write_table(index.drop_columns(["views"]), shards.index_part_url("shard-000000.tar"))
    assert shards.read_index().column("views").to_pylist() == [[]]


# --- the model's spec format on every entry point --------------------------------------------------------------


def test_manifest_rows_parse_in_the_format_of_the_jobs_model():
    row = {"spec_json": json.dumps(MULTIVIEW), "source": "m.jsonl:1"}
    assert spec_from_row(row, model=MODELS[MULTIVIEW_MODEL]) == SPEC
    with pytest.raises(SpecError, match=r"^sample 'drive' \(m.jsonl:1\): .*run it with --model 2B/auto/multiview"):
        spec_from_row({**row, "spec_json": json.dumps({**MULTIVIEW, "front_wide": {}})}, model=MODELS[DEFAULT_MODEL])
    with pytest.raises(SpecError, match="field 'resolution' belongs to the base models' format"):
        spec_from_row({"spec_json": json.dumps(BASE), "source": "m.jsonl:2"}, model=MODELS[MULTIVIEW_MODEL])


def test_the_check_stage_and_plan_carry_the_models_format_and_the_views_of_done_samples(tmp_path):
    rows = [{"spec_json": json.dumps({**MULTIVIEW, "name": name}), "name": name, "source": name} for name in "ab"]
    store = OutputStore(str(tmp_path))
    done = MultiviewSpec.from_dict({**MULTIVIEW, "name": "b"})
    store.write_ok(done, b"stacked", {}, views=VIEWS)
    checked = check_rows(
        pa.Table.from_pylist(rows).select(CHECK_COLUMNS),
        output=str(tmp_path),
        storage=Storage(),
        limits=SpecLimits(),
        model=MULTIVIEW_MODEL,
    ).to_pylist()
    assert [(r["status"], r["views"]) for r in checked] == [(PENDING, None), (SKIPPED, ["front_wide", "rear"])]
    planned = plan(checked, store, MULTIVIEW_MODEL)
    assert [type(p.spec) for p in planned.pending] == [MultiviewSpec]
    assert [view["view"] for view in planned.records[1].views] == ["front_wide", "rear"]


def test_make_manifest_reads_the_format_of_its_model(tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not checked for content")
    cameras = {camera: {"video_path": "clip.mp4"} for camera in CAMERAS}
    specs = tmp_path / "drive.json"
    specs.write_text(json.dumps({**MULTIVIEW, "inference_type": "video2world", **cameras}))
    out = str(tmp_path / "m.parquet")
    assert make_manifest_cli.main([str(specs), "-o", out]) == 1  # the default model reads the base format
    assert "run it with --model 2B/auto/multiview" in capsys.readouterr().err
    assert make_manifest_cli.main([str(specs), "-o", out, "--model", MULTIVIEW_MODEL]) == 0
    (row,) = read_manifest(out)
    spec = spec_from_row(row, model=MODELS[MULTIVIEW_MODEL])
    assert isinstance(spec, MultiviewSpec) and spec.video_paths["rear"] == str(video)
    video.unlink()
    assert make_manifest_cli.main([str(specs), "-o", out, "--model", MULTIVIEW_MODEL]) == 1
    assert f"field 'front_wide.video_path' has no file at {video}" in capsys.readouterr().err


def test_serve_reads_bodies_in_the_deployments_format(tmp_path):
    policy = RequestPolicy.from_args(ServeArgs(model=MULTIVIEW_MODEL, allowed_input_prefixes=[str(tmp_path)]))
    assert parse_spec(json.dumps(MULTIVIEW).encode(), policy) == SPEC
    inside = {camera: {"video_path": str(tmp_path / f"{camera}.mp4")} for camera in CAMERAS}
    body = {**MULTIVIEW, "inference_type": "video2world", **inside}
    assert parse_spec(json.dumps(body).encode(), policy).input_urls()["rear.video_path"] == str(tmp_path / "rear.mp4")
    outside = {**body, "rear": {"video_path": "/elsewhere/rear.mp4"}}
    with pytest.raises(ApiError) as refused:
        parse_spec(json.dumps(outside).encode(), policy)
    assert (refused.value.status, refused.value.field) == (403, "rear.video_path")
    with pytest.raises(ApiError) as wrong_format:
        parse_spec(json.dumps(BASE).encode(), policy)
    assert (wrong_format.value.status, wrong_format.value.field) == (422, "resolution")


def test_the_api_docs_show_the_deployments_spec_format():
    def body_schema() -> dict:
        return api.openapi()["paths"]["/v1/generate"]["post"]["requestBody"]["content"]["application/json"]["schema"]

    try:
        document_model(MULTIVIEW_MODEL)
        assert body_schema()["title"] == "MultiviewSpec" and "front_wide" in body_schema()["properties"]
    finally:
        document_model(DEFAULT_MODEL)
    assert body_schema()["title"] == "GenerationSpec"


# --- the local CLI ---------------------------------------------------------------------------------------------


def test_the_local_cli_writes_one_mp4_per_camera(tmp_path):
    from jobs import local

    path = tmp_path / "drive.json"
    path.write_text(json.dumps(MULTIVIEW))
    out = tmp_path / "out"
    argv = ["-i", str(path), "-o", str(out), "--preset", "tiny", "--model", MULTIVIEW_MODEL, "--device", "cpu"]
    assert local.main(argv) == 0
    store = OutputStore(str(out))
    record = store.read_record(SPEC.sample_id)
    assert record is not None and record.status == OK
    assert [view["view"] for view in record.views] == list(CAMERAS)
    stacked_video = read_video(store.video_url(SPEC.sample_id))
    for k, camera in enumerate(CAMERAS):
        view = read_video(store.view_url(SPEC.sample_id, camera))
        assert view.shape == (FRAMES_PER_VIEW, *stacked_video.shape[1:])
        # the camera's own frames (both encodings are lossy: compared on average)
        own = stacked_video[k * FRAMES_PER_VIEW : (k + 1) * FRAMES_PER_VIEW].astype(np.int16)
        assert np.abs(view.astype(np.int16) - own).mean() < 8
