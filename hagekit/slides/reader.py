"""The one image layer for ST section images and whole slides.

:func:`open_slide` opens any image: OpenSlide first (SVS, pyramidal TIFF, NDPI, MRXS, ...),
then tifffile for TIFF-family files OpenSlide cannot read, PIL for plain images (JPEG, PNG).
Every reader returns RGB uint8 regions in level-0 coordinates, white outside the image.
Microns per pixel come from one reader, :func:`mpp_from_properties` (``openslide.mpp-x``, or a
plausible TIFF/PNG/JPEG resolution); ``mpp=`` overrides it. Missing, empty, truncated or
corrupt files raise :class:`DataError` naming the file.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hagekit.errors import DataError, at

__all__ = [
    "open_slide",
    "mpp_from_properties",
    "SlideReader",
    "OpenSlideReader",
    "ImageReader",
    "pil_image_module",
    "check_declared_size",
    "MAX_IMAGE_PIXELS",
    "SLIDE_SUFFIXES",
    "IMAGE_SUFFIXES",
]

log = logging.getLogger(__name__)

#: Suffixes OpenSlide reads (those it cannot open are tried with tifffile).
SLIDE_SUFFIXES = {".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".vms", ".vmu", ".scn", ".bif", ".svslide"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
#: Plausible µm per pixel for an explicit ``openslide.mpp-x``.
_MPP_RANGE = (0.05, 50.0)
#: Resolution tags (TIFF, PNG pHYs, JPEG dpi) coarser than this are screen defaults (72-300
#: dpi), not a scan: at most ~5 µm/px (>= 5,000 dpi) is believed.
_MAX_TAG_MPP = 25400.0 / 5000.0
#: Most pixels an image decoded whole into memory (JPEG/PNG through PIL, a flat TIFF level
#: through tifffile) may declare: 1.5 Gpx (e.g. 40,000 x 37,500; 4.5 GB as RGB). Real section
#: images fit: her2st JPEGs are ~92 Mpx, full-resolution Visium images at most ~30,000 px a side
#: (0.9 Gpx). Larger slides are pyramidal TIFF/SVS files read tile by tile through OpenSlide,
#: which this limit does not touch. A larger declared size is refused before decoding (a
#: few-hundred-byte PNG can declare 60,000 x 60,000 px: a 10.8 GB decompression bomb).
MAX_IMAGE_PIXELS = 1_500_000_000


def pil_image_module():
    """PIL's ``Image`` module with its decompression-bomb limit set to :data:`MAX_IMAGE_PIXELS`
    (PIL refuses twice that; :func:`check_declared_size` refuses more before any decode)."""
    from PIL import Image

    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    return Image


def check_declared_size(path: Path, width: int, height: int) -> None:
    """Refuse, before decoding, an in-memory image larger than :data:`MAX_IMAGE_PIXELS`."""
    if int(width) * int(height) > MAX_IMAGE_PIXELS:
        raise DataError(at(path, _too_large(f"{width:,} x {height:,} px", int(width) * int(height))))


def _too_large(declared: str, pixels: int) -> str:
    return (f"declares {declared} ({pixels / 1e9:.1f} Gpx), more than the {MAX_IMAGE_PIXELS / 1e9:.1f} Gpx an image "
            "decoded whole may have (decompression-bomb limit); a pyramidal TIFF is read tile by tile "
            "(vips tiffsave --tile --pyramid)")


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


def _plausible_mpp(value: float | None, high: float = _MPP_RANGE[1]) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return value if _MPP_RANGE[0] <= value <= high else None


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
            raise DataError(at(self.path, f"truncated or unreadable slide file ({exc})")) from None
        self.level_dimensions = dims  # type: ignore[assignment]
        self.level_downsamples = downs
        self.properties = props
        self.mpp = float(mpp) if mpp is not None else mpp_from_properties(props)
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


def mpp_from_properties(props: Mapping[str, object]) -> float | None:
    """Microns per pixel from image metadata in OpenSlide's property names, if plausible.

    ``openslide.mpp-x`` (and -y) when present (0.05-50 µm/px), else a resolution tag
    ``tiff.XResolution`` in ``tiff.ResolutionUnit`` ``centimeter`` or ``inch`` (tifffile and
    PIL metadata are mapped to these names), believed only up to ~5 µm/px.
    """
    try:
        mx = props.get("openslide.mpp-x")
        my = props.get("openslide.mpp-y")
        if mx:
            values = [float(mx)] + ([float(my)] if my else [])  # type: ignore[arg-type]
            return _plausible_mpp(sum(values) / len(values))
        unit = str(props.get("tiff.ResolutionUnit", "")).lower()
        res = props.get("tiff.XResolution")
        if res and unit in ("centimeter", "inch"):
            per_um = float(res) / (1e4 if unit == "centimeter" else 25400.0)  # type: ignore[arg-type]
            return _plausible_mpp(1.0 / per_um, _MAX_TAG_MPP) if per_um > 0 else None
    except (TypeError, ValueError, ZeroDivisionError):
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
    """A plain image (JPEG, PNG, flat or pyramidal TIFF) decoded once into memory, optionally reduced.

    ``reduce`` decodes at 1/reduce scale (JPEG DCT scaling, or a TIFF pyramid level: cheap,
    1/reduce^2 of the memory); level 0 stays the full-resolution frame, so coordinates never
    change. ``decode_side`` instead picks the largest power-of-two reduction (at most 8) that
    keeps the longer side at least ``decode_side`` px (a cheap whole-file read for thumbnails).
    """

    def __init__(self, path: Path | str, *, mpp: float | None = None, reduce: int = 1, decode_side: int | None = None) -> None:
        self.path = Path(path)
        tiff = self.path.suffix.lower() in SLIDE_SUFFIXES
        arr, (full_w, full_h), props = (_decode_tiff if tiff else _decode_pil)(self.path, reduce, decode_side)
        self.array = np.ascontiguousarray(arr)
        self.scale_x = self.array.shape[1] / full_w  # array px per level-0 px
        self.scale_y = self.array.shape[0] / full_h
        self.level_dimensions = [(int(full_w), int(full_h))]
        self.level_downsamples = [1.0]
        self.properties = props
        self.mpp = float(mpp) if mpp is not None else mpp_from_properties(props)
        self.magnification = None

    def read_region(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        if level != 0:
            raise DataError(at(self.path, f"plain images have one level (asked for level {level})"))
        if self.scale_x == 1.0 and self.scale_y == 1.0:
            return crop_white(self.array, int(x), int(y), int(width), int(height))
        from PIL import Image

        x0, y0 = x * self.scale_x, y * self.scale_y
        w, h = width * self.scale_x, height * self.scale_y
        ix, iy = math.floor(x0), math.floor(y0)
        buf = crop_white(self.array, ix, iy, math.ceil(x0 + w) - ix + 1, math.ceil(y0 + h) - iy + 1)
        box = (x0 - ix, y0 - iy, x0 - ix + w, y0 - iy + h)
        return np.asarray(Image.fromarray(buf).resize((int(width), int(height)), Image.Resampling.BILINEAR, box=box))

    def thumbnail(self, max_side: int = 2048) -> tuple[np.ndarray, float]:
        im = pil_image_module().fromarray(self.array)
        im.thumbnail((max_side, max_side))
        arr = np.asarray(im)
        return arr, arr.shape[1] / self.dimensions[0]


def _pick_reduce(width: int, height: int, reduce: int, decode_side: int | None) -> int:
    if decode_side is None:
        return max(1, int(reduce))
    r = 1
    while r * 2 <= 8 and max(width, height) / (r * 2) >= decode_side:
        r *= 2
    return r


def _decode_pil(path: Path, reduce: int, decode_side: int | None) -> tuple[np.ndarray, tuple[int, int], dict[str, object]]:
    """RGB array (reduced), level-0 (width, height) and resolution metadata of a PIL image."""
    Image = pil_image_module()
    from PIL import UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # the size is checked just below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                fmt = im.format
                full_w, full_h = im.size
    except Image.DecompressionBombError as exc:  # PIL's own check (twice its limit) came first
        pixels = int(m.group(1)) if (m := re.search(r"\((\d+) pixels\)", str(exc))) else 0
        raise DataError(at(path, _too_large(f"{pixels:,} px", pixels))) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        what = "truncated image" if "runcated" in str(exc) else "not a readable image"
        raise DataError(at(path, f"{what} ({exc})")) from None
    check_declared_size(path, full_w, full_h)
    if fmt == "JPEG":
        _check_jpeg_end(path)
    r = _pick_reduce(full_w, full_h, reduce, decode_side)
    try:
        with Image.open(path) as im:
            if r > 1 and fmt == "JPEG":  # DCT scaling: decodes 1/r of each side directly
                im.draft("RGB", (max(1, full_w // r), max(1, full_h // r)))
            im.load()
            if r > 1 and im.size == (full_w, full_h):
                im = im.reduce(r)
            arr = np.asarray(im.convert("RGB") if im.mode != "RGB" else im)
            dpi = im.info.get("dpi")
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(at(path, f"truncated or unreadable image ({exc})")) from None
    props: dict[str, object] = {}
    if isinstance(dpi, tuple) and dpi:
        props = {"tiff.ResolutionUnit": "inch", "tiff.XResolution": dpi[0]}
    return arr, (int(full_w), int(full_h)), props


def _check_jpeg_end(path: Path) -> None:
    """Raise if a JPEG lacks its end-of-image marker (FF D9) near the end (a truncated download)."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        fh.seek(max(0, size - 4096))
        tail = fh.read()
    if b"\xff\xd9" not in tail.rstrip(b"\x00\r\n \t"):
        raise DataError(at(path, "truncated JPEG (no end-of-image marker); download it again"))


def _decode_tiff(path: Path, reduce: int, decode_side: int | None) -> tuple[np.ndarray, tuple[int, int], dict[str, object]]:
    """A TIFF-family file OpenSlide cannot read, through tifffile: the pyramid level nearest
    1/reduce (then reduced further in memory), level-0 size and resolution tags."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            levels = list(series.levels) if hasattr(series, "levels") else [series]
            height, width = _hw(levels[0].shape, levels[0].axes)
            r = _pick_reduce(width, height, reduce, decode_side)
            fine_enough = [lv for lv in levels if _hw(lv.shape, lv.axes)[1] * r >= width]  # downsample <= r
            level = min(fine_enough, key=lambda lv: _hw(lv.shape, lv.axes)[1], default=levels[0])
            check_declared_size(path, *reversed(_hw(level.shape, level.axes)))
            arr = _to_rgb_uint8(level.asarray(), level.axes)
            props = _tiff_properties(tif.pages[0])
    except (MemoryError, DataError):  # out of memory (stop the run) or a size refused above: not a broken file
        raise
    except Exception as exc:  # tifffile raises many types for truncated or foreign files
        raise DataError(at(path, f"truncated or unreadable slide file ({type(exc).__name__}: {exc})")) from None
    left = r * arr.shape[1] / width  # the reduction still to apply in memory
    if left >= 2:
        arr = np.asarray(pil_image_module().fromarray(arr).reduce(int(left)))
    return arr, (width, height), props


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


def _tiff_properties(page) -> dict[str, object]:
    """A TIFF page's resolution tags in OpenSlide's property names (for :func:`mpp_from_properties`)."""
    unit, xres = page.tags.get("ResolutionUnit"), page.tags.get("XResolution")
    if unit is None or xres is None:
        return {}
    num, den = xres.value
    name = {2: "inch", 3: "centimeter"}.get(int(unit.value), "")
    return {"tiff.ResolutionUnit": name, "tiff.XResolution": num / den if den else 0.0}


def crop_white(arr: np.ndarray, x: int, y: int, width: int, height: int) -> np.ndarray:
    """``arr[y:y+height, x:x+width]`` with white (255) where the box leaves the array."""
    h, w = arr.shape[:2]
    out = np.full((height, width, 3), 255, dtype=np.uint8)
    sx0, sy0 = max(0, x), max(0, y)
    sx1, sy1 = min(w, x + width), min(h, y + height)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = arr[sy0:sy1, sx0:sx1, :3]
    return out


def open_slide(
    path: Path | str, *, mpp: float | None = None, reduce: int = 1, decode_side: int | None = None
) -> SlideReader:
    """Open a slide or section image: OpenSlide when it knows the format, else tifffile
    (TIFF-family suffixes) or PIL (plain images), decoded into memory.

    ``mpp`` overrides the file's microns per pixel; ``reduce`` and ``decode_side`` only apply
    to in-memory images (see :class:`ImageReader`).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(at(path, "image file not found"))
    if path.stat().st_size == 0:
        raise DataError(at(path, "image file is empty"))
    if mpp is not None and not (mpp > 0 and math.isfinite(mpp)):
        raise DataError(at(path, f"--mpp must be a positive number of µm per pixel, got {mpp}"))
    import openslide

    try:
        fmt = openslide.OpenSlide.detect_format(str(path))
    except Exception:  # detect_format raises on unreadable files with some versions
        fmt = None
    if fmt is not None:
        return OpenSlideReader(path, mpp=mpp)
    return ImageReader(path, mpp=mpp, reduce=reduce, decode_side=decode_side)
