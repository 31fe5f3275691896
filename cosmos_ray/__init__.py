"""cosmos-ray: Cosmos-Predict2.5 inference in PyTorch, and dataset-scale generation on Ray.

This package is the engine. It never imports Ray: `pipelines/` owns actors and placement groups.
"""

__version__ = "0.1.0"
