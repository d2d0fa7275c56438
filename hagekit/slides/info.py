"""What preparing a section needs from its image: size, a whole-file check, a thumbnail, mpp.

H&E images of ST sections are large (her2st: ~9,300 x 9,900 px JPEGs; HEST: pyramidal
TIFFs), so nothing here decodes a full-resolution image: pyramids give their smallest level,
JPEGs decode at 1/8 scale (DCT scaling), through the same readers as slide tiling
(:mod:`hagekit.slides.reader`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hagekit.slides.reader import open_slide, pil_image_module

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = ["ImageInfo", "THUMBNAIL_MAX_SIDE", "open_image_info", "thumbnail_from_array"]

#: Longest side of the ``lowres`` thumbnail stored in each section (scanpy uses ~600 px).
THUMBNAIL_MAX_SIDE = 600


@dataclass(frozen=True)
class ImageInfo:
    """Size (level-0 px), a ``lowres`` thumbnail, its scale (thumbnail px / full px) and mpp."""

    path: Path
    width: int
    height: int
    thumbnail: np.ndarray
    thumbnail_scale: float
    mpp: float | None = None


def open_image_info(path: Path | str, *, max_side: int = THUMBNAIL_MAX_SIDE) -> ImageInfo:
    """Check that an image file is whole and readable; return its size, thumbnail and mpp.

    Raises :class:`~hagekit.errors.DataError` for a missing, empty, truncated or foreign file.
    """
    with open_slide(path, decode_side=max_side) as reader:
        width, height = reader.dimensions
        thumb, scale = reader.thumbnail(max_side)
        return ImageInfo(Path(path), int(width), int(height), thumb, float(scale), reader.mpp)


def thumbnail_from_array(image: np.ndarray | PILImage.Image, *, max_side: int = THUMBNAIL_MAX_SIDE) -> tuple[np.ndarray, float]:
    """A ``lowres`` thumbnail (H, W, 3 uint8) of an in-memory image and its scale factor."""
    Image = pil_image_module()
    im = image if not isinstance(image, np.ndarray) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    width = im.size[0]
    thumb = im.convert("RGB")
    thumb.thumbnail((max_side, max_side))
    arr = np.asarray(thumb, dtype=np.uint8)
    return arr, arr.shape[1] / width
