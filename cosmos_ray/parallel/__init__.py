"""Context (Ulysses) and guidance parallelism for one video's denoising over a group of ranks."""

from cosmos_ray.parallel.config import ParallelConfig, ParallelLayoutError
from cosmos_ray.parallel.context import LayoutGroups, ParallelContext
from cosmos_ray.parallel.dit import ParallelDiT
from cosmos_ray.parallel.ulysses import ulysses_attention

__all__ = [
    "LayoutGroups",
    "ParallelConfig",
    "ParallelContext",
    "ParallelDiT",
    "ParallelLayoutError",
    "ulysses_attention",
]
