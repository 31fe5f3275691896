"""The Serve app on a local Serve instance (tests/test_serve/conftest.py starts one for the whole package), by
endpoint group, and the README's Serve quick start. (Policy, tokens and config without a cluster:
tests/test_serve_policy.py.)"""
