"""Optional bearer-token authentication of the HTTP API.

The accepted tokens come from the environment variable `COSMOS_RAY_API_TOKENS` (comma-separated) and from
the file named by the Serve argument `api_tokens_file` (one token per line, e.g. a mounted Kubernetes Secret;
blank lines and lines starting with `#` are skipped). Neither set: authentication is off. When it is on, every
`/v1/` route needs `Authorization: Bearer <token>`: no token is a 401, a token that is not accepted a 403.
`/healthz` and the API documentation stay open (probes and discovery carry no token).

Tokens are compared through their SHA-256 digests with `hmac.compare_digest`, against every accepted token, so
the time taken says nothing about how much of a token matched, its length, or which token it was.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable

from pipelines.serve.policy import ApiError

TOKENS_ENV = "COSMOS_RAY_API_TOKENS"
BEARER = "bearer "


class BearerAuth:
    """The accepted tokens (only their digests are kept); `check` raises `ApiError` 401 or 403."""

    def __init__(self, tokens: Iterable[str]):
        self._digests = [_digest(token) for token in tokens]

    @classmethod
    def from_sources(cls, tokens_file: str | None) -> BearerAuth:
        """Tokens from `COSMOS_RAY_API_TOKENS` and `tokens_file`; raises ValueError for an unreadable file or
        a file that names no token (a misconfigured Secret must not switch authentication off)."""
        tokens = [token.strip() for token in os.environ.get(TOKENS_ENV, "").split(",")]
        if tokens_file is not None:
            try:
                with open(tokens_file, encoding="utf-8") as lines:
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

    def check(self, authorization: str | None) -> None:
        """Let a request with one of the tokens through; raise 401 without a bearer token, 403 with another."""
        if not self.enabled:
            return
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


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()
