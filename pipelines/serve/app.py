"""The application: the three deployments bound from one `ServeArgs`.

    ApiIngress      FastAPI on CPU (pipelines.serve.ingress)
    GroupReplica    one GPU group per replica, in the replica's placement group (pipelines.serve.replica)
    JobBoard        a single replica holding the asynchronous jobs (pipelines.serve.jobs)

Guardrails (`guardrails=true|false`; default on with a checkpoint, off with a random-weight preset): the ingress
checks each prompt before it waits for a GPU, and each replica's rank 0 checks each video and blurs its faces
(docs/guardrails.md); the setting is logged and stated by `/healthz`.

Capacity: each replica runs one generation at a time and accepts one more that waits for its GPUs (its mp4
encoding then overlaps the next denoising). Beyond that, up to `max_queued_requests` requests wait in the
ingress; further ones get 503 with Retry-After. Async jobs wait in the JobBoard instead.
"""

# No `from __future__ import annotations`: Serve reads `app`'s parameter annotation (ServeArgs) to
# validate the `key=value` arguments, and needs the class itself there, not its name.
import logging
from typing import Any

from ray import serve

from cosmos_ray.core.guardrails import Guardrails, check_installed
from pipelines.group import GroupConfig
from pipelines.serve.args import ServeArgs
from pipelines.serve.ingress import ApiIngress
from pipelines.serve.jobs import JobBoard
from pipelines.serve.replica import GroupReplica

logger = logging.getLogger("ray.serve")

# Replica autoscaling (docs/deploy.md explains the numbers from the measured clip times; jobs/serve_config.yaml
# states them for a cluster). A replica serves one clip at a time (about 256 s at 720p, 93 frames, 35 steps on
# an H100), so one request in flight per replica is the target.
TARGET_ONGOING_REQUESTS = 1
UPSCALE_DELAY_S = 30  # a backlog that lasted this long is at least one more clip of work for every replica
DOWNSCALE_DELAY_S = 600  # an idle replica is kept about two clips long: bringing it back costs a model load


def build_app(args: ServeArgs, checks: Guardrails | None = None) -> serve.Application:
    """Bind the three deployments from `args` (Serve validates `key=value` arguments against ServeArgs).
    `checks`: the guardrails to run when they are on (default: the official ones)."""
    if args.min_replicas > args.max_replicas:
        raise ValueError(f"min_replicas ({args.min_replicas}) exceeds max_replicas ({args.max_replicas})")
    engine = args.engine_options()
    guardrails = engine.guardrail_setting(checks)
    check_installed(guardrails)
    logger.info("cosmos-ray app: %s", guardrails)
    storage = engine.storage
    group_config = GroupConfig(
        gpus_per_group=args.gpus_per_replica,
        engine=engine,
        use_gpus=args.use_gpus,
        guardrails=guardrails.checks,  # each replica's rank 0 checks its videos
    )
    # serve.deployment(**options)(cls): the form Ray's type annotations describe
    replicas = serve.deployment(
        # The replica actor takes no resources itself; its group's rank workers fill the bundles.
        ray_actor_options={"num_cpus": 0},
        placement_group_bundles=group_config.bundles,
        placement_group_strategy="STRICT_PACK",
        autoscaling_config=autoscaling_config(args),
        max_ongoing_requests=2,  # one generating, one waiting for the GPUs
        max_queued_requests=args.max_queued_requests,
        health_check_period_s=30,
        health_check_timeout_s=60,
        graceful_shutdown_timeout_s=600,  # let a running generation finish on scale-down
    )(GroupReplica).bind(group_config, args.request_time_limit_s())
    jobs = serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000)(
        JobBoard
    ).bind(replicas, args.output_url, storage, args.max_jobs)
    ingress = serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=1000)(
        ApiIngress
    )
    return ingress.bind(replicas, jobs, args, storage, guardrails)


def autoscaling_config(args: ServeArgs) -> dict[str, Any]:
    """The GroupReplica deployment's `autoscaling_config` (a Serve config file's `deployments:` may replace it)."""
    return {
        "min_replicas": args.min_replicas,
        "initial_replicas": max(args.min_replicas, 1),
        "max_replicas": args.max_replicas,
        "target_ongoing_requests": TARGET_ONGOING_REQUESTS,
        "upscale_delay_s": UPSCALE_DELAY_S,
        "downscale_delay_s": DOWNSCALE_DELAY_S,
    }


def app(args: ServeArgs) -> serve.Application:
    """The builder `serve run pipelines.serve:app key=value ...` calls (Serve wants exactly one parameter)."""
    return build_app(args)
