"""How one video's denoising is split over the N ranks of a group.

Two kinds of parallelism multiply to the world size:

- guidance (cfg) parallelism: the conditional and unconditional passes (the two halves of the batch)
  run on two halves of the group; the halves never talk during the DiT forward;
- Ulysses sequence parallelism inside each half: every rank holds a contiguous slice of latent frames
  (as equal as the frame count allows) and self-attention is made exact by an all-to-all that trades
  the sequence split for a head split; the heads must divide evenly.

Ranks are numbered cfg-major: ranks [i * ulysses, (i + 1) * ulysses) form the Ulysses group of cfg
half i, so a Ulysses group is a block of neighbouring GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass

CFG_DEGREES = (1, 2)


class ParallelLayoutError(ValueError):
    """A parallel layout that does not fit the model or the video being generated."""


@dataclass(frozen=True)
class ParallelConfig:
    """A layout: `cfg_degree` (1 or 2) x `ulysses_degree` ranks."""

    cfg_degree: int = 1
    ulysses_degree: int = 1

    def __post_init__(self) -> None:
        if self.cfg_degree not in CFG_DEGREES:
            raise ParallelLayoutError(f"cfg_degree must be 1 or 2, got {self.cfg_degree}")
        if self.ulysses_degree < 1:
            raise ParallelLayoutError(f"ulysses_degree must be >= 1, got {self.ulysses_degree}")

    @property
    def world_size(self) -> int:
        return self.cfg_degree * self.ulysses_degree

    def problem(self, num_heads: int, latent_frames: int, batch_size: int) -> str | None:
        """Why this layout cannot split the given shape (the first dimension that fails), or None."""
        if batch_size % self.cfg_degree:
            return (
                f"{self}: a batch of {batch_size} cannot be split over {self.cfg_degree} cfg halves; "
                "guidance parallelism needs both the conditional and the unconditional pass (guidance > 0)"
            )
        if num_heads % self.ulysses_degree:
            divisors = [d for d in range(1, num_heads + 1) if num_heads % d == 0]
            return (
                f"{self}: {num_heads} attention heads cannot be split over ulysses_degree "
                f"{self.ulysses_degree}; ulysses degrees that divide {num_heads}: {divisors}"
            )
        if latent_frames < self.ulysses_degree:
            return (
                f"{self}: {latent_frames} latent frames cannot be split over ulysses_degree "
                f"{self.ulysses_degree}; every Ulysses rank needs at least one frame"
            )
        return None

    def check(self, num_heads: int, latent_frames: int, batch_size: int) -> None:
        """Raises ParallelLayoutError naming the first dimension this layout cannot split."""
        problem = self.problem(num_heads, latent_frames, batch_size)
        if problem:
            raise ParallelLayoutError(problem)

    @classmethod
    def layouts(cls, world_size: int) -> list[ParallelConfig]:
        """Every layout of `world_size` ranks, guidance-parallel first."""
        return [cls(cfg, world_size // cfg) for cfg in reversed(CFG_DEGREES) if world_size % cfg == 0]

    @classmethod
    def auto(cls, world_size: int, num_heads: int, latent_frames: int, guidance: float) -> ParallelConfig:
        """Picks the layout for `world_size` ranks and a spec's guidance (> 0 means two passes per step)."""
        return cls.for_batch(world_size, num_heads, latent_frames, batch_size=2 if guidance > 0 else 1)

    @classmethod
    def for_batch(cls, world_size: int, num_heads: int, latent_frames: int, batch_size: int) -> ParallelConfig:
        """Picks the layout for `world_size` ranks: guidance parallel whenever it applies, Ulysses for the rest.

        Guidance parallelism has no attention traffic, so it is preferred when the batch (cond + uncond)
        splits in two and `world_size` is even. Raises ParallelLayoutError naming what fails and which
        world sizes would work.
        """
        if world_size < 1:
            raise ParallelLayoutError(f"world_size must be >= 1, got {world_size}")
        problems = []
        for config in cls.layouts(world_size):
            problem = config.problem(num_heads, latent_frames, batch_size)
            if problem is None:
                return config
            problems.append(problem)
        working = [
            n
            for n in range(1, 2 * num_heads + 1)
            if any(c.problem(num_heads, latent_frames, batch_size) is None for c in cls.layouts(n))
        ]
        raise ParallelLayoutError(
            f"no layout of {world_size} ranks fits {num_heads} heads, {latent_frames} latent frames and a "
            f"batch of {batch_size}: {'; '.join(problems)}. World sizes that work: {working}"
        )

    def __str__(self) -> str:
        return f"cfg {self.cfg_degree} x ulysses {self.ulysses_degree}"
