"""Ray Serve application: an HTTP API for ad hoc generation on the batch pipeline's GPU groups.

    serve run pipelines.serve:app preset=tiny use_gpus=false     # a laptop: the tiny preset on CPU
    serve deploy jobs/serve_config.yaml                          # a cluster

One concern per module:

    args.py      ServeArgs: every argument and default of the app
    policy.py    what a request may ask for: body -> spec within the limits, allowed input/output URLs
    auth.py      optional bearer tokens (COSMOS_RAY_API_TOKENS, api_tokens_file)
    replica.py   GroupReplica: one GPU group per replica, streaming Started, Steps, Finished or Failed
    results.py   storing a result (video, then its record) where the request asked
    jobs.py      JobBoard: asynchronous jobs, first in first out, with their progress
    ingress.py   ApiIngress: the FastAPI routes and HTTP statuses; the prompt guardrails (cosmos_ray.core.guardrails)
    app.py       build_app: the three deployments bound from one ServeArgs

Only `replica.py` reaches the GPUs (through `pipelines.group`); nothing here imports torch.
"""

from pipelines.serve.app import app, build_app
from pipelines.serve.args import ServeArgs

__all__ = ["ServeArgs", "app", "build_app"]
