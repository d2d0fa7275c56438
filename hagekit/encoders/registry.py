"""The encoder registry: a spec string -> model, preprocessing, output dimension.

Specs are registry names (``builtin``, ``uni``, ``uni2-h``, ``resnet50-trunc``) or a
``prefix:argument`` form (``timm:<model>``). Builders register with :func:`register_encoder`
into :data:`ENCODERS` (a :class:`hagekit.registry.Registry`); duplicate names raise and unknown
names list the valid ones. Encoders outside this package
(``ge:<run>``, HAGE's gene-informed encoder, and third-party plugins) live in modules named by
the ``hagekit.encoders`` entry-point group: the registry imports them on first use and their
decorators register them, so this module names no plugin.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hagekit.errors import EncoderError
from hagekit.registry import Registry

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

__all__ = [
    "ENCODERS",
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


#: Every public module of this package is imported on first lookup, so that an encoder is one
#: new file here whose decorator registers it.
_BUILTIN_MODULES = tuple(
    f"hagekit.encoders.{p.stem}" for p in sorted(Path(__file__).parent.glob("*.py"))
    if not p.stem.startswith("_") and p.stem != "registry"
)
#: Entry-point group whose modules register encoders on import (pyproject ``[project.entry-points]``).
ENTRY_POINT_GROUP = "hagekit.encoders"
#: The encoder registry: name (or ``"prefix:"``) -> builder, with its :class:`EncoderInfo` as
#: ``info``; the built-in modules and the entry-point modules register on first lookup.
ENCODERS: Registry[Builder] = Registry(
    "encoder", option="--encoder", error=EncoderError, modules=_BUILTIN_MODULES, entry_points=ENTRY_POINT_GROUP
)


def register_encoder(
    name: str,
    *,
    dim: int | None = None,
    input_size: int | None = None,
    weights: str = "--weights PATH",
    description: str = "",
    usage: str | None = None,
    test_params: dict[str, Any] | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder`` under ``name`` (``"prefix:"`` registers a prefix).

    ``usage`` is how listings show a prefix (default ``prefix:<name>``). ``test_params`` are the
    :func:`create_encoder` keywords of a tiny build for the contract tests (``{"random_weights":
    True}``; a prefix adds ``"arg"``); ``None`` (the default) skips entries that need weights we
    do not ship. Raises :class:`EncoderError` when the name is taken, so that a plugin never
    silently replaces a built-in encoder.
    """

    def decorate(builder: Builder) -> Builder:
        key = name.strip().lower()
        info = EncoderInfo(
            name=usage or (f"{key}<name>" if key.endswith(":") else key),
            dim=dim,
            input_size=input_size,
            weights=weights,
            description=description or ((builder.__doc__ or "").strip().splitlines() or [""])[0],
            prefix=key.endswith(":"),
        )
        return ENCODERS.register(name, builder, help=info.description, info=info, test_params=test_params)

    ENCODERS.check_name(name)  # a bad name fails at the decorator line
    return decorate


def unregister_encoder(name: str) -> None:
    """Remove a registered encoder (for plugins and tests)."""
    ENCODERS.unregister(name)


def list_encoders() -> list[str]:
    """Registered encoder names, prefixes shown by their usage (``timm:<name>``, ``ge:<run>``)."""
    return sorted(i.name for i in encoder_infos())


def encoder_infos() -> list[EncoderInfo]:
    """Registry entries with their dimension, input size and weights source."""
    return [entry.info for _, entry in sorted(ENCODERS.items())]


def _resolve(spec: str) -> tuple[str, Builder, str | None]:
    text = spec.strip()
    key = text.lower()
    if key in ENCODERS and not key.endswith(":"):
        return key, ENCODERS.get(key), None
    if ":" in text:
        prefix, arg = text.split(":", 1)
        pkey = prefix.lower() + ":"
        if pkey in ENCODERS:
            if not arg.strip():
                raise EncoderError(f"--encoder: {spec!r} needs a name after '{prefix}:' (e.g. timm:vit_small_patch16_224)")
            return pkey, ENCODERS.get(pkey), arg.strip()
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
