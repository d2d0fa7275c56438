"""Slide readers: OpenSlide for pyramidal formats (SVS, TIFF, NDPI, MRXS, ...), PIL for plain
images. Both return RGB uint8 regions in level-0 coordinates, white outside the slide.

Microns per pixel come from the file (``openslide.mpp-x``, or a plausible TIFF resolution);
``mpp=`` overrides them. Corrupt or truncated files raise :class:`DataError`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from hagekit.errors import DataError, at

__all__ = ["SlideReader", "OpenSlideReader", "ImageReader", "open_slide", "SLIDE_SUFFIXES"]

log = logging.getLogger(__name__)

#: Suffixes OpenSlide reads (plain TIFFs fall back to PIL/tifffile when OpenSlide cannot).
SLIDE_SUFFIXES = {".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".vms", ".vmu", ".scn", ".bif", ".svslide"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
_MPP_RANGE = (0.05, 50.0)


class SlideReader:
    """A slide's geometry and pixels; subclasses implement :meth:`read_region`."""

    path: Path
    level_dimensions: list[tuple[int, int]]
    level_downsamples: list[float]
    mpp: float | None
    magnification: float | None

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 (width, height) in px."""
        return self.level_dimensions[0]

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    def best_level(self, downsample: float) -> int:
        """The coarsest level whose downsample does not exceed ``downsample`` (1 % slack)."""
        best = 0
        for i, ds in enumerate(self.level_downsamples):
            if ds <= downsample * 1.01:
                best = i
        return best

    def read_region(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        """RGB (height, width, 3) uint8 at ``level``, top-left (x, y) in level-0 px."""
        raise NotImplementedError

    def thumbnail(self, max_side: int = 2048) -> tuple[np.ndarray, float]:
        """An RGB thumbnail whose longer side is at most ``max_side``, and its scale (thumb/level-0)."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> SlideReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _plausible_mpp(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return value if _MPP_RANGE[0] <= value <= _MPP_RANGE[1] else None


class OpenSlideReader(SlideReader):
    """A pyramidal slide read through OpenSlide (one handle per process; reopen in workers)."""

    def __init__(self, path: Path | str, *, mpp: float | None = None) -> None:
        import openslide

        self.path = Path(path)
        try:
            self._slide = openslide.OpenSlide(str(self.path))
            dims = [tuple(map(int, d)) for d in self._slide.level_dimensions]
            downs = [float(d) for d in self._slide.level_downsamples]
            props = dict(self._slide.properties)
        except (openslide.OpenSlideError, OSError) as exc:
            raise DataError(at(self.path, f"cannot open slide: truncated or unsupported file ({exc})")) from None
        self.level_dimensions = dims  # type: ignore[assignment]
        self.level_downsamples = downs
        self.properties = props
        self.mpp = float(mpp) if mpp is not None else _mpp_from_properties(props)
        power = props.get("openslide.objective-power")
        try:
            self.magnification = float(power) if power else None
        except ValueError:
            self.magnification = None
        # a cheap read proves the pixel data is there (truncated files pass the header check)
        try:
            self._slide.read_region((0, 0), self.level_count - 1, (1, 1))
        except Exception as exc:  # openslide raises OpenSlideError or lowlevel errors
            raise DataError(at(self.path, f"cannot read slide pixels ({exc})")) from None

    def read_region(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        try:
            region = self._slide.read_region((int(x), int(y)), int(level), (int(width), int(height)))
        except Exception as exc:  # openslide errors are sticky: the handle is unusable after one
            raise DataError(at(self.path, f"cannot read region at ({x}, {y}) level {level} ({exc})")) from None
        return _rgba_to_rgb(np.asarray(region))

    def thumbnail(self, max_side: int = 2048) -> tuple[np.ndarray, float]:
        w, h = self.dimensions
        scale = min(1.0, max_side / max(w, h))
        try:
            thumb = self._slide.get_thumbnail((max(1, round(w * scale)), max(1, round(h * scale))))
        except Exception as exc:  # corrupt tiles
            raise DataError(at(self.path, f"cannot read slide thumbnail ({exc})")) from None
        arr = np.asarray(thumb.convert("RGB"))
        return arr, arr.shape[1] / w

    def close(self) -> None:
        self._slide.close()


def _mpp_from_properties(props: dict[str, str]) -> float | None:
    """``openslide.mpp-x`` (and -y), else a TIFF resolution in cm or inch, if plausible."""
    try:
        mx = props.get("openslide.mpp-x")
        my = props.get("openslide.mpp-y")
        if mx:
            values = [float(mx)] + ([float(my)] if my else [])
            return _plausible_mpp(sum(values) / len(values))
        unit = props.get("tiff.ResolutionUnit", "").lower()
        res = props.get("tiff.XResolution")
        if res and unit in ("centimeter", "inch"):
            per_um = float(res) / (1e4 if unit == "centimeter" else 25400.0)
            return _plausible_mpp(1.0 / per_um) if per_um > 0 else None
    except ValueError:
        return None
    return None


def _rgba_to_rgb(arr: np.ndarray) -> np.ndarray:
    """Composite RGBA (OpenSlide's transparent = outside the scan) on white."""
    if arr.ndim == 3 and arr.shape[2] == 4:
        alpha = arr[:, :, 3:4]
        if alpha.min() == 255:
            return np.ascontiguousarray(arr[:, :, :3])
        a = alpha.astype(np.float32) / 255.0
        return (arr[:, :, :3].astype(np.float32) * a + 255.0 * (1 - a)).round().astype(np.uint8)
    return np.ascontiguousarray(arr[:, :, :3])


class ImageReader(SlideReader):
    """A plain image (JPEG, PNG, flat TIFF) decoded once into memory, optionally reduced.

    ``reduce`` decodes at 1/reduce scale (JPEG DCT scaling: cheap, 1/reduce^2 of the
    memory); level 0 stays the full-resolution frame, so coordinates never change.
    """

    def __init__(self, path: Path | str, *, mpp: float | None = None, reduce: int = 1) -> None:
        from hagekit.data.images import pil_image_module

        Image = pil_image_module()
        from PIL import UnidentifiedImageError

        self.path = Path(path)
        try:
            with Image.open(self.path) as im:
                full_w, full_h = im.size
                if reduce > 1 and im.format == "JPEG":
                    im.draft("RGB", (max(1, full_w // reduce), max(1, full_h // reduce)))
                im.load()
                if reduce > 1 and im.size == (full_w, full_h):
                    im = im.reduce(reduce)
                arr = np.asarray(im.convert("RGB") if im.mode != "RGB" else im)
                dpi = im.info.get("dpi")
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise DataError(at(self.path, f"cannot read image: truncated or unsupported file ({exc})")) from None
        self.array = np.ascontiguousarray(arr)
        self.scale_x = self.array.shape[1] / full_w  # array px per level-0 px
        self.scale_y = self.array.shape[0] / full_h
        self.level_dimensions = [(int(full_w), int(full_h))]
        self.level_downsamples = [1.0]
        self.mpp = float(mpp) if mpp is not None else _mpp_from_dpi(dpi)
        self.magnification = None

    def read_region(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        if level != 0:
            raise DataError(at(self.path, f"plain images have one level (asked for level {level})"))
        if self.scale_x == 1.0 and self.scale_y == 1.0:
            return _crop_white(self.array, int(x), int(y), int(width), int(height))
        from PIL import Image

        x0, y0 = x * self.scale_x, y * self.scale_y
        w, h = width * self.scale_x, height * self.scale_y
        ix, iy = math.floor(x0), math.floor(y0)
        buf = _crop_white(self.array, ix, iy, math.ceil(x0 + w) - ix + 1, math.ceil(y0 + h) - iy + 1)
        box = (x0 - ix, y0 - iy, x0 - ix + w, y0 - iy + h)
        return np.asarray(Image.fromarray(buf).resize((int(width), int(height)), Image.Resampling.BILINEAR, box=box))

    def thumbnail(self, max_side: int = 2048) -> tuple[np.ndarray, float]:
        from PIL import Image

        im = Image.fromarray(self.array)
        im.thumbnail((max_side, max_side))
        arr = np.asarray(im)
        return arr, arr.shape[1] / self.dimensions[0]


def _mpp_from_dpi(dpi: object) -> float | None:
    """A plain image's dpi as mpp, only when plausible for a scan (72/96/300 dpi are not)."""
    try:
        value = float(dpi[0]) if isinstance(dpi, tuple) else None  # type: ignore[index]
    except (TypeError, ValueError):
        return None
    if not value or value < 5000:  # below ~5 µm/px the "dpi" is a screen default, not a scan
        return None
    return _plausible_mpp(25400.0 / value)


def _crop_white(arr: np.ndarray, x: int, y: int, width: int, height: int) -> np.ndarray:
    """``arr[y:y+height, x:x+width]`` with white (255) where the box leaves the array."""
    h, w = arr.shape[:2]
    out = np.full((height, width, 3), 255, dtype=np.uint8)
    sx0, sy0 = max(0, x), max(0, y)
    sx1, sy1 = min(w, x + width), min(h, y + height)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = arr[sy0:sy1, sx0:sx1, :3]
    return out


def open_slide(path: Path | str, *, mpp: float | None = None, reduce: int = 1) -> SlideReader:
    """Open a whole-slide file with OpenSlide, or a plain image with PIL (fallback).

    ``mpp`` overrides the file's microns per pixel; ``reduce`` only applies to plain images.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(at(path, "slide file not found"))
    if path.stat().st_size == 0:
        raise DataError(at(path, "slide file is empty"))
    if mpp is not None and not (mpp > 0 and math.isfinite(mpp)):
        raise DataError(at(path, f"--mpp must be a positive number of µm per pixel, got {mpp}"))
    import openslide

    fmt = None
    try:
        fmt = openslide.OpenSlide.detect_format(str(path))
    except Exception:  # detect_format raises on unreadable files with some versions
        fmt = None
    suffix = path.suffix.lower()
    if fmt is not None:
        return OpenSlideReader(path, mpp=mpp)
    if suffix in SLIDE_SUFFIXES and suffix not in (".tif", ".tiff"):
        raise DataError(at(path, f"cannot open slide: truncated or not a valid {suffix} file"))
    return ImageReader(path, mpp=mpp, reduce=reduce)
