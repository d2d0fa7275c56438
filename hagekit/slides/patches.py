"""Spot-centred patches of a physical size (µm) from a section image, resampled to a size.

A patch of ``patch_um`` microns around each spot centre spans ``patch_um / mpp`` level-0
pixels; it is cut with sub-pixel accuracy and resampled in one step (PIL ``resize`` with a
float box), padded with white where it leaves the image. Plain images are decoded once,
reduced by JPEG DCT scaling when the output is at least 2x smaller than the native patch;
pyramidal files are read per patch through OpenSlide at the best level.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hagekit.errors import DataError, at
from hagekit.slides.reader import ImageReader, OpenSlideReader, SlideReader, open_slide

__all__ = ["MAX_PATCH_UM", "check_patch_um", "patch_size_px", "check_spots_inside", "crop_patch", "SpotPatcher", "choose_reduce"]

log = logging.getLogger(__name__)


#: Largest spot patch side (µm): 2 mm, 18x HEST's 112 µm and 10 legacy-ST spot pitches. A
#: patch is read whole into memory (at 0.25 µm/px, 2 mm is 8,000 px, 192 MB as RGB).
MAX_PATCH_UM = 2000.0


def _patch_um_problem(patch_um: float) -> str | None:
    if not (patch_um > 0 and math.isfinite(patch_um)):
        return f"must be a positive size in µm, got {patch_um}"
    if patch_um > MAX_PATCH_UM:
        return f"{patch_um:g} µm is larger than the {MAX_PATCH_UM:g} µm a spot patch may span"
    return None


def check_patch_um(patch_um: float, option: str = "--patch-um") -> float:
    """Refuse (:class:`ConfigError`) a patch side that is not positive, not finite or above :data:`MAX_PATCH_UM`."""
    from hagekit.errors import ConfigError

    problem = _patch_um_problem(patch_um)
    if problem:
        raise ConfigError(f"{option}: {problem}")
    return float(patch_um)


def patch_size_px(patch_um: float, mpp: float) -> float:
    """Side of a ``patch_um`` µm patch in level-0 pixels at ``mpp`` µm/px."""
    if not (mpp > 0 and math.isfinite(mpp)):
        raise DataError(f"mpp: must be a positive number of µm per pixel, got {mpp}")
    problem = _patch_um_problem(patch_um)
    if problem:
        raise DataError(f"--patch-um: {problem}")
    return float(patch_um) / float(mpp)


def check_spots_inside(
    centres: np.ndarray,
    width: int,
    height: int,
    *,
    source: Path | str,
    barcodes: Sequence[str] | None = None,
) -> None:
    """Raise :class:`DataError` naming how many spot centres (x, y level-0 px) lie outside a
    W x H image (NaN counts as outside): the one bounds check for sections and patches."""
    c = np.asarray(centres, dtype=np.float64)
    bad = ~np.isfinite(c).all(axis=1)
    bad |= (c[:, 0] < 0) | (c[:, 0] >= width) | (c[:, 1] < 0) | (c[:, 1] >= height)
    n_bad = int(bad.sum())
    if n_bad:
        example = ""
        if barcodes is not None:
            i = int(np.flatnonzero(bad)[0])
            example = f", e.g. {barcodes[i]} at ({c[i, 0]:.0f}, {c[i, 1]:.0f})"
        raise DataError(
            at(source, f"{n_bad} of {len(c)} spot centres lie outside the {width} x {height} px image{example}; "
               "check obsm['spatial'] and the image")
        )


def choose_reduce(size_px: float, out_size: int, *, max_reduce: int = 8) -> int:
    """The largest power-of-two decode reduction keeping the patch at >= ``out_size`` px."""
    r = 1
    while r * 2 <= max_reduce and size_px / (r * 2) >= out_size:
        r *= 2
    return r


def crop_patch(
    array: np.ndarray,
    cx: float,
    cy: float,
    size: float,
    out_size: int,
) -> np.ndarray:
    """A (out_size, out_size, 3) uint8 patch of side ``size`` px centred on (cx, cy), white
    outside ``array``. Continuous coordinates: pixel i covers [i, i + 1), so the box is
    [cx - size/2, cx + size/2) as HEST crops it."""
    from PIL import Image

    from hagekit.slides.reader import crop_white

    x0, y0 = cx - size / 2.0, cy - size / 2.0
    ix0, iy0 = math.floor(x0), math.floor(y0)
    ix1, iy1 = math.ceil(x0 + size), math.ceil(y0 + size)
    buf = crop_white(array, ix0, iy0, ix1 - ix0, iy1 - iy0)
    box = (x0 - ix0, y0 - iy0, x0 - ix0 + size, y0 - iy0 + size)
    if buf.shape[0] == out_size and buf.shape[1] == out_size and box[0] == 0 and box[1] == 0:
        return buf
    resample = Image.Resampling.BICUBIC if out_size >= size else Image.Resampling.LANCZOS
    return np.asarray(Image.fromarray(buf).resize((out_size, out_size), resample, box=box))


class SpotPatcher:
    """Cuts spot-centred patches from one section image (decoded once; safe in forked workers).

    ``centres`` are (N, 2) level-0 x, y; ``patch(i)`` returns spot i's (out_size, out_size, 3)
    uint8 patch covering ``patch_um`` microns.
    """

    def __init__(
        self,
        image_path: Path | str,
        centres: np.ndarray,
        *,
        mpp: float,
        patch_um: float,
        out_size: int,
        barcodes: Sequence[str] | None = None,
        reader: SlideReader | None = None,
    ) -> None:
        self.image_path = Path(image_path)
        self.centres = np.asarray(centres, dtype=np.float64)
        self.mpp = float(mpp)
        self.patch_um = float(patch_um)
        self.out_size = int(out_size)
        self.size_px = patch_size_px(patch_um, mpp)
        self.reduce = choose_reduce(self.size_px, self.out_size)
        self._reader = reader if reader is not None else open_slide(self.image_path, mpp=self.mpp, reduce=self.reduce)
        self._pid = os.getpid()
        w, h = self._reader.dimensions
        check_spots_inside(self.centres, w, h, source=self.image_path, barcodes=barcodes)

    @property
    def dimensions(self) -> tuple[int, int]:
        return self._reader.dimensions

    def __len__(self) -> int:
        return len(self.centres)

    def _slide(self) -> SlideReader:
        # OpenSlide handles are per process: reopen in a DataLoader worker
        if isinstance(self._reader, OpenSlideReader) and os.getpid() != self._pid:
            self._reader = OpenSlideReader(self.image_path, mpp=self.mpp)
            self._pid = os.getpid()
        return self._reader

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if isinstance(self._reader, OpenSlideReader):
            state["_reader"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self._reader is None:
            self._reader = OpenSlideReader(self.image_path, mpp=self.mpp)
            self._pid = os.getpid()

    def patch(self, i: int) -> np.ndarray:
        """Spot ``i``'s patch, (out_size, out_size, 3) uint8."""
        cx, cy = self.centres[i]
        reader = self._slide()
        if isinstance(reader, ImageReader):
            sx, sy = reader.scale_x, reader.scale_y
            return crop_patch(reader.array, cx * sx, cy * sy, self.size_px * sx, self.out_size)
        level = reader.best_level(self.size_px / self.out_size)
        ds = reader.level_downsamples[level]
        x0, y0 = cx - self.size_px / 2.0, cy - self.size_px / 2.0
        ix0, iy0 = math.floor(x0), math.floor(y0)
        side = math.ceil((self.size_px + 2) / ds)
        region = reader.read_region(ix0, iy0, level, side, side)
        return crop_patch(
            region,
            (cx - ix0) / ds,
            (cy - iy0) / ds,
            self.size_px / ds,
            self.out_size,
        )

    def close(self) -> None:
        self._reader.close()
