"""Can the cluster ever hold a GPU group, and when can it hold one now: the driver asks before the pool starts.

A group's N GPUs must share one node (its placement group is `STRICT_PACK`), so what matters is the largest
node, not the cluster's total. Three kinds of cluster:

- fixed: a local Ray, or nodes started by hand (`ray start`), whose autoscaler only mirrors the nodes it
  sees. A group larger than its largest node can never start: `check_layout` fails at once, naming the
  numbers and the layouts that fit.
- autoscaling with known node types: the autoscaler reported its cluster config to the GCS (what Ray Data and
  Ray Train read too). A group larger than every node type can never start either.
- autoscaling with node types we cannot see (Ray 2.60's cluster launcher does not report them): the job
  waits for a node to come (`wait_until_placeable`, with a periodic message and a timeout).

The autoscaler's state is read from Ray's private interfaces (`ray._private.state`, the autoscaler's status
in the GCS key-value store); when they are missing or unreadable, the cluster counts as one that may grow.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray

logger = logging.getLogger(__name__)

AUTOSCALER_STATUS_WAIT_S = 15.0  # a just-started cluster's autoscaler reports its first status within seconds
PLACEMENT_LOG_EVERY_S = 30.0  # while waiting for the first group's GPUs, say so this often


class PlacementError(RuntimeError):
    """A layout the cluster cannot hold. `layouts`: (gpus_per_group, groups) pairs that fit the nodes there
    are now, largest groups first (empty when the cluster has no GPU)."""

    def __init__(self, message: str, layouts: list[tuple[int, int]]):
        super().__init__(message)
        self.layouts = layouts


@dataclass(frozen=True)
class ClusterGPUs:
    """The GPUs of a cluster, per node."""

    nodes: tuple[int, ...]  # GPUs of each alive node now, largest first

    @property
    def largest_node(self) -> int:
        return self.nodes[0] if self.nodes else 0

    def groups_that_fit(self, gpus_per_group: float) -> int:
        """How many groups of `gpus_per_group` (a fraction of one: groups that share a GPU) the nodes there are
        now hold at once."""
        return sum(math.floor(gpus / gpus_per_group + 1e-9) for gpus in self.nodes)

    def layouts(self) -> list[tuple[int, int]]:
        """(gpus_per_group, groups) pairs that fit now: one group per largest node, and one per GPU."""
        sizes = sorted({self.largest_node, 1}, reverse=True) if self.largest_node else []
        return [(size, self.groups_that_fit(size)) for size in sizes]

    def describe(self) -> str:
        counts = ", ".join(str(gpus) for gpus in self.nodes) or "none"
        return f"{sum(self.nodes)} GPU(s) on {len(self.nodes)} node(s) (GPUs per node: {counts})"


def cluster_gpus() -> ClusterGPUs:
    """The connected cluster's GPUs per alive node."""
    nodes = sorted((int(node["Resources"].get("GPU", 0)) for node in ray.nodes() if node["Alive"]), reverse=True)
    return ClusterGPUs(nodes=tuple(nodes))


def check_layout(
    cluster: ClusterGPUs, gpus_per_group: int, largest_addable: Callable[[], int | None] | None = None
) -> None:
    """Raise `PlacementError` when a group of `gpus_per_group` can never be placed on `cluster`.

    `largest_addable()` (default: `largest_addable_node`) is asked only when no node is large enough now.
    """
    if cluster.largest_node >= gpus_per_group:
        return
    addable = (largest_addable or largest_addable_node)()
    if addable is None or addable >= gpus_per_group:
        return  # an autoscaler may add a node that it fits
    growth = (
        f"and no node type of the autoscaler has more than {addable}" if addable else "and no autoscaler can add nodes"
    )
    raise PlacementError(
        f"a GPU group of {gpus_per_group} needs {gpus_per_group} GPU{'' if gpus_per_group == 1 else 's'} on one node, "
        "but the largest node has "
        f"{cluster.largest_node} {growth}; the cluster has {cluster.describe()}",
        cluster.layouts(),
    )


def pool_size(cluster: ClusterGPUs, gpus_per_group: float) -> int:
    """As many groups as the nodes hold now, at least one (which waits for a node when none holds it yet)."""
    return max(1, cluster.groups_that_fit(gpus_per_group))


def wait_until_placeable(bundles: list[dict[str, float]], timeout_s: float, *, name: str) -> None:
    """Block until the cluster has room for one group of `bundles` on one node, then return (holding nothing).

    A placement group of those bundles is created and removed once placed: while it is pending, an
    autoscaler sees the demand and adds a node. Logs every `PLACEMENT_LOG_EVERY_S`; raises `PlacementError`
    after `timeout_s`.
    """
    gpus = int(sum(bundle.get("GPU", 0) for bundle in bundles))
    probe = ray.util.placement_group(bundles, strategy="STRICT_PACK", name=name)
    started = time.monotonic()
    try:
        while not probe.wait(timeout_seconds=min(PLACEMENT_LOG_EVERY_S, _left(started, timeout_s))):
            waited = time.monotonic() - started
            cluster = cluster_gpus()
            if waited >= timeout_s:
                raise PlacementError(
                    f"no node had {gpus} free GPU(s) for a group within {timeout_s:g}s; the cluster has "
                    f"{cluster.describe()}, {_free_gpus()} free",
                    cluster.layouts(),
                )
            logger.warning(
                "waiting for %d free GPU(s) on one node for the first GPU group: %.0fs of %gs (the cluster has %s, "
                "%d free; an autoscaler adds nodes for this demand)",
                gpus,
                waited,
                timeout_s,
                cluster.describe(),
                _free_gpus(),
            )
    finally:
        ray.util.remove_placement_group(probe)


def _left(started: float, timeout_s: float) -> float:
    return max(0.0, timeout_s - (time.monotonic() - started))


def _free_gpus() -> int:
    return int(ray.available_resources().get("GPU", 0))


def largest_addable_node() -> int | None:
    """Most GPUs of a node the autoscaler can add: from the cluster config it reported to the GCS; 0 when the
    autoscaler only mirrors the nodes there are; None when that cannot be told."""
    config = _reported_cluster_config()
    if config is not None and config.node_group_configs:
        return max(
            (int(group.resources.get("GPU", 0)) for group in config.node_group_configs if group.max_count != 0),
            default=0,
        )
    deadline = time.monotonic() + AUTOSCALER_STATUS_WAIT_S
    while not (node_types := _autoscaler_node_types()) and time.monotonic() < deadline:
        time.sleep(0.5)  # the autoscaler's first reports come before it has looked at the nodes
    # Without an autoscaling config, the autoscaler mirrors each node as its own type "node_<node id>".
    mirrors_only = bool(node_types) and all(kind == f"node_{node}" for node, kind in node_types.items())
    return 0 if mirrors_only else None


def _reported_cluster_config() -> Any:  # a protobuf ClusterConfig, or None
    try:
        from ray._private.state import state

        return state.get_cluster_config()
    except Exception:  # noqa: BLE001 - a private interface: absent or changed in other Ray versions
        return None


def _autoscaler_node_types() -> dict[str, str]:
    """{node id: node type} from the (v1) autoscaler's last status report; empty if there is none yet."""
    try:
        from ray._private.ray_constants import DEBUG_AUTOSCALING_STATUS
        from ray.experimental.internal_kv import _internal_kv_get

        data = _internal_kv_get(DEBUG_AUTOSCALING_STATUS)
        report = json.loads(data).get("autoscaler_report") if data else None
        return dict((report or {}).get("node_type_mapping") or {})
    except Exception:  # noqa: BLE001 - a private interface: absent or changed in other Ray versions
        return {}
