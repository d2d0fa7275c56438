"""The encoder registry: a spec string -> model, preprocessing, output dimension.

Specs are registry names (``builtin``, ``uni``, ``uni2-h``, ``resnet50-trunc``) or a
``prefix:argument`` form (``timm:<model>``, ``ge:<run>[:fold:trial]``). Builders register
with :func:`register_encoder`; duplicate names raise and unknown names list the valid ones.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hagekit.errors import EncoderError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

__all__ = [
    "EncoderBundle",
    "EncoderInfo",
    "create_encoder",
    "list_encoders",
    "encoder_infos",
    "register_encoder",
    "unregister_encoder",
]

log = logging.getLogger(__name__)


@dataclass
class EncoderBundle:
    """A ready encoder: ``model`` maps a transformed batch (B, 3, H, W) to features (B, D).

    ``transform`` turns one RGB patch (H x W x 3 uint8 array or PIL image) into the model's
    input tensor (3, input_size, input_size); ``config`` holds everything needed to rebuild
    the bundle (spec, weights path) and is written into feature provenance.
    """

    name: str
    model: torch.nn.Module
    transform: Callable[[np.ndarray | Image.Image], torch.Tensor]
    dim: int
    input_size: int
    weights_sha256: str
    random_weights: bool
    precision: str = "fp32"
    config: dict[str, Any] = field(default_factory=dict)


#: ``builder(argument, *, weights, random_weights, device) -> EncoderBundle``; ``argument``
#: is the text after ``prefix:`` for prefix entries and ``None`` for plain names.
Builder = Callable[..., EncoderBundle]


@dataclass(frozen=True)
class EncoderInfo:
    """What ``hagekit encoders list`` shows about a registry entry (no model is built)."""

    name: str
    dim: int | None
    input_size: int | None
    weights: str
    description: str
    prefix: bool = False


_BUILDERS: dict[str, Builder] = {}
_INFOS: dict[str, EncoderInfo] = {}
_BUILTIN_MODULES = (
    "hagekit.encoders.builtin",
    "hagekit.encoders.timm_models",
    "hagekit.encoders.resnet_trunc",
)
_loaded = False


def register_encoder(
    name: str,
    *,
    dim: int | None = None,
    input_size: int | None = None,
    weights: str = "--weights PATH",
    description: str = "",
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder`` under ``name`` (``"prefix:"`` registers a prefix).

    Raises :class:`EncoderError` when the name is taken, so that a plugin never silently
    replaces a built-in encoder.
    """
    key = name.strip().lower()
    if not key or any(c.isspace() for c in key) or (":" in key and not key.endswith(":")):
        raise EncoderError(f"encoder name {name!r}: use letters, digits, '-', '_' (or 'prefix:')")

    def decorate(builder: Builder) -> Builder:
        if key in _BUILDERS:
            raise EncoderError(f"encoder {name!r} is already registered")
        _BUILDERS[key] = builder
        _INFOS[key] = EncoderInfo(
            name=key,
            dim=dim,
            input_size=input_size,
            weights=weights,
            description=description or ((builder.__doc__ or "").strip().splitlines() or [""])[0],
            prefix=key.endswith(":"),
        )
        return builder

    return decorate


def unregister_encoder(name: str) -> None:
    """Remove a registered encoder (for plugins and tests)."""
    key = name.strip().lower()
    _BUILDERS.pop(key, None)
    _INFOS.pop(key, None)


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    if "ge:" not in _BUILDERS:
        register_encoder(
            "ge:",
            dim=None,
            input_size=None,
            weights="a trained HAGE run",
            description="gene-informed encoder of a trained HAGE run (ge:<run-or-file>[:fold:trial])",
        )(_build_ge)


def _display_name(key: str) -> str:
    if key == "timm:":
        return "timm:<name>"
    if key == "ge:":
        return "ge:<run>"
    return key


def list_encoders() -> list[str]:
    """Registered encoder names, prefixes shown as ``timm:<name>`` / ``ge:<run>``."""
    _ensure_loaded()
    return sorted(_display_name(k) for k in _BUILDERS)


def encoder_infos() -> list[EncoderInfo]:
    """Registry entries with their dimension, input size and weights source."""
    _ensure_loaded()
    return [
        EncoderInfo(_display_name(k), i.dim, i.input_size, i.weights, i.description, i.prefix)
        for k, i in sorted(_INFOS.items())
    ]


def _resolve(spec: str) -> tuple[str, Builder, str | None]:
    _ensure_loaded()
    text = spec.strip()
    key = text.lower()
    if key in _BUILDERS and not key.endswith(":"):
        return key, _BUILDERS[key], None
    if ":" in text:
        prefix, arg = text.split(":", 1)
        pkey = prefix.lower() + ":"
        if pkey in _BUILDERS:
            if not arg.strip():
                raise EncoderError(f"--encoder: {spec!r} needs a name after '{prefix}:' (e.g. timm:vit_small_patch16_224)")
            return pkey, _BUILDERS[pkey], arg.strip()
    raise EncoderError(f"--encoder: unknown encoder {spec!r} (valid: {', '.join(list_encoders())})")


def create_encoder(
    spec: str,
    *,
    weights: Path | None = None,
    random_weights: bool = False,
    device: str = "cpu",
) -> EncoderBundle:
    """Build the encoder ``spec`` on ``device`` in eval mode.

    ``weights`` is a local ``.bin``/``.pth``/``.safetensors`` file; without it, encoders that
    need weights try the Hugging Face hub and fail with a clear message offline.
    ``random_weights`` must be asked for explicitly (speed tests) and is recorded.
    """
    key, builder, arg = _resolve(spec)
    if weights is not None and random_weights:
        raise EncoderError("--weights and --random-weights exclude each other")
    if weights is not None:
        weights = Path(weights).expanduser()
        if not weights.is_file():
            raise EncoderError(f"{weights}: weights file not found")
    kwargs: dict[str, Any] = {"weights": weights, "random_weights": random_weights, "device": device}
    bundle = builder(arg, **kwargs) if key.endswith(":") else builder(None, **kwargs)
    bundle.model.eval()
    bundle.config["spec"] = spec.strip()
    bundle.config.setdefault("weights", str(weights) if weights is not None else "")
    bundle.config.setdefault("random_weights", bool(random_weights))
    log.debug("encoder %s: dim %d, input %d px, weights %s", bundle.name, bundle.dim, bundle.input_size, bundle.weights_sha256[:12])
    return bundle


def _build_ge(arg: str | None, *, weights: Path | None, random_weights: bool, device: str) -> EncoderBundle:
    """Gene-informed encoder of a trained HAGE run, built by ``hagekit.hage.ge_encoder``."""
    if weights is not None or random_weights:
        raise EncoderError("--encoder ge:<run>: weights come from the run; drop --weights/--random-weights")
    try:
        module = importlib.import_module("hagekit.hage.ge_encoder")
    except ModuleNotFoundError as exc:
        if exc.name not in ("hagekit.hage.ge_encoder", "hagekit.hage"):
            raise
        raise EncoderError(
            "--encoder ge:...: the gene-informed encoder is not available in this install "
            "(hagekit.hage.ge_encoder missing)"
        ) from None
    build = getattr(module, "build_ge_encoder", None)
    if build is None:
        raise EncoderError("--encoder ge:...: hagekit.hage.ge_encoder has no build_ge_encoder()")
    return build(str(arg), device=device)
