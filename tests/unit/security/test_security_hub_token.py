"""The Hugging Face token goes to huggingface.co (and its subdomains) over HTTPS only, and never
follows a redirect off the hub or down to plain HTTP (issue 19, item 10).

Servers run on 127.0.0.1 only; test host names resolve there (``localhttp.local_hosts``) and
an HTTPS server uses a throwaway certificate the client trusts through ``SSL_CERT_FILE``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from localhttp import LocalServer, local_hosts, self_signed_cert

from hagekit.data.download import download
from hagekit.data.manifests import load_manifest
from hagekit.io.hub_auth import hub_headers, is_hub_url

TOKEN = "hf_secret_test_token"
PAYLOAD = b"weights" * 1000


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://huggingface.co/MahmoodLab/UNI/resolve/main/pytorch_model.bin", True),
        ("https://cdn-lfs.huggingface.co/x", True),
        ("https://HuggingFace.CO./x", True),
        ("https://evilhuggingface.co/x", False),  # merely ends in huggingface.co
        ("https://huggingface.co.evil.test/x", False),
        ("https://huggingface.co@evil.test/x", False),  # userinfo, host is evil.test
        ("http://huggingface.co/x", False),  # plain HTTP
        ("ftp://huggingface.co/x", False),
        ("file:///huggingface.co/x", False),
    ],
)
def test_hub_url_predicate(url: str, ok: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert is_hub_url(url) is ok
    assert hub_headers(url) == ({"Authorization": f"Bearer {TOKEN}"} if ok else {})


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LocalServer, LocalServer]]:
    """An HTTPS server (the 'hub') and a plain HTTP server (elsewhere), both on 127.0.0.1."""
    cert, key = self_signed_cert(tmp_path)
    local_hosts(monkeypatch)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub, other = LocalServer(cert=(cert, key)), LocalServer()
    try:
        yield hub, other
    finally:
        hub.close()
        other.close()


def _manifest(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"name": "mini", "kind": "weights", "title": "t", "licence": "l", "citation": "c",
                                    "files": [{"name": "w.bin", "url": url}]}))
    return path


def test_token_reaches_the_hub_over_https(tls, tmp_path: Path) -> None:
    hub, _ = tls
    hub.files["/w.bin"] = PAYLOAD
    download(load_manifest(_manifest(tmp_path, hub.url("huggingface.co") + "/w.bin")), tmp_path / "out")
    assert hub.auth_headers() == [f"Bearer {TOKEN}"]
    assert (tmp_path / "out" / "w.bin").read_bytes() == PAYLOAD


@pytest.mark.parametrize("host", ["evilhuggingface.co", "huggingface.co.evil.test"])
def test_look_alike_host_gets_no_token(tls, tmp_path: Path, host: str) -> None:
    hub, _ = tls
    hub.files["/w.bin"] = PAYLOAD
    download(load_manifest(_manifest(tmp_path, hub.url(host) + "/w.bin")), tmp_path / "out")
    assert hub.requests and hub.auth_headers() == []


@pytest.mark.parametrize("target", ["plain http on 127.0.0.1", "plain http on huggingface.co", "https off the hub"])
def test_redirect_off_the_hub_drops_the_token(tls, tmp_path: Path, target: str) -> None:
    hub, other = tls
    other.files["/blob"] = PAYLOAD
    hub.files["/blob"] = PAYLOAD
    hub.redirects["/w.bin"] = {
        "plain http on 127.0.0.1": other.url() + "/blob",
        "plain http on huggingface.co": other.url("huggingface.co") + "/blob",
        "https off the hub": hub.url("mirror.test") + "/blob",
    }[target]
    download(load_manifest(_manifest(tmp_path, hub.url("huggingface.co") + "/w.bin")), tmp_path / "out")
    assert (tmp_path / "out" / "w.bin").read_bytes() == PAYLOAD
    first, *rest = hub.requests + other.requests
    assert first[0] == "/w.bin" and "Authorization" in first[1]  # the hub itself got the token
    assert rest and all("Authorization" not in h for _, h in rest)  # the redirect target did not


def test_redirect_within_the_hub_keeps_the_token(tls, tmp_path: Path) -> None:
    hub, _ = tls
    hub.files["/blob"] = PAYLOAD
    hub.redirects["/w.bin"] = hub.url("cdn.huggingface.co") + "/blob"
    download(load_manifest(_manifest(tmp_path, hub.url("huggingface.co") + "/w.bin")), tmp_path / "out")
    assert hub.auth_headers() == [f"Bearer {TOKEN}"] * 2


def test_hub_download_sends_no_token_to_another_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``HF_ENDPOINT`` naming a non-hub (here plain-HTTP) host: huggingface_hub gets no token."""
    from huggingface_hub import constants

    from hagekit.encoders.weights import hub_download
    from hagekit.errors import EncoderError

    local_hosts(monkeypatch)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    server = LocalServer()
    try:
        endpoint = server.url("mirror.test")
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        with pytest.raises(EncoderError):
            hub_download("org/model", ["model.safetensors"], what="test", gated=True)
        assert server.requests and server.auth_headers() == []
    finally:
        server.close()
