"""Where a Hugging Face token may go: ``huggingface.co`` and its subdomains, over HTTPS only.

The token (``HF_TOKEN`` or ``HUGGING_FACE_HUB_TOKEN``) is added to a request only when its URL
is an HTTPS URL on ``huggingface.co`` or a ``*.huggingface.co`` host (never a look-alike such
as ``evilhuggingface.co``), and :func:`open_url` drops it on any redirect that leaves those
hosts or falls back to plain HTTP (urllib's own redirect handler forwards every header).
"""

from __future__ import annotations

import os
import urllib.request
from typing import Any
from urllib.parse import urlparse

__all__ = ["HUB_DOMAIN", "is_hub_url", "hub_token", "hub_headers", "open_url"]

HUB_DOMAIN = "huggingface.co"


def is_hub_url(url: str) -> bool:
    """True for ``https://huggingface.co/...`` and ``https://<sub>.huggingface.co/...`` only."""
    parts = urlparse(url)
    host = (parts.hostname or "").lower().rstrip(".")
    return parts.scheme.lower() == "https" and (host == HUB_DOMAIN or host.endswith("." + HUB_DOMAIN))


def hub_token() -> str | None:
    """The token from ``HF_TOKEN`` (or the older ``HUGGING_FACE_HUB_TOKEN``), if set."""
    return os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or None


def hub_headers(url: str) -> dict[str, str]:
    """``Authorization: Bearer <token>`` for a hub URL when a token is set, else nothing."""
    token = hub_token()
    return {"Authorization": f"Bearer {token}"} if token and is_hub_url(url) else {}


class _DropTokenOffHub(urllib.request.HTTPRedirectHandler):
    """Follows redirects like urllib, without the token once the target is not the hub over HTTPS."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and not is_hub_url(newurl):
            new.remove_header("Authorization")
        return new


def open_url(request: urllib.request.Request, *, timeout: float) -> Any:
    """``urlopen`` for downloads: redirects are followed, the hub token never leaves the hub."""
    opener = urllib.request.build_opener(_DropTokenOffHub())
    return opener.open(request, timeout=timeout)
