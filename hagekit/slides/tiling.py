"""A grid of tiles over a slide's tissue at a target mpp (or magnification), in level-0 px.

Defaults follow CLAM and TRIDENT: 256 px tiles at 0.5 µm/px (20x), no overlap, keeping tiles
whose tissue fraction (from the thumbnail mask) is at least ``min_tissue``. Coordinates are
top-left corners at level 0 and can be written to / read from CLAM and TRIDENT coords h5.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hagekit.errors import ConfigError, DataError, at
from hagekit.slides.reader import SlideReader

__all__ = ["TileGrid", "plan_grid", "tile_tissue_fraction", "read_coords", "find_coords_file", "target_mpp_from"]

log = logging.getLogger(__name__)


@dataclass
class TileGrid:
    """Tiles of one slide: ``coords`` (N, 2) level-0 top-left x, y; each covers
    ``patch_size_level0`` level-0 px and is read at ``read_level`` (``read_size`` px) then
    resampled to ``patch_size`` px (the target-mpp tile size)."""

    coords: np.ndarray
    patch_size: int
    patch_size_level0: int
    read_level: int
    read_size: int
    level0_mpp: float
    target_mpp: float
    overlap: int = 0
    tissue_fraction: np.ndarray | None = None

    def __len__(self) -> int:
        return int(len(self.coords))

    def coords_attrs(self, name: str, reader: SlideReader | None = None, *, savetodir: Path | str | None = None) -> dict[str, Any]:
        """``coords`` attributes meaning what TRIDENT and CLAM read.

        TRIDENT: ``patch_size`` px at ``target_magnification`` (= ``patch_size_level0`` level-0 px).
        CLAM reads ``patch_size`` px at ``patch_level``: ``patch_level`` is the pyramid level the
        tiles were read at, so the two agree whenever that level matches the target resolution
        (``clam_consistent``); otherwise :mod:`hagekit.io.clam` writes CLAM's own meaning.
        """
        level0_mag = 10.0 / self.level0_mpp
        target_mag = 10.0 / self.target_mpp
        attrs: dict[str, Any] = {
            # TRIDENT
            "patch_size": int(self.patch_size),
            "patch_size_level0": int(self.patch_size_level0),
            "level0_magnification": _round_mag(level0_mag),
            "target_magnification": _round_mag(target_mag),
            "overlap": int(self.overlap),
            "name": name,
            "savetodir": str(savetodir) if savetodir is not None else "",
            # CLAM
            "patch_level": int(self.read_level),
            # hagekit
            "level0_mpp": float(self.level0_mpp),
            "target_mpp": float(self.target_mpp),
            "read_size": int(self.read_size),
            "clam_consistent": bool(self.read_size == self.patch_size),
        }
        if reader is not None:
            w, h = reader.dimensions
            attrs["level0_width"], attrs["level0_height"] = int(w), int(h)
            ds = float(reader.level_downsamples[self.read_level])
            lw, lh = reader.level_dimensions[self.read_level]
            attrs["downsample"] = [ds, ds]
            attrs["level_dim"] = [int(lw), int(lh)]
            attrs["downsampled_level_dim"] = [int(lw), int(lh)]
        return attrs


def _round_mag(mag: float) -> float:
    """Magnifications near an integer (19.96x) are reported as that integer (20x)."""
    return float(round(mag)) if abs(mag - round(mag)) < 0.05 * max(1.0, mag) else float(mag)


def target_mpp_from(target_mpp: float | None, magnification: float | None) -> float:
    """The tile mpp from ``--target-mpp`` or ``--magnification`` (10 / magnification)."""
    if magnification is not None:
        if not (magnification > 0 and math.isfinite(magnification)):
            raise ConfigError(f"--magnification: must be positive, got {magnification}")
        return 10.0 / float(magnification)
    if target_mpp is None:
        return 0.5
    if not (target_mpp > 0 and math.isfinite(target_mpp)):
        raise ConfigError(f"--target-mpp: must be positive µm per pixel, got {target_mpp}")
    return float(target_mpp)


def tile_tissue_fraction(
    coords: np.ndarray, size_level0: int, mask: np.ndarray, mask_scale: float
) -> np.ndarray:
    """Fraction of each tile's area covered by ``mask`` (mask px = level-0 px * mask_scale)."""
    if len(coords) == 0:
        return np.zeros(0, dtype=np.float32)
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.float64)
    integral[1:, 1:] = np.cumsum(np.cumsum(mask.astype(np.float64), axis=0), axis=1)
    h, w = mask.shape
    x0 = np.clip(np.floor(coords[:, 0] * mask_scale).astype(np.int64), 0, w)
    y0 = np.clip(np.floor(coords[:, 1] * mask_scale).astype(np.int64), 0, h)
    x1 = np.clip(np.ceil((coords[:, 0] + size_level0) * mask_scale).astype(np.int64), 0, w)
    y1 = np.clip(np.ceil((coords[:, 1] + size_level0) * mask_scale).astype(np.int64), 0, h)
    x1 = np.maximum(x1, np.minimum(x0 + 1, w))
    y1 = np.maximum(y1, np.minimum(y0 + 1, h))
    total = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    area = np.maximum((x1 - x0) * (y1 - y0), 1)
    return (total / area).astype(np.float32)


def _read_geometry(reader: SlideReader, patch_size_level0: int, tile_size: int) -> tuple[int, int]:
    level = reader.best_level(patch_size_level0 / tile_size)
    read_size = max(1, round(patch_size_level0 / reader.level_downsamples[level]))
    return level, read_size


def plan_grid(
    reader: SlideReader,
    *,
    target_mpp: float = 0.5,
    tile_size: int = 256,
    overlap: int = 0,
    mask: np.ndarray | None = None,
    mask_scale: float | None = None,
    min_tissue: float = 0.25,
) -> TileGrid:
    """Tiles of ``tile_size`` px at ``target_mpp`` over the slide, kept where tissue >= ``min_tissue``.

    Needs ``reader.mpp`` (the slide's level-0 µm/px); raises :class:`DataError` without it.
    """
    if reader.mpp is None:
        raise DataError(at(reader.path, "no microns-per-pixel metadata; pass --mpp (e.g. --mpp 0.25 for a 40x scan)"))
    if tile_size < 8:
        raise ConfigError(f"--tile-size: must be at least 8 px, got {tile_size}")
    if not 0 <= overlap < tile_size:
        raise ConfigError(f"--overlap: must be in [0, {tile_size}), got {overlap}")
    if not 0.0 <= min_tissue <= 1.0:
        raise ConfigError(f"--min-tissue: must be a fraction in [0, 1], got {min_tissue}")
    ds = target_mpp / reader.mpp
    if abs(ds - round(ds)) < 0.01 * ds and round(ds) >= 1:  # 0.499 -> 0.5 µm/px is 1x, as TRIDENT
        ds = float(round(ds))
    size0 = max(1, round(tile_size * ds))
    step0 = max(1, round((tile_size - overlap) * ds))
    w, h = reader.dimensions
    xs = np.arange(0, max(w - size0, -1) + 1, step0)
    ys = np.arange(0, max(h - size0, -1) + 1, step0)
    gx, gy = np.meshgrid(xs, ys)  # row-major: y then x, deterministic order
    coords = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.int64)
    frac = None
    if mask is not None:
        if mask_scale is None:
            mask_scale = mask.shape[1] / w
        frac = tile_tissue_fraction(coords, size0, mask, mask_scale)
        keep = frac >= min_tissue if min_tissue > 0 else frac > 0
        coords, frac = coords[keep], frac[keep]
    level, read_size = _read_geometry(reader, size0, tile_size)
    return TileGrid(
        coords=coords,
        patch_size=int(tile_size),
        patch_size_level0=int(size0),
        read_level=level,
        read_size=read_size,
        level0_mpp=float(reader.mpp),
        target_mpp=float(target_mpp),
        overlap=int(overlap),
        tissue_fraction=frac,
    )


def find_coords_file(coords_dir: Path, stem: str) -> Path:
    """``<dir>/<stem>.h5`` or TRIDENT's ``<dir>/[patches/]<stem>_patches.h5``."""
    coords_dir = Path(coords_dir)
    for cand in (
        coords_dir / f"{stem}.h5",
        coords_dir / f"{stem}_patches.h5",
        coords_dir / "patches" / f"{stem}.h5",
        coords_dir / "patches" / f"{stem}_patches.h5",
    ):
        if cand.is_file():
            return cand
    raise DataError(at(coords_dir, f"no coords file for slide '{stem}' ({stem}.h5 or {stem}_patches.h5)"))


def _coords_tile_size(path: Path, attrs: dict[str, Any], size0: int, tile_size: int | None) -> int:
    """The tile side a coords file asks for (its ``patch_size``; ``patch_size_level0`` without
    one); an explicit ``tile_size`` that disagrees wins, with a warning saying what it changes."""
    asked = int(attrs["patch_size"]) if "patch_size" in attrs else int(size0)
    if tile_size is None or int(tile_size) == asked:
        return asked
    log.warning(
        "%s: --tile-size %d disagrees with the coords file's patch_size %d; each %d level-0 px region is resized to "
        "%d px instead of %d (leave --tile-size out to follow the file)",
        path.name, tile_size, asked, size0, tile_size, asked,
    )
    return int(tile_size)


def read_coords(path: Path, reader: SlideReader, *, tile_size: int | None = None) -> TileGrid:
    """A :class:`TileGrid` from a CLAM or TRIDENT coords h5 (``coords`` + attributes).

    TRIDENT gives ``patch_size`` px at ``target_magnification`` and ``patch_size_level0``; CLAM
    gives ``patch_size`` at ``patch_level`` (level-0 size = patch_size x that level's
    downsample). Tiles are the file's ``patch_size`` unless ``tile_size`` says otherwise (warned).
    """
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as h5:
            if "coords" not in h5:
                raise DataError(at(path, f"no 'coords' dataset (found: {', '.join(h5.keys())})"))
            ds = h5["coords"]
            coords = np.asarray(ds[()])
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in ds.attrs.items()}
    except OSError as exc:
        raise DataError(at(path, f"not a readable h5 file ({exc})")) from None
    if coords.ndim == 3 and coords.shape[0] == 1:
        coords = coords[0]
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise DataError(at(path, f"coords must be (N, 2), got {coords.shape}"))
    if "patch_size" not in attrs and "patch_size_level0" not in attrs:
        raise DataError(at(path, "coords lack a 'patch_size' or 'patch_size_level0' attribute (CLAM/TRIDENT)"))
    if "patch_size_level0" in attrs:
        size0 = int(attrs["patch_size_level0"])
    else:
        level = int(attrs.get("patch_level", 0))
        if level >= reader.level_count:
            raise DataError(at(path, f"patch_level {level} but the slide has {reader.level_count} levels"))
        size0 = round(int(attrs["patch_size"]) * reader.level_downsamples[level])
    out_size = _coords_tile_size(path, attrs, size0, tile_size)
    level0_mpp = reader.mpp
    if level0_mpp is None:
        mag = attrs.get("level0_magnification")
        level0_mpp = 10.0 / float(mag) if mag else None
    if level0_mpp is None:
        raise DataError(at(reader.path, "no microns-per-pixel metadata; pass --mpp"))
    level, read_size = _read_geometry(reader, size0, out_size)
    return TileGrid(
        coords=coords.astype(np.int64),
        patch_size=out_size,
        patch_size_level0=size0,
        read_level=level,
        read_size=read_size,
        level0_mpp=float(level0_mpp),
        target_mpp=float(level0_mpp) * size0 / out_size,
        overlap=int(attrs.get("overlap", 0)),
    )
