# The image every cosmos-ray node runs (cluster.yaml, deploy/kuberay/): Ray's own GPU image for the Ray version
# pinned in pyproject.toml, with this checkout installed as README.md installs it.
#
#   docker build -t "$(python -m deploy.image)" . && docker push "$(python -m deploy.image)"
#
# deploy/image.py derives this base image and the tag from pyproject.toml; `python -m deploy.image --check` (and
# tests/test_image.py) fail when this file, cluster.yaml or the KubeRay manifests name anything else.
FROM rayproject/ray:2.60.0-py311-gpu

ENV PIP_NO_CACHE_DIR=1

# Ray's images run as user `ray`. cluster.yaml mounts the launching checkout at ~/cosmos-ray, this same path,
# and reinstalls it: on those nodes the image brings the dependencies and the checkout brings the code.
WORKDIR /home/ray/cosmos-ray

# README.md, "Quick start", "Object storage" and "Guardrails": torch first (its own layer: the code changes more
# often), then the project with the s3 extra and NVIDIA's guardrails (on by default with a checkpoint), torch
# kept at its pin (the guardrails' torchvision would otherwise pull a newer one).
RUN pip install torch==2.13.0
COPY --chown=ray:users . .
RUN pip install -e '.[s3,guardrails]' torch==2.13.0
