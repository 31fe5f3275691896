"""The batch job's stages, each a `Stage` (`base.py`) that applies itself to a Ray Dataset:

    check      CPU tasks: spec valid? already done?                     check.py    (before the driver's plan)
    prompt     one CPU actor, with guardrails only: prompt blocked?     prompt.py
    generate   a pool of GroupActors, one GPUGroup each                 generate.py
    write      CPU tasks: mp4 encode, then the sinks (files last)       write.py

The driver (`pipelines/batch/driver.py`) applies the last three, in this order, to the samples to generate.
"""

from pipelines.batch.stages.base import Stage, quiet

__all__ = ["Stage", "quiet"]
