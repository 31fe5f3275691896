"""Which spec format a model reads: the base models read `GenerationSpec` (cosmos_ray.core.spec), the
7-camera driving model `2B/auto/multiview` reads `MultiviewSpec` (cosmos_ray.core.multiview_spec). Each refuses
the other's fields with a message that names the model that takes them. A model with a format of its own is
listed in `SPEC_FORMATS` (its format: one new module under cosmos_ray/core/, plus its entry here and in `Spec`).

`parse_spec` is what an entry point calls where it parses a spec for a known model (the manifest maker, the batch
job's check stage through `spec_from_row`, Serve's request body, the local CLI).
"""

from __future__ import annotations

from typing import Any

from cosmos_ray.core.action_spec import ACTION_MODEL, ActionSpec
from cosmos_ray.core.agibot_spec import AGIBOT_MODEL, AgibotSpec
from cosmos_ray.core.multiview_spec import MULTIVIEW_MODEL, MultiviewSpec
from cosmos_ray.core.spec import GenerationSpec
from cosmos_ray.core.storage import Storage

Spec = GenerationSpec | MultiviewSpec | ActionSpec | AgibotSpec


# The models that read a format other than the base one, by official name.
SPEC_FORMATS: dict[str, type[Spec]] = {
    MULTIVIEW_MODEL: MultiviewSpec,
    ACTION_MODEL: ActionSpec,
    AGIBOT_MODEL: AgibotSpec,
}


def spec_class(model: str) -> type[Spec]:
    """The spec format of official model `model` (a name; the base format for every model not in `SPEC_FORMATS`)."""
    return SPEC_FORMATS.get(model, GenerationSpec)


def parse_spec(
    data: Any,
    *,
    model: str,
    source: str = "",
    base_dir: str | None = None,
    storage: Storage = Storage(),
) -> Spec:
    """`from_dict` of `model`'s spec format: one official inference JSON object, or `SpecError` naming the sample,
    the field and the reason."""
    return spec_class(model).from_dict(data, source=source, base_dir=base_dir, storage=storage)
