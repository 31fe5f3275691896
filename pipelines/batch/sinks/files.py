"""The per-sample files sink: `views/{id}/{view}.mp4` (of a result that lists views), `videos/{id}.mp4`, then
`meta/{id}.json` (docs/outputs.md).

Always on, and the last sink of a run: its meta file commits the sample (resume reads meta/ and videos/), so it
is the sink whose `write` returns the sample's record.
"""

from __future__ import annotations

from cosmos_ray.core.outputs import OutputRecord
from pipelines.batch.sinks.base import GeneratedSample, Sink, register_sink


@register_sink("files")
class FilesSink(Sink):
    """Writes each sample's videos, then its record (`OutputStore.write_ok`)."""

    def write(self, sample: GeneratedSample) -> OutputRecord:
        return sample.store.write_ok(sample.spec, sample.mp4, sample.metadata, source=sample.source, views=sample.views)
