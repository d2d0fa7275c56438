"""Loading encoder weights: local files (``.bin``/``.pth``/``.safetensors``) or the HF hub.

Loading is strict: every key of the model must be found with the right shape and no key of
the file may be left over, otherwise :class:`EncoderError` names the missing, unexpected and
mismatched keys. Pickled files are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hagekit.errors import EncoderError, at

if TYPE_CHECKING:
    import torch

__all__ = [
    "sha256_file",
    "read_state_dict",
    "load_weights",
    "check_keys",
    "hub_download",
    "RANDOM_WEIGHTS_SHA",
]

log = logging.getLogger(__name__)

#: What feature provenance records as the weights hash of a randomly initialised model.
RANDOM_WEIGHTS_SHA = "random-init"

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "teacher", "module")
_STRIP_PREFIXES = ("module.", "model.", "backbone.")


def sha256_file(path: Path | str, *, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes (4 MiB chunks, constant memory)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors``, or ``.bin``/``.pth``/``.pt`` (weights_only).

    Common wrappers (``{"state_dict": ...}``, ``{"model": ...}``) are unwrapped.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise EncoderError(at(path, "weights file not found"))
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path), device="cpu")
        elif suffix in (".bin", ".pth", ".pt", ".ckpt"):
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise EncoderError(at(path, f"unknown weights format '{suffix}' (valid: .safetensors, .bin, .pth, .pt)"))
    except EncoderError:
        raise
    except Exception as exc:  # torch/safetensors raise many types on corrupt or unsafe files
        raise EncoderError(at(path, f"cannot read weights ({type(exc).__name__}: {exc})")) from None
    for _ in range(2):
        if isinstance(state, Mapping):
            inner = next((state[k] for k in _WRAPPER_KEYS if isinstance(state.get(k), Mapping)), None)
            if inner is not None and not any(hasattr(v, "shape") for v in state.values()):
                state = inner
    if not isinstance(state, Mapping) or not state:
        raise EncoderError(at(path, "no state dict (tensor mapping) in the weights file"))
    tensors = {str(k): v for k, v in state.items() if hasattr(v, "shape")}
    if not tensors:
        raise EncoderError(at(path, "the weights file holds no tensors"))
    return tensors


def _strip_common_prefix(state: dict[str, Any], model_keys: set[str]) -> dict[str, Any]:
    if set(state) & model_keys:
        return state
    for prefix in _STRIP_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            stripped = {k[len(prefix):]: v for k, v in state.items()}
            if set(stripped) & model_keys:
                return stripped
    return state


def _preview(keys: Iterable[str], limit: int = 5) -> str:
    keys = sorted(keys)
    more = f", ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def check_keys(
    model_state: Mapping[str, Any],
    file_state: Mapping[str, Any],
    *,
    source: Path | str,
    ignore_unexpected: Iterable[str] = (),
) -> None:
    """Raise :class:`EncoderError` unless the two state dicts have the same keys and shapes.

    ``ignore_unexpected`` are key prefixes allowed in the file but not in the model (e.g. a
    classifier head dropped by ``num_classes=0``).
    """
    ignore = tuple(ignore_unexpected)
    missing = set(model_state) - set(file_state)
    unexpected = {k for k in set(file_state) - set(model_state) if not (ignore and k.startswith(ignore))}
    mismatched = [
        f"{k} {tuple(file_state[k].shape)} vs {tuple(model_state[k].shape)}"
        for k in sorted(set(model_state) & set(file_state))
        if tuple(file_state[k].shape) != tuple(model_state[k].shape)
    ]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys ({_preview(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys ({_preview(unexpected)})")
    if mismatched:
        more = f" (+{len(mismatched) - 3} more)" if len(mismatched) > 3 else ""
        parts.append(f"{len(mismatched)} shape mismatches ({'; '.join(mismatched[:3])}{more})")
    raise EncoderError(at(source, "weights do not match the model: " + "; ".join(parts)))


def load_weights(
    model: torch.nn.Module,
    path: Path | str,
    *,
    ignore_unexpected: Iterable[str] = (),
) -> str:
    """Load ``path`` into ``model`` strictly (see :func:`check_keys`); return the file's sha256.

    Works for models built on the ``meta`` device too (tensors are assigned, not copied).
    """
    path = Path(path)
    state = read_state_dict(path)
    model_state = model.state_dict()
    state = _strip_common_prefix(state, set(model_state))
    check_keys(model_state, state, source=path, ignore_unexpected=ignore_unexpected)
    state = {k: v for k, v in state.items() if k in model_state}
    on_meta = any(p.is_meta for p in model.parameters())
    if on_meta:
        state = {k: v.to(model_state[k].dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=on_meta)
    return sha256_file(path)


def hub_download(repo_id: str, filenames: Iterable[str], *, what: str, gated: bool = False) -> Path:
    """Download the first of ``filenames`` that exists in an HF hub repo; clear error offline.

    Gated repos (UNI) need a token (``HF_TOKEN`` or ``huggingface-cli login``): without one we
    fail at once instead of probing the network.
    """
    import huggingface_hub
    from huggingface_hub import constants, hf_hub_download

    from hagekit.io.hub_auth import is_hub_url

    hint = f"pass --weights PATH (a local pytorch_model.bin or .safetensors from {repo_id})"
    if gated and not (os.environ.get("HF_TOKEN") or huggingface_hub.get_token()):
        raise EncoderError(f"{what}: no weights: {hint}, or set HF_TOKEN for the gated hf-hub:{repo_id}")
    # the token goes to huggingface.co over HTTPS only (HF_ENDPOINT may name another host)
    token: bool | None = None if is_hub_url(constants.ENDPOINT) else False
    if token is False:
        log.warning("HF_ENDPOINT %s is not https://huggingface.co: no token is sent to it", constants.ENDPOINT)
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        log.info("HF_HUB_OFFLINE is set: only the local hub cache is used for %s", repo_id)
    filenames = list(filenames)
    for name in filenames:  # the local hub cache first: works offline
        try:
            return Path(hf_hub_download(repo_id, name, local_files_only=True, token=token))
        except Exception:  # not cached
            continue
    if not _hub_reachable():
        raise EncoderError(f"{what}: no network to reach hf-hub:{repo_id}: {hint}")
    errors = []
    for name in filenames:
        try:
            return Path(hf_hub_download(repo_id, name, token=token))
        except Exception as exc:  # a missing file: try the next name; anything else: stop
            errors.append(f"{name}: {type(exc).__name__}")
            if type(exc).__name__ != "EntryNotFoundError":
                break
    raise EncoderError(f"{what}: could not get weights from hf-hub:{repo_id} ({'; '.join(errors)}): {hint}")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub's host resolves and accepts a TCP connection (no request is sent)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    parts = urlparse(constants.ENDPOINT)
    host = parts.hostname or "huggingface.co"
    port = parts.port or (80 if parts.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
