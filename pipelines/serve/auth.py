"""Bearer-token authentication of the HTTP API, closed by default.

The accepted tokens come from the environment variable `COSMOS_RAY_API_TOKENS` (comma-separated) and from
the file named by the Serve argument `api_tokens_file` (one token per line, e.g. a mounted Kubernetes Secret;
blank lines and lines starting with `#` are skipped). Either one set but naming no token is an error (a
misconfigured Secret or variable must not switch authentication off). Neither set: authentication is off, which
the app allows only on a loopback address (the laptop quick start) or with `allow_unauthenticated=true`
(`require_auth_or_loopback`). When it is on, every `/v1/` route needs `Authorization: Bearer <token>`: no token
is a 401, a token that is not accepted a 403. `/healthz` and the API documentation stay open (probes and
discovery carry no token).

Each token is a client: `check` returns its `owner` (a digest prefix, never the token), which owns the jobs it
submits and bounds its quota.

Tokens are compared through their SHA-256 digests with `hmac.compare_digest`, against every accepted token, so
the time taken says nothing about how much of a token matched, its length, or which token it was.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Iterable

from pipelines.serve.policy import ApiError

TOKENS_ENV = "COSMOS_RAY_API_TOKENS"
BEARER = "bearer "
ANONYMOUS = "anonymous"  # the one owner of every request while authentication is off


class BearerAuth:
    """The accepted tokens (only their digests are kept); `check` raises `ApiError` 401 or 403."""

    def __init__(self, tokens: Iterable[str]):
        self._digests = [_digest(token) for token in tokens]

    @classmethod
    def from_sources(cls, tokens_file: str | None) -> BearerAuth:
        """Tokens from `COSMOS_RAY_API_TOKENS` and `tokens_file`; raises ValueError for an unreadable file or
        a file or a `COSMOS_RAY_API_TOKENS` that names no token (a misconfigured Secret must not switch
        authentication off)."""
        tokens = [token.strip() for token in os.environ.get(TOKENS_ENV, "").split(",")]
        if TOKENS_ENV in os.environ and not any(tokens):
            raise ValueError(
                f"{TOKENS_ENV} is set but names no token ({os.environ[TOKENS_ENV]!r}): set comma-separated tokens, "
                "or unset it"
            )
        if tokens_file is not None:
            try:
                with open(os.path.expanduser(tokens_file), encoding="utf-8") as lines:
                    from_file = [line.strip() for line in lines if not line.lstrip().startswith("#")]
            except OSError as error:
                raise ValueError(f"api_tokens_file {tokens_file}: cannot be read: {error.strerror}") from None
            if not any(from_file):
                raise ValueError(f"api_tokens_file {tokens_file}: holds no token")
            tokens += from_file
        return cls(token for token in tokens if token)

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def check(self, authorization: str | None) -> str:
        """The owner of a request with one of the tokens (`ANONYMOUS` while authentication is off); raise 401
        without a bearer token, 403 with another."""
        if not self.enabled:
            return ANONYMOUS
        if authorization is None or not authorization.lower().startswith(BEARER):
            raise ApiError(
                401, None, "this server needs 'Authorization: Bearer <token>'", {"WWW-Authenticate": "Bearer"}
            )
        given = _digest(authorization[len(BEARER) :].strip())
        matched = False
        for digest in self._digests:  # every one, so the time does not depend on which matched
            matched |= hmac.compare_digest(given, digest)
        if not matched:
            raise ApiError(403, None, "the bearer token is not accepted")
        return given.hex()[:16]  # names the token in the job table and the log without revealing it


def require_auth_or_loopback(auth: BearerAuth, host: str, allow_unauthenticated: bool) -> None:
    """Raise ValueError if the API would accept requests without a token from beyond this machine: no token is
    configured, the HTTP proxy listens on `host` other than a loopback address, and the operator did not say
    `allow_unauthenticated=true`."""
    if auth.enabled or allow_unauthenticated or _is_loopback(host):
        return
    raise ValueError(
        f"no API token is configured and Serve listens on {host!r}, beyond this machine: set "
        f"{TOKENS_ENV} or api_tokens_file (docs/deploy.md, Security), bind http_options.host to 127.0.0.1, "
        "or pass allow_unauthenticated=true to serve everyone who reaches the port"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()
