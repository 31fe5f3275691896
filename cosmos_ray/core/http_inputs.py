"""http(s) inputs, fetched so that a URL in a spec cannot make a worker reach what it should not.

A spec's `input_path` is chosen by whoever wrote the spec (a Serve client, a manifest's author), and the
worker that reads it sits inside the cluster's network. So an http(s) read here:

- follows no redirect: a 3xx answer fails the read and names where it points. An allow-list (Serve's
  `allowed_input_prefixes`) is checked on the URL the client sent; a redirect would lead past it.
- connects only to public addresses: the host name is resolved once, every address it resolves to must be a
  global unicast address (not loopback, private, link-local such as the cloud metadata address
  169.254.169.254, shared, reserved, multicast or unspecified), and the connection goes to that checked
  address, so a second DNS answer cannot swap in another one. `allow_private=True` lifts this for an
  operator whose inputs live on their own network.

No proxy from the environment is used (a proxy would make the address check meaningless). Every refusal raises
`HttpRefused`, whose message is the reason in a few words; `Storage` turns it into its one-line `StorageError`.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from urllib.parse import urlsplit

TIMEOUT_S = 60.0  # for connecting and for each read of the answer
NOT_FOUND = (404, 410)
ALLOW_PRIVATE_HINT = "allow them explicitly with --allow-private-http (Serve: allow_private_http=true)"


class HttpRefused(OSError):
    """An http(s) input that is not fetched: a non-public address, a redirect, or an error status."""


def get(url: str, *, allow_private: bool = False, timeout_s: float = TIMEOUT_S, max_bytes: int | None = None) -> bytes:
    """The body of a GET of `url`; raises `HttpRefused` for a redirect, an error status or a refused address,
    and `TooLarge` (an `HttpRefused`) for a body over `max_bytes`: from its Content-Length before reading,
    else once more than `max_bytes` were read."""
    connection, response = _request(url, allow_private, timeout_s)
    try:
        if response.status in NOT_FOUND:
            raise FileNotFoundError(f"HTTP {response.status}")
        if response.status != 200:
            raise HttpRefused(f"HTTP {response.status} {response.reason}".strip())
        if max_bytes is None:
            return response.read()
        declared = response.getheader("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise TooLarge(int(declared), max_bytes)
        body = response.read(max_bytes + 1)
        if len(body) > max_bytes:
            raise TooLarge(len(body), max_bytes)
        return body
    finally:
        connection.close()


class TooLarge(HttpRefused):
    """An http(s) body of more bytes than the reader allows (`size`: its declared size, or at least that)."""

    def __init__(self, size: int, max_bytes: int):
        super().__init__(f"the file has {size} bytes, more than the {max_bytes} allowed here")


def exists(url: str, *, allow_private: bool = False, timeout_s: float = TIMEOUT_S) -> bool:
    """True for a 200 answer to a GET of `url` (the body is not read), False for 404 / 410; other answers, a
    redirect or a refused address raise `HttpRefused`."""
    connection, response = _request(url, allow_private, timeout_s)
    connection.close()
    if response.status in NOT_FOUND:
        return False
    if response.status != 200:
        raise HttpRefused(f"HTTP {response.status} {response.reason}".strip())
    return True


def checked_address(host: str, port: int, *, allow_private: bool = False) -> str:
    """The address to connect to for `host`: its first resolved address, once every address it resolves to has
    been checked (raises `HttpRefused` naming the first refused one)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise HttpRefused(f"cannot resolve host {host!r}: {error.strerror}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not allow_private:
        for address in addresses:
            kind = non_public_kind(ipaddress.ip_address(address.split("%")[0]))
            if kind is not None:
                shown = host if host == address else f"{host} ({address})"
                raise HttpRefused(
                    f"{shown} is a {kind} address: http(s) inputs reach public addresses only ({ALLOW_PRIVATE_HINT})"
                )
    return addresses[0]


def non_public_kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """What kind of non-public address `ip` is ("loopback", "link-local", ...), or None for a public one."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:  # ::ffff:127.0.0.1 is 127.0.0.1
        ip = ip.ipv4_mapped
    kinds = {
        "loopback": ip.is_loopback,
        "link-local": ip.is_link_local,  # before private: 169.254.0.0/16 is both
        "unspecified": ip.is_unspecified,
        "multicast": ip.is_multicast,
        "private": ip.is_private,
        "reserved": ip.is_reserved,
        "non-public": not ip.is_global,  # e.g. shared address space 100.64.0.0/10
    }
    return next((kind for kind, hit in kinds.items() if hit), None)


def _request(
    url: str, allow_private: bool, timeout_s: float
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """The open connection and the answer's head, once the address is checked and the answer is no redirect."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise HttpRefused("not an http(s) URL with a host")
    port = parts.port or (443 if scheme == "https" else 80)
    address = checked_address(parts.hostname, port, allow_private=allow_private)
    connection_type = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
    connection = connection_type(parts.hostname, port, address=address, timeout=timeout_s)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("GET", target, headers={"User-Agent": "cosmos-ray"})
        response = connection.getresponse()
    except BaseException:
        connection.close()
        raise
    if 300 <= response.status < 400:
        connection.close()
        location = response.getheader("Location") or "nowhere"
        raise HttpRefused(
            f"it redirects (HTTP {response.status}) to {location}; redirects are not followed: give the final URL"
        )
    return connection, response


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to `address`, with `host` in the Host header."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    """An HTTPS connection to `address`, whose certificate must be valid for `host` (also the SNI name)."""

    default_port = http.client.HTTPS_PORT

    def connect(self) -> None:
        super().connect()
        self.sock = ssl.create_default_context().wrap_socket(self.sock, server_hostname=self.host)
