"""Opening section images cheaply: size, truncation check, thumbnail, pixel size metadata.

H&E images of ST sections are large (her2st: ~9,300 x 9,900 px JPEGs; HEST: pyramidal
TIFFs). Preparing a section needs only the size, a proof the file is whole and a small
``lowres`` thumbnail, so nothing here decodes a full-resolution image.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hagekit.errors import DataError, at

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = [
    "ImageInfo",
    "THUMBNAIL_MAX_SIDE",
    "open_image_info",
    "check_centres_inside",
    "thumbnail_from_array",
    "pil_image_module",
]

log = logging.getLogger(__name__)

#: Longest side of the ``lowres`` thumbnail stored in each section (scanpy uses ~600 px).
THUMBNAIL_MAX_SIDE = 600

#: Large enough for any whole-slide JPEG/PNG we expect (PIL's default warns at ~89 Mpx).
MAX_IMAGE_PIXELS = 2_000_000_000

_TIFF_SUFFIXES = {".tif", ".tiff", ".svs", ".ndpi", ".scn", ".mrxs", ".vms", ".bif"}


@dataclass(frozen=True)
class ImageInfo:
    """Size (px), a ``lowres`` thumbnail and its scale (thumbnail px / full px) of an image."""

    path: Path
    width: int
    height: int
    thumbnail: np.ndarray
    thumbnail_scale: float
    mpp: float | None = None


def pil_image_module():
    """PIL's ``Image`` module with the decompression-bomb limit raised for section images."""
    from PIL import Image

    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    return Image


def open_image_info(path: Path | str, *, max_side: int = THUMBNAIL_MAX_SIDE) -> ImageInfo:
    """Check that an image file is whole and readable; return its size and a thumbnail.

    JPEGs are checked for the end-of-image marker and thumbnailed in draft mode (a 1/8
    scale decode), so a 10k x 10k JPEG costs well under a second. TIFF/SVS go through
    OpenSlide (pyramids), falling back to tifffile.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(at(path, "image file not found"))
    if path.stat().st_size == 0:
        raise DataError(at(path, "image file is empty"))
    if path.suffix.lower() in _TIFF_SUFFIXES:
        return _open_slide_info(path, max_side=max_side)
    return _open_pil_info(path, max_side=max_side)


def _open_pil_info(path: Path, *, max_side: int) -> ImageInfo:
    Image = pil_image_module()
    from PIL import UnidentifiedImageError

    try:
        with Image.open(path) as im:
            fmt = im.format
            width, height = im.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        what = "truncated image" if "runcated" in str(exc) else "not a readable image"
        raise DataError(at(path, f"{what} ({exc})")) from None
    if fmt == "JPEG":
        _check_jpeg_end(path)
    try:
        with Image.open(path) as im:
            if fmt == "JPEG":  # decode at 1/8 scale: enough for a thumbnail and a whole-file read
                im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            im.load()
            thumb = im.convert("RGB")
            thumb.thumbnail((max_side, max_side))
            arr = np.asarray(thumb, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(at(path, f"truncated or unreadable image ({exc})")) from None
    scale = arr.shape[1] / width
    return ImageInfo(path=path, width=int(width), height=int(height), thumbnail=arr, thumbnail_scale=float(scale))


def _check_jpeg_end(path: Path) -> None:
    """Raise if a JPEG lacks its end-of-image marker (FF D9) near the end (a truncated download)."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        fh.seek(max(0, size - 4096))
        tail = fh.read()
    if b"\xff\xd9" not in tail.rstrip(b"\x00\r\n \t"):
        raise DataError(at(path, "truncated JPEG (no end-of-image marker); download it again"))


def _open_slide_info(path: Path, *, max_side: int) -> ImageInfo:
    try:
        import openslide
    except ImportError:  # pragma: no cover - openslide-bin is a dependency
        openslide = None  # type: ignore[assignment]
    if openslide is not None:
        try:
            slide = openslide.OpenSlide(str(path))
        except Exception as exc:  # openslide raises several types for bad files
            slide = None
            err = exc
        if slide is not None:
            try:
                width, height = slide.dimensions
                thumb = slide.get_thumbnail((max_side, max_side)).convert("RGB")
                arr = np.asarray(thumb, dtype=np.uint8)
                mpp = _float_or_none(slide.properties.get("openslide.mpp-x"))
            except Exception as exc:
                raise DataError(at(path, f"truncated or unreadable slide ({exc})")) from None
            finally:
                slide.close()
            return ImageInfo(path, int(width), int(height), arr, arr.shape[1] / width, mpp)
        log.debug("%s: OpenSlide failed (%s); trying tifffile", path, err)
    return _open_tifffile_info(path, max_side=max_side)


def _open_tifffile_info(path: Path, *, max_side: int) -> ImageInfo:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            levels = list(series.levels) if hasattr(series, "levels") else [series]
            shape = levels[0].shape
            height, width = _hw(shape, levels[0].axes)
            small = levels[-1]
            arr = small.asarray()
            mpp = _tiff_mpp(tif.pages[0])
    except Exception as exc:  # tifffile raises many types for truncated files
        raise DataError(at(path, f"truncated or unreadable TIFF ({exc})")) from None
    arr = _to_rgb_uint8(arr, small.axes)
    Image = pil_image_module()
    thumb = Image.fromarray(arr)
    thumb.thumbnail((max_side, max_side))
    out = np.asarray(thumb, dtype=np.uint8)
    return ImageInfo(path, int(width), int(height), out, out.shape[1] / width, mpp)


def _hw(shape: tuple[int, ...], axes: str) -> tuple[int, int]:
    return int(shape[axes.index("Y")]), int(shape[axes.index("X")])


def _to_rgb_uint8(arr: np.ndarray, axes: str) -> np.ndarray:
    if "S" in axes and axes.index("S") == 0:
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        hi = float(arr.max()) or 1.0
        arr = (arr.astype(np.float32) / hi * 255).clip(0, 255).astype(np.uint8)
    return arr


def _tiff_mpp(page) -> float | None:
    """Microns per pixel from TIFF resolution tags (centimetre or inch units), if present."""
    try:
        unit = page.tags.get("ResolutionUnit")
        xres = page.tags.get("XResolution")
        if unit is None or xres is None:
            return None
        num, den = xres.value
        px_per_unit = num / den if den else 0
        if px_per_unit <= 0:
            return None
        unit_v = int(unit.value)
        if unit_v == 3:  # centimetre
            return 1e4 / px_per_unit
        if unit_v == 2:  # inch
            return 25400 / px_per_unit
    except Exception:  # metadata is optional
        return None
    return None


def _float_or_none(value: object) -> float | None:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) and out > 0 else None


def check_centres_inside(spatial: np.ndarray, width: int, height: int, *, source: Path | str) -> None:
    """Raise if any spot centre (x, y in full-resolution px) falls outside the image."""
    xy = np.asarray(spatial, dtype=np.float64)
    bad = (xy[:, 0] < 0) | (xy[:, 1] < 0) | (xy[:, 0] >= width) | (xy[:, 1] >= height) | ~np.isfinite(xy).all(1)
    n_bad = int(bad.sum())
    if n_bad:
        raise DataError(
            at(source, f"{n_bad} of {len(xy)} spot centres lie outside the {width} x {height} px image (wrong image or coordinates?)")
        )


def thumbnail_from_array(image: np.ndarray | PILImage.Image, *, max_side: int = THUMBNAIL_MAX_SIDE) -> tuple[np.ndarray, float]:
    """A ``lowres`` thumbnail (H, W, 3 uint8) of an in-memory image and its scale factor."""
    Image = pil_image_module()
    im = image if not isinstance(image, np.ndarray) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    width = im.size[0]
    thumb = im.convert("RGB")
    thumb.thumbnail((max_side, max_side))
    arr = np.asarray(thumb, dtype=np.uint8)
    return arr, arr.shape[1] / width
