"""Progress of one generation, as the generator reports it after every denoising step.

Torch-free, so that the Ray actors that only pass progress on (a GPU group's owner, Serve) can import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """Denoising step `step` of `total` finished, in window `chunk` of `num_chunks` (1-based).

    A single-window generation is chunk 1 of 1; the autoregressive mode runs its windows one after another.
    """

    step: int
    total: int
    chunk: int = 1
    num_chunks: int = 1

    @property
    def fraction(self) -> float:
        """Share of all denoising steps done (windows have the same number of steps)."""
        return (self.chunk - 1 + self.step / self.total) / self.num_chunks

    def __str__(self) -> str:
        window = f"chunk {self.chunk}/{self.num_chunks} " if self.num_chunks > 1 else ""
        return f"{window}step {self.step}/{self.total}"


Progress = Callable[[Step], None]


class Cancelled(Exception):
    """Raised by a `Progress` callback to stop a generation between two denoising steps (its client went away,
    or it ran past its time limit). Torch-free, so it crosses from a rank to the Ray side as itself."""
