"""Encoders: a registry of name -> model + preprocessing + output dimension.

``create_encoder("builtin")`` (weights-free, the default), ``"uni"``, ``"uni2-h"``,
``"resnet50-trunc"``, ``"timm:<name>"`` and ``"ge:<run>"`` (gene-informed encoder of a trained
HAGE run). Importing this package is cheap; torch loads on first use of the registry.
"""

from __future__ import annotations

from hagekit.encoders.registry import (
    ENCODERS,
    EncoderBundle,
    EncoderInfo,
    create_encoder,
    encoder_infos,
    list_encoders,
    register_encoder,
    unregister_encoder,
)

__all__ = [
    "ENCODERS",
    "EncoderBundle",
    "EncoderInfo",
    "create_encoder",
    "encoder_infos",
    "list_encoders",
    "register_encoder",
    "unregister_encoder",
]
