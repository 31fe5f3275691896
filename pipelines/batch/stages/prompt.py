"""Prompt stage (one CPU actor; only with guardrails): the Blocklist, then Qwen3Guard, on each prompt.

A refused row is marked blocked and passes the GPU stage untouched (no GPU time); a check that cannot run fails
the row rather than letting the prompt through. A stage of its own, so a blocked prompt never waits for a GPU.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import ray

from cosmos_ray.core.guardrails import Blocked, Guardrails, check_prompt
from cosmos_ray.core.spec_formats import Spec
from pipelines.batch.schemas import PENDING_SCHEMA, with_specs
from pipelines.batch.stages.base import Stage

PROMPT_CHECK_CPUS = 1.0  # the prompt check actor (Blocklist and Qwen3Guard-Gen-0.6B on the CPU)


def prompt_stage(guardrails: Guardrails, model: str) -> Stage:
    return Stage(
        "prompt",
        PromptCheck,
        map_batches_kwargs={
            "batch_size": 1,
            "compute": ray.data.ActorPoolStrategy(size=1),
            "num_cpus": PROMPT_CHECK_CPUS,
        },
        fn_constructor_kwargs={"guardrails": guardrails, "model": model},
    )


class PromptCheck:
    """Prompt stage of `map_batches` (CPU, with guardrails): marks the rows whose prompt is refused.

    A check that cannot run fails its row (the `error` column) rather than letting the prompt through.
    """

    def __init__(self, guardrails: Guardrails, model: str):
        guardrails.load("prompt", "cpu")  # a missing model stops the job here, not at every row
        self.guardrails = guardrails
        self.model = model  # the official model: its spec format

    def __call__(self, batch: pa.Table) -> pa.Table:
        return pa.Table.from_pylist(
            [self._check(row, spec) for row, spec in with_specs(batch, self.model)], schema=PENDING_SCHEMA
        )

    def _check(self, row: dict[str, Any], spec: Spec) -> dict[str, Any]:
        try:
            check_prompt(self.guardrails, spec.prompt)
        except Blocked as blocked:
            return {**row, "blocked": str(blocked)}
        except Exception as error:  # noqa: BLE001 - the sample fails; the guardrails never wave it through
            return {**row, "error": f"the prompt guardrails failed: {type(error).__name__}: {error}"}
        return row
