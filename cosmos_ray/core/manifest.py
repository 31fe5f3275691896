"""Parquet manifests: one row per generation spec, made from official inference JSON files.

`make_manifest` reads JSON or YAML files (one spec object, or a list of them), JSON-lines files (one spec
per line) and globs of these, on any fsspec URL. It also expands the older official multi-sample format
(`{"inference_type": ..., "samples": {name: {...}}, ...}`). Every spec is validated first, with relative
`input_path` / `prompt_path` resolved against its file's folder; if anything is wrong, every problem is
reported and nothing is written. The schema is documented in docs/manifest.md.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.dataset
import pyarrow.parquet as pq

from cosmos_ray.core.limits import SpecLimits
from cosmos_ray.core.media import MediaError
from cosmos_ray.core.registry import DEFAULT_MODEL, MODELS, OfficialModel
from cosmos_ray.core.spec_errors import SpecError
from cosmos_ray.core.spec_formats import Spec, parse_spec, spec_class
from cosmos_ray.core.storage import Storage, StorageError, one_line_errors, parent_url

SPEC_FILE_SUFFIXES = (".json", ".jsonl", ".yaml", ".yml")

MANIFEST_SCHEMA = pa.schema(
    [
        ("spec_json", pa.string()),  # canonical spec JSON (the model's format): the only column the job reads
        ("name", pa.string()),
        ("inference_type", pa.string()),
        ("source", pa.string()),  # "file.jsonl:7" (line), "file.json" or "file.json:2" (list index)
    ]
)


class ManifestError(ValueError):
    """Spec files that cannot become a manifest; `problems` lists each one (file, index, field, reason)."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        listing = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in the spec files:\n{listing}")


@dataclass(frozen=True)
class SpecEntry:
    """A raw spec object and where it came from."""

    data: Any
    source: str  # for messages and the manifest's `source` column
    folder: str  # relative paths in `data` resolve against this


def make_manifest(
    sources: Sequence[str],
    output_url: str,
    *,
    storage: Storage = Storage(),
    check_inputs: bool = True,
    limits: SpecLimits | None = None,
    model: str = DEFAULT_MODEL,
) -> list[Spec]:
    """Validate every spec in `sources` (files or globs), then write the manifest atomically.

    Raises `ManifestError` listing every problem, before anything is written. `check_inputs` also checks
    that each input file exists; every spec must be within `limits` (default: `SpecLimits()`) and in the spec
    format of official model `model` (`cosmos_ray.core.spec_formats`). Returns the
    specs in manifest order. Storage that cannot be reached at all (no credentials, say) raises `StorageError`.
    """
    specs = load_specs(sources, storage=storage, check_inputs=check_inputs, limits=limits, model=model)
    write_manifest(specs, output_url, storage=storage)
    return [spec for spec, _ in specs]


def load_specs(
    sources: Sequence[str],
    *,
    storage: Storage = Storage(),
    check_inputs: bool = True,
    limits: SpecLimits | None = None,
    model: str = DEFAULT_MODEL,
) -> list[tuple[Spec, str]]:
    """(spec, source) for every spec in `sources`, in the spec format of official model `model`
    (`cosmos_ray.core.spec_formats`); raises `ManifestError` with every problem found."""
    limits = limits or SpecLimits()
    problems: list[str] = []
    entries: list[SpecEntry] = []
    for url in _expand_sources(sources, storage, problems):
        for entry in _read_entries(url, storage, problems):
            entries.extend(_expand_entry(entry, model, storage, problems))
    specs: list[tuple[Spec, str]] = []
    for entry in entries:
        try:
            spec = parse_spec(entry.data, model=model, source=entry.source, base_dir=entry.folder, storage=storage)
            check_limits(spec, limits, entry.source, MODELS[model])
        except SpecError as error:
            problems.append(str(error))
            continue
        missing = [(field, url) for field, url in spec.input_urls().items() if check_inputs and not storage.exists(url)]
        if missing:
            field, url = missing[0]
            problems.append(str(SpecError(f"{spec.name!r} ({entry.source})", field, f"has no file at {url}")))
            continue
        if check_inputs:
            try:
                spec.check_input_files(storage)
            except (SpecError, MediaError) as error:
                problems.append(f"{error} ({entry.source})")
                continue
        specs.append((spec, entry.source))
    problems.extend(_duplicate_names(specs))
    if not problems and not specs:
        problems.append(f"no specs found in {', '.join(sources)}")
    if problems:
        raise ManifestError(problems)
    return specs


def write_manifest(
    specs: Sequence[tuple[Spec, str]],
    output_url: str,
    *,
    storage: Storage = Storage(),
) -> None:
    """Write (spec, source) pairs as a Parquet manifest in one atomic write."""
    rows = [
        {"spec_json": spec.to_json(), "name": spec.name, "inference_type": spec.inference_type, "source": source}
        for spec, source in specs
    ]
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), buffer)
    storage.write_bytes_atomic(output_url, buffer.getvalue())


def read_manifest(url: str, *, storage: Storage = Storage()) -> list[dict[str, Any]]:
    """The rows of a manifest as dicts (the batch job reads it with `ray.data.read_parquet` instead)."""
    table = pq.read_table(pa.BufferReader(storage.read_bytes(url)))
    require_manifest_columns(table.column_names, url)
    return table.select(MANIFEST_SCHEMA.names).to_pylist()


def check_manifest(url: str, *, storage: Storage = Storage()) -> int:
    """Raise unless `url` (a Parquet file or folder of them) is a cosmos-ray manifest; return its row count.

    Reads the Parquet footers only, so a job checks its manifest in a moment, before it starts any work.
    Raises `StorageError` when it cannot be read (not found, permission, credentials) and ValueError
    when it is not a Parquet manifest.
    """
    not_parquet = None
    with one_line_errors("read", url):
        filesystem, path = storage.arrow_filesystem(url)
        try:
            dataset = pyarrow.dataset.dataset(path, filesystem=filesystem, format="parquet")
            names, rows = dataset.schema.names, dataset.count_rows()
        except pa.ArrowInvalid as error:
            not_parquet = str(error).splitlines()[0]
    if not_parquet is not None:
        raise ValueError(f"{url} is not a Parquet manifest: {not_parquet}")
    require_manifest_columns(names, url)
    return rows


def require_manifest_columns(column_names: Sequence[str], url: str) -> None:
    """Raise ValueError unless a table with these columns (read from `url`) is a manifest."""
    missing = set(MANIFEST_SCHEMA.names) - set(column_names)
    if missing:
        raise ValueError(f"{url} is not a cosmos-ray manifest: missing column(s) {', '.join(sorted(missing))}")


def spec_from_row(
    row: Mapping[str, Any],
    limits: SpecLimits | None = None,
    *,
    model: OfficialModel,
    num_generations: int | None = None,
) -> Spec:
    """The spec of one manifest row in the spec format of `model` (`cosmos_ray.core.spec_formats`), within
    `limits` if given (its cost on `model`), with `num_generations` (a job's) in place of the spec's own if
    given; raises `SpecError` naming the row's source."""
    source = str(row.get("source") or "manifest row")
    try:
        data = json.loads(row["spec_json"])
    except (KeyError, TypeError, ValueError) as error:
        raise SpecError(source, "spec_json", f"is not valid spec JSON: {error}") from None
    if num_generations is not None and isinstance(data, dict):
        data = {**data, "num_generations": num_generations}
    spec = parse_spec(data, model=model.name, source=source)
    if limits is not None:
        check_limits(spec, limits, source, model)
    return spec


def check_limits(spec: Spec, limits: SpecLimits, source: str, model: OfficialModel | None = None) -> None:
    """`limits.check(spec, model)`, with the spec's source in the error (as `from_dict` names it)."""
    try:
        limits.check(spec, model)
    except SpecError as error:
        raise SpecError(f"{spec.name!r} ({source})", error.field, error.reason) from None


# Defaults of the first official release (`InferenceArguments` of cosmos_predict2/config.py at 6b54ba6, the
# release that read the older `samples` format) where they differ from the latest release's.
LEGACY_DEFAULTS = {"seed": 1}


def expand_legacy(data: Mapping[str, Any]) -> dict[str, Any]:
    """Flat specs by name from the older official format: the first release's defaults, its shared top-level
    fields, then each sample's own fields."""
    shared = {**LEGACY_DEFAULTS, **{key: value for key, value in data.items() if key != "samples"}}
    samples = data["samples"]
    if not isinstance(samples, dict):
        raise ValueError(f"'samples' must map names to sample objects, got {type(samples).__name__}")
    return {name: _legacy_sample(shared, name, sample) for name, sample in samples.items()}


def _legacy_sample(shared: dict[str, Any], name: str, sample: Any) -> Any:
    if not isinstance(sample, dict):
        return sample  # rejected with its name by the spec format's from_dict
    if "prompt_path" in sample:  # the first release read prompt_path over prompt; the latest keeps prompt
        sample = {key: value for key, value in sample.items() if key != "prompt"}
    return {**shared, "name": name, **sample}


def _expand_sources(sources: Sequence[str], storage: Storage, problems: list[str]) -> list[str]:
    urls: list[str] = []
    for source in sources:
        if any(char in source for char in "*?["):
            matches = storage.glob_urls(source)
            if not matches:
                problems.append(f"{source}: no files match")
            urls.extend(matches)
        elif storage.exists(source):
            urls.append(source)
        else:
            problems.append(f"{source}: no such file")
    return urls


def _expand_entry(entry: SpecEntry, model: str, storage: Storage, problems: list[str]) -> list[SpecEntry]:
    """The entries one spec object stands for in `model`'s format (`SpecBase.expand_official`: an official
    action-conditioned spec is a folder of episodes)."""
    try:
        expanded = spec_class(model).expand_official(
            entry.data, source=entry.source, base_dir=entry.folder, storage=storage
        )
    except SpecError as error:
        problems.append(str(error))
        return []
    return [SpecEntry(data, source, entry.folder) for data, source in expanded]


def _read_entries(url: str, storage: Storage, problems: list[str]) -> list[SpecEntry]:
    folder = parent_url(url)
    if not url.endswith(SPEC_FILE_SUFFIXES):
        problems.append(f"{url}: unsupported file type (use {', '.join(SPEC_FILE_SUFFIXES)})")
        return []
    try:
        text = storage.read_text(url)
    except StorageError as error:
        problems.append(str(error))
        return []
    except UnicodeDecodeError as error:
        problems.append(f"{url}: is not UTF-8 text: {error}")
        return []
    if url.endswith(".jsonl"):
        return _read_json_lines(url, text, folder, problems)
    try:
        data = _parse_yaml(text) if url.endswith((".yaml", ".yml")) else json.loads(text)
    except ValueError as error:
        problems.append(f"{url}: invalid {'YAML' if url.endswith(('.yaml', '.yml')) else 'JSON'}: {error}")
        return []
    if isinstance(data, list):
        return [SpecEntry(item, f"{url}:{index}", folder) for index, item in enumerate(data)]
    if isinstance(data, dict) and "samples" in data:
        try:
            return [SpecEntry(item, f"{url}:samples.{name}", folder) for name, item in expand_legacy(data).items()]
        except ValueError as error:
            problems.append(f"{url}: {error}")
            return []
    return [SpecEntry(data, url, folder)]


def _parse_yaml(text: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise ValueError("reading YAML spec files needs the pyyaml package") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(str(error)) from None


def _read_json_lines(url: str, text: str, folder: str, problems: list[str]) -> list[SpecEntry]:
    entries = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(SpecEntry(json.loads(line), f"{url}:{line_number}", folder))
        except ValueError as error:
            problems.append(f"{url}:{line_number}: invalid JSON: {error}")
    return entries


def _duplicate_names(specs: Sequence[tuple[Spec, str]]) -> list[str]:
    """Like the official CLI, sample names must be unique across all files."""
    first_source: dict[str, str] = {}
    problems = []
    for spec, source in specs:
        if spec.name in first_source:
            problems.append(
                f"sample {spec.name!r} ({source}): field 'name' is not unique (also used in {first_source[spec.name]})"
            )
        else:
            first_source[spec.name] = source
    return problems
