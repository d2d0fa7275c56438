"""Batched, resumable feature extraction: ST spot patches and whole-slide tiles into h5.

``extract_sections`` (spots of prepared sections), ``extract_slides`` (tissue tiles of WSIs),
``encode_images`` (an in-memory batch of RGB patches, e.g. PCAM for the linear probe).
What to run is given as an :class:`EncoderSpec` and an :class:`ExtractionSpec`.
"""

from __future__ import annotations

from hagekit.extract.engine import (
    EncoderSetup,
    RunStats,
    encode_images,
    resolve_device,
    resolve_precision,
    run_encoder,
    stream_encoder,
)
from hagekit.extract.sections import extract_sections
from hagekit.extract.slides import extract_slides
from hagekit.extract.spec import DEFAULT_PATCH_UM, EncoderSpec, ExtractionSpec, TilingSpec
from hagekit.extract.summary import ExtractSummary, ItemResult

__all__ = [
    "DEFAULT_PATCH_UM",
    "EncoderSetup",
    "EncoderSpec",
    "ExtractSummary",
    "ExtractionSpec",
    "ItemResult",
    "RunStats",
    "TilingSpec",
    "encode_images",
    "extract_sections",
    "extract_slides",
    "resolve_device",
    "resolve_precision",
    "run_encoder",
    "stream_encoder",
]
