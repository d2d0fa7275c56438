"""A recording HTTP(S) server on 127.0.0.1 for download tests, and host names that resolve to it.

Nothing leaves the machine: :func:`local_hosts` makes a few test host names (``huggingface.co``,
``evilhuggingface.co``, ...) resolve to 127.0.0.1 and every other name fail to resolve, and
:func:`self_signed_cert` makes a certificate for those names that the client trusts through
``SSL_CERT_FILE`` (so an ``https://huggingface.co:<port>/`` URL reaches the local server).
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

#: Host names a test may use; each resolves to 127.0.0.1 under :func:`local_hosts`.
TEST_HOSTS = ("huggingface.co", "cdn.huggingface.co", "evilhuggingface.co", "huggingface.co.evil.test", "mirror.test")


class LocalServer:
    """Serves ``files`` (with HTTP Range) and ``redirects`` (path -> Location, 302); records
    each request's path and headers in ``requests``. ``cert``: (certfile, keyfile) for HTTPS."""

    def __init__(self, cert: tuple[Path, Path] | None = None) -> None:
        self.files: dict[str, bytes] = {}
        self.redirects: dict[str, str] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.ranges: list[str | None] = []  # each GET's Range header (None: none)
        self.honour_range = True  # False: a server without Range support (always 200, whole file)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802 - http.server API; recorded, answered 404
                server.requests.append((self.path.split("?")[0], dict(self.headers.items())))
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                path = self.path.split("?")[0]
                server.requests.append((path, dict(self.headers.items())))
                if path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = server.files.get(path)
                rng = self.headers.get("Range")
                server.ranges.append(rng)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                if rng and server.honour_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if cert is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(cert[0]), str(cert[1]))
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.scheme = "https" if cert is not None else "http"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}"

    def auth_headers(self) -> list[str]:
        """Every ``Authorization`` header this server received."""
        return [v for _, h in self.requests for k, v in h.items() if k.lower() == "authorization"]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def local_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolve :data:`TEST_HOSTS` to 127.0.0.1; any other name but 127.0.0.1/localhost fails to resolve."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name in TEST_HOSTS:
            return real("127.0.0.1", port, *args, **kwargs)
        if name in ("127.0.0.1", "localhost"):
            return real(name, port, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, f"test resolver: {name} is not a local test host")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A throwaway certificate for :data:`TEST_HOSTS` (openssl CLI; the test skips without it)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    cert, key = folder / "cert.pem", folder / "key.pem"
    san = ",".join(f"DNS:{h}" for h in TEST_HOSTS) + ",IP:127.0.0.1"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=huggingface.co",
         "-addext", f"subjectAltName={san}"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


def write_manifest(folder: Path, files: list[dict]) -> Path:
    """A minimal dataset manifest (``m.yaml`` in ``folder``) listing ``files`` (name, url, sha256...)."""
    import yaml

    path = folder / "m.yaml"
    path.write_text(yaml.safe_dump({"name": "mini", "kind": "dataset", "title": "Mini", "licence": "CC0",
                                    "citation": "Nobody (2026).", "files": files}))
    return path

