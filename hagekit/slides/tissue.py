"""Tissue mask of a thumbnail: Otsu on HSV saturation, holes filled, small specks removed.

Background glass is bright and grey (low saturation), stained tissue is coloured; the Otsu
threshold is clamped to a sane band so that an all-tissue or all-glass thumbnail still
gives a sensible mask.
"""

from __future__ import annotations

import numpy as np

__all__ = ["tissue_mask", "saturation"]

#: Otsu thresholds on saturation (0-1) are clamped into this band.
SATURATION_BAND = (0.04, 0.15)


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation in [0, 1] of an RGB uint8 image (0 where the pixel is black)."""
    arr = rgb[..., :3].astype(np.float32)
    vmax = arr.max(axis=-1)
    vmin = arr.min(axis=-1)
    return np.where(vmax > 0, (vmax - vmin) / np.maximum(vmax, 1e-6), 0.0).astype(np.float32)


def tissue_mask(
    rgb: np.ndarray,
    *,
    min_speck_frac: float = 0.0005,
    max_hole_frac: float = 0.01,
    smooth: int = 5,
) -> np.ndarray:
    """Boolean tissue mask (H, W) of an RGB thumbnail.

    Specks smaller than ``min_speck_frac`` of the image area are dropped and holes smaller
    than ``max_hole_frac`` are filled (larger lumens and fat stay background).
    """
    from scipy import ndimage
    from skimage.filters import threshold_otsu
    from skimage.morphology import remove_small_holes, remove_small_objects

    sat = saturation(rgb)
    if smooth > 1:
        sat = ndimage.median_filter(sat, size=smooth)
    if float(sat.max() - sat.min()) < 1e-6:
        thr = SATURATION_BAND[0]
    else:
        thr = float(threshold_otsu(sat))
    thr = min(max(thr, SATURATION_BAND[0]), SATURATION_BAND[1])
    mask = sat > thr
    area = mask.size
    if mask.any():
        mask = remove_small_objects(mask, max_size=max(1, int(min_speck_frac * area)))
        mask = remove_small_holes(mask, max_size=max(1, int(max_hole_frac * area)))
    return mask
