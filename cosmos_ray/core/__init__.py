"""The torch-free core of cosmos-ray: specs, manifests, the official models by name, options, storage,
outputs, media files and the guardrail interface.

Everything here imports neither torch nor Ray (`tests/test_imports.py` checks the whole folder), so the Ray
driver side, the Serve ingress and the command lines use it without loading the engine. The engine (the rest
of `cosmos_ray/`) builds on it.
"""
