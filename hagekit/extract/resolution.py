"""Is the source image fine enough for the patches asked of it?

Encoders see ``out_px`` pixels per patch; when the source holds far fewer across the same
region (an ST image at 4 µm/px gives a 112 µm spot patch of ~26 px, upscaled to 224), the
features describe blur. One warning per section or slide when a patch is upscaled more than
:data:`MAX_UPSCALE` times (a source coarser than 1 µm/px for 224 px over 112 µm), and the
factor is recorded in the feature file's attributes.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["MAX_UPSCALE", "source_resolution_attrs"]

log = logging.getLogger(__name__)

#: Largest upscaling of source pixels into encoder pixels before a warning.
MAX_UPSCALE = 2.0


def source_resolution_attrs(name: str, *, source_px: float, out_px: int, source_mpp: float) -> dict[str, Any]:
    """Attributes ``source_mpp``, ``source_patch_px``, ``source_upscale``, ``coarse_source`` for a
    patch of ``source_px`` source pixels resized to ``out_px``; warns once when coarse."""
    upscale = float(out_px) / float(source_px) if source_px > 0 else float("inf")
    coarse = upscale > MAX_UPSCALE
    if coarse:
        log.warning(
            "%s: the image is coarse (%.2f µm/px): each patch is %.0f source px upscaled %.1fx to %d px, so features "
            "see blur; use a finer image (<= %.2f µm/px keeps the upscale within %gx)",
            name, source_mpp, source_px, upscale, out_px, source_mpp * MAX_UPSCALE / upscale, MAX_UPSCALE,
        )
    return {
        "source_mpp": float(source_mpp),
        "source_patch_px": float(source_px),
        "source_upscale": float(upscale),
        "coarse_source": bool(coarse),
    }
