"""http(s) inputs (cosmos_ray/core/http_inputs.py through `Storage`): no redirect is followed, and only public
addresses are reached unless the operator allows private ones. A real HTTP server on loopback stands for both
an operator's own server and the address an attacker aims at."""

import ipaddress
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cosmos_ray.core.http_inputs import non_public_kind
from cosmos_ray.core.storage import Storage, StorageError, StorageNotFoundError
from jobs.generate import parse_args as generate_args
from jobs.local import parse_args as local_args
from pipelines.serve import ServeArgs

BODY = b"\x89PNG not really"


class _Server(BaseHTTPRequestHandler):
    requests: list[str]  # set per server: the paths asked for, in order
    port: int  # set per server: its own port

    def do_GET(self):  # noqa: N802 - the http.server hook's name
        self.requests.append(self.path)
        if self.path == "/image.png":
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)
        elif self.path == "/undeclared.png":  # no Content-Length: the body ends when the connection closes
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(BODY)
        elif self.path.startswith("/to-metadata"):
            self._redirect("http://169.254.169.254/latest/meta-data/iam/security-credentials/")
        elif self.path == "/to-loopback":
            self._redirect(f"http://127.0.0.1:{self.port}/image.png")
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def server():
    """(base URL on 127.0.0.1, the list of paths the server was asked for)."""
    requests: list[str] = []
    handler: type[_Server] = type("Handler", (_Server,), {"requests": requests})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.port = httpd.server_port
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}", requests
    httpd.shutdown()
    httpd.server_close()


OPEN = Storage(allow_http=True, allow_private_http=True)  # the operator allows its own network


def test_loopback_is_refused_by_default_and_never_contacted(server):
    base, requests = server
    for url in [f"{base}/image.png", f"http://example.com@{base.removeprefix('http://')}/image.png"]:
        with pytest.raises(StorageError, match=r"127\.0\.0\.1 is a loopback address: http\(s\) inputs reach public"):
            Storage(allow_http=True).read_bytes(url)
    # a name is resolved first, and each of its addresses checked
    with pytest.raises(StorageError, match=r"localhost \(127\.0\.0\.1\) is a loopback address"):
        Storage(allow_http=True).exists(base.replace("127.0.0.1", "localhost") + "/image.png")
    assert requests == []


def test_an_allowed_private_server_is_read(server):
    base, requests = server
    assert OPEN.read_bytes(f"{base}/image.png") == BODY
    assert OPEN.exists(f"{base}/image.png") and not OPEN.exists(f"{base}/missing.png")
    with pytest.raises(StorageNotFoundError, match="missing.png: not found"):
        OPEN.read_bytes(f"{base}/missing.png")
    assert requests == ["/image.png", "/image.png", "/missing.png", "/missing.png"]


@pytest.mark.parametrize("path", ["/image.png", "/undeclared.png"])
def test_a_body_over_the_byte_limit_is_refused(server, path):
    """Declared too large: refused from the header; undeclared: reading stops one byte past the limit."""
    base, _ = server
    assert OPEN.read_bytes(f"{base}{path}", max_bytes=len(BODY)) == BODY
    with pytest.raises(StorageError, match=rf"has (\d+) bytes, more than the {len(BODY) - 1} allowed here"):
        OPEN.read_bytes(f"{base}{path}", max_bytes=len(BODY) - 1)


@pytest.mark.parametrize("path", ["/to-metadata?x=1", "/to-loopback"])
def test_redirects_are_never_followed(server, path):
    base, requests = server
    with pytest.raises(StorageError, match=r"redirects \(HTTP 302\) to http://.*redirects are not followed") as error:
        OPEN.read_bytes(base + path)
    assert str(error.value).startswith(f"cannot read {base}{path}: it redirects")
    with pytest.raises(StorageError, match="redirects are not followed"):
        OPEN.exists(base + path)
    assert requests == [path, path]  # the target was never asked for


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("127.0.0.2", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("fd00::1", "private"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("100.64.0.1", "non-public"),  # shared address space (carrier NAT)
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_non_public_kinds(address, kind):
    assert non_public_kind(ipaddress.ip_address(address)) == kind


def test_conditioning_from_a_refused_address_fails_the_sample(server):
    from cosmos_ray.conditioning import read_conditioning
    from cosmos_ray.core.media import MediaError
    from cosmos_ray.core.spec import GenerationSpec

    base, requests = server
    spec = GenerationSpec.from_dict(
        {"inference_type": "image2world", "name": "s", "prompt": "p", "input_path": f"{base}/to-metadata.png"}
    )
    with pytest.raises(MediaError, match="input_path .* is a loopback address"):
        read_conditioning(spec, 1, 64, 96, storage=Storage(allow_http=True))
    with pytest.raises(MediaError, match="redirects are not followed"):
        read_conditioning(spec, 1, 64, 96, storage=OPEN)
    assert requests == ["/to-metadata.png"]


def test_every_entry_point_takes_the_policy():
    job = ["--manifest", "m.parquet", "--output", "o", "--preset", "tiny"]
    assert not generate_args(job).engine.storage.allow_private_http
    storage = generate_args([*job, "--allow-http", "--allow-private-http"]).engine.storage
    assert storage.allow_http and storage.allow_private_http
    local = local_args(["-i", "s.json", "-o", "o", "--preset", "tiny", "--allow-private-http"])
    assert local.engine.storage.allow_private_http
    assert not ServeArgs().storage().allow_private_http
    assert ServeArgs(allow_private_http=True).storage().allow_private_http
