"""The image layer for ST section images and whole slides: one reader (OpenSlide, then
tifffile/PIL), one mpp reader, one bounds check; plus tissue mask, tiling, spot-centred
patches and preview thumbnails."""

from __future__ import annotations

from hagekit.slides.info import ImageInfo, open_image_info, thumbnail_from_array
from hagekit.slides.patches import SpotPatcher, check_spots_inside, crop_patch, patch_size_px
from hagekit.slides.reader import (
    ImageReader,
    OpenSlideReader,
    SlideReader,
    mpp_from_properties,
    open_slide,
)
from hagekit.slides.tiling import TileGrid, find_coords_file, plan_grid, read_coords
from hagekit.slides.tissue import tissue_mask

__all__ = [
    "SlideReader",
    "OpenSlideReader",
    "ImageReader",
    "open_slide",
    "mpp_from_properties",
    "ImageInfo",
    "open_image_info",
    "thumbnail_from_array",
    "tissue_mask",
    "TileGrid",
    "plan_grid",
    "read_coords",
    "find_coords_file",
    "SpotPatcher",
    "crop_patch",
    "patch_size_px",
    "check_spots_inside",
]
