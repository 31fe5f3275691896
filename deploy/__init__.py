"""Deployment tooling: the container image's name (`python -m deploy.image`) and the KubeRay manifests."""
