"""Whole-slide features: tissue mask, tile grid (or CLAM/TRIDENT coords), batched encoding.

One ``<out>/<slide_stem>.h5`` per slide in the TRIDENT/CLAM layout (``features``, ``coords``
top-left level-0 px with ``patch_size``, ``patch_size_level0``, ``patch_level``,
``level0_magnification``, ``target_magnification``, ``overlap``, ``name``). Tiles are read by
DataLoader workers (one OpenSlide handle each), so no whole level-0 slide is ever in memory.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hagekit.distributed import parse_shard
from hagekit.errors import ConfigError, DataError, at
from hagekit.extract.common import EncoderSetup, provenance
from hagekit.extract.engine import PRECISIONS, run_encoder
from hagekit.extract.resolution import source_resolution_attrs
from hagekit.extract.runner import EncoderOptions, run_items
from hagekit.extract.summary import ExtractSummary
from hagekit.progress import Reporter, reporter_or_null

__all__ = ["extract_slides", "TileDataset", "collect_slides"]

log = logging.getLogger(__name__)

_THUMB_SIDE = 2048
#: Tile side in px at the target resolution when tiling (CLAM's and TRIDENT's default).
DEFAULT_TILE_SIZE = 256


class TileDataset:
    """Transformed tiles of one slide; OpenSlide handles are reopened once per worker process."""

    def __init__(self, path: Path, grid: Any, transform: Any, *, mpp: float | None, reader: Any = None) -> None:
        self.path = Path(path)
        self.grid = grid
        self.transform = transform
        self.mpp = mpp
        self._reader = reader
        self._pid = os.getpid() if reader is not None else None

    def __len__(self) -> int:
        return len(self.grid)

    def __getstate__(self) -> dict:
        from hagekit.slides.reader import OpenSlideReader

        state = dict(self.__dict__)
        if isinstance(self._reader, OpenSlideReader):
            state["_reader"], state["_pid"] = None, None
        return state

    def _slide(self) -> Any:
        from hagekit.slides.reader import OpenSlideReader, open_slide

        if self._reader is None or (isinstance(self._reader, OpenSlideReader) and self._pid != os.getpid()):
            self._reader = open_slide(self.path, mpp=self.mpp)
            self._pid = os.getpid()
        return self._reader

    def __getitem__(self, i: int) -> Any:
        x, y = self.grid.coords[i]
        g = self.grid
        region = self._slide().read_region(int(x), int(y), g.read_level, g.read_size, g.read_size)
        return self.transform(region)


def collect_slides(slides: Sequence[Path | str] | Path | str) -> list[Path]:
    """Slide files from a folder (sorted; slide and image suffixes) or an explicit list."""
    from hagekit.io.atomic import visible_files
    from hagekit.slides.reader import IMAGE_SUFFIXES, SLIDE_SUFFIXES

    items = [slides] if isinstance(slides, (str, Path)) else list(slides)
    if not items:
        raise ConfigError("--slides: no slide given")
    files: list[Path] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            found = [f for f in visible_files(p, "*") if f.is_file() and f.suffix.lower() in SLIDE_SUFFIXES | IMAGE_SUFFIXES]
            if not found:
                raise DataError(at(p, f"no slide files ({', '.join(sorted(SLIDE_SUFFIXES))})"))
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(at(p, "slide file or folder not found"))
    stems = [f.stem for f in files]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise ConfigError(f"--slides: several slides share the name {', '.join(dup)} (outputs would collide)")
    return files


@dataclass(frozen=True)
class TilePlan:
    """How one slide is tiled (the same settings for every slide of a run)."""

    mpp: float | None
    target_mpp: float
    tile_size: int | None  # None: the coords file's patch_size, or DEFAULT_TILE_SIZE when tiling
    overlap: int
    min_tissue: float
    coords_dir: Path | None

    def grid(self, path: Path, reader: Any) -> tuple[Any, Any, Any, float]:
        """(grid, tissue mask, thumbnail, thumbnail scale) of the slide open in ``reader``."""
        from hagekit.slides.tiling import find_coords_file, plan_grid, read_coords
        from hagekit.slides.tissue import tissue_mask

        if self.coords_dir is not None:  # without mpp, read_coords takes the coords' level0_magnification
            return read_coords(find_coords_file(self.coords_dir, path.stem), reader, tile_size=self.tile_size), None, None, 1.0
        if reader.mpp is None:
            raise DataError(at(path, "no microns-per-pixel metadata; pass --mpp (e.g. --mpp 0.25 for a 40x scan)"))
        thumb, scale = reader.thumbnail(_THUMB_SIDE)
        mask = tissue_mask(thumb)
        grid = plan_grid(reader, target_mpp=self.target_mpp, tile_size=self.tile_size or DEFAULT_TILE_SIZE, overlap=self.overlap,
                         mask=mask, mask_scale=scale, min_tissue=self.min_tissue)
        return grid, mask, thumb, scale

    def n_tiles(self, path: Path) -> float:
        """Dealing weight of a slide: its tile count."""
        from hagekit.slides.reader import open_slide

        reader = open_slide(path, mpp=self.mpp)
        try:
            return float(len(self.grid(path, reader)[0]))
        finally:
            reader.close()


def _extract_slide(
    path: Path,
    setup: EncoderSetup,
    *,
    plan: TilePlan,
    out_path: Path,
    preview_dir: Path | None,
    batch_size: int,
    num_workers: int,
    reporter: Reporter,
) -> int:
    from hagekit.io.h5 import write_features
    from hagekit.slides.reader import OpenSlideReader, open_slide

    reader = open_slide(path, mpp=plan.mpp)
    try:
        grid, mask, thumb, scale = plan.grid(path, reader)
        if preview_dir is not None:
            from hagekit.slides.preview import write_preview

            if thumb is None:
                thumb, scale = reader.thumbnail(1024)
            write_preview(preview_dir / f"{path.stem}.png", thumb, mask, grid, scale)
        coords_attrs = grid.coords_attrs(path.stem, reader, savetodir=out_path.parent.resolve())
        resolution = source_resolution_attrs(path.stem, source_px=float(grid.patch_size_level0),
                                             out_px=int(setup.bundle.input_size), source_mpp=float(grid.level0_mpp))
        if grid.read_size != grid.patch_size:
            log.warning(
                "%s: no pyramid level at %.3g µm/px; tiles are %d level-%d px resized to %d, so CLAM "
                "(patch_size px at patch_level) needs `hagekit export-features --to clam`",
                path.name, grid.target_mpp, grid.read_size, grid.read_level, grid.patch_size,
            )
        shared = None if isinstance(reader, OpenSlideReader) else reader  # plain images: decoded once
        ds = TileDataset(path, grid, setup.bundle.transform, mpp=reader.mpp, reader=shared)
        task = reporter.task(path.stem, total=len(ds))
        try:
            feats, stats = run_encoder(
                setup.bundle, ds, batch_size=batch_size, device=setup.device,
                precision=setup.precision, num_workers=num_workers, task=task,
            )
        finally:
            task.close()
        attrs = provenance(
            setup,
            patch_size_px=int(grid.patch_size),
            patch_size_um=float(grid.patch_size * grid.target_mpp),
            mpp=float(grid.level0_mpp),
            target_mpp=float(grid.target_mpp),
            slide=path.name,
            section=path.stem,
            **resolution,
        )
        write_features(out_path, feats, grid.coords, attrs=attrs, coords_attrs=coords_attrs)
        log.info("%s: %d tiles in %.1fs", path.stem, stats.n, stats.seconds)
        return stats.n
    finally:
        reader.close()


#: Largest tile side (px at the target resolution): 16x the usual 256, 192 MB as RGB per read.
MAX_TILE_PX = 4096


def extract_slides(
    slides: Sequence[Path | str] | Path | str,
    *,
    encoder: str = "builtin",
    out_dir: Path | str,
    mpp: float | None = None,
    target_mpp: float | None = 0.5,
    magnification: float | None = None,
    tile_size: int | None = None,
    overlap: int = 0,
    min_tissue: float = 0.25,
    coords_dir: Path | str | None = None,
    preview: bool = False,
    weights: Path | None = None,
    random_weights: bool = False,
    device: str = "auto",
    precision: str | None = None,
    batch_size: int = 64,
    num_workers: int | None = None,
    overwrite: bool = False,
    shard: str | None = None,
    lock_timeout: float | None = None,
    progress: Reporter | None = None,
) -> ExtractSummary:
    """Tile features of whole slides into ``<out_dir>/<slide_stem>.h5`` (TRIDENT/CLAM layout).

    Tiles: ``tile_size`` px (default 256) at ``target_mpp`` (or ``magnification``: 20x = 0.5 µm/px)
    over the tissue, or the tiles of a CLAM/TRIDENT coords file in ``coords_dir`` (its
    ``patch_size`` unless ``tile_size`` is given: then a warning where they disagree). A slide without mpp
    metadata fails unless ``mpp`` is given; one unreadable slide never stops the others. Under
    torchrun ranks are dealt slides balanced by tile count; ``shard`` ("K/N") takes one share.
    """
    from hagekit.slides.tiling import target_mpp_from

    t_run = time.perf_counter()
    files = collect_slides(slides)
    tmpp = target_mpp_from(target_mpp, magnification)
    if batch_size < 1:
        raise ConfigError(f"--batch-size: must be >= 1, got {batch_size}")
    if precision is not None and precision not in PRECISIONS:
        raise ConfigError(f"--precision: unknown {precision!r} (valid: {', '.join(PRECISIONS)})")
    size = tile_size if tile_size is not None else DEFAULT_TILE_SIZE
    if not 8 <= size <= MAX_TILE_PX:
        raise ConfigError(f"--tile-size: must be 8 to {MAX_TILE_PX} px (a tile is read whole), got {size}")
    if not 0 <= overlap < size:
        raise ConfigError(f"--overlap: must be in [0, --tile-size={size}) px, got {overlap}")
    if num_workers is not None and num_workers < 0:
        raise ConfigError(f"--num-workers: must be >= 0, got {num_workers}")
    if not 0.0 <= min_tissue <= 1.0:
        raise ConfigError(f"--min-tissue: must be a fraction in [0, 1], got {min_tissue}")
    if mpp is not None and not mpp > 0:
        raise ConfigError(f"--mpp: must be positive µm per pixel, got {mpp}")
    if coords_dir is not None and not Path(coords_dir).is_dir():
        raise DataError(at(coords_dir, "--coords folder not found"))
    out = Path(out_dir)
    reporter = reporter_or_null(progress)
    settings: dict[str, Any] = {} if coords_dir is not None else {"target_mpp": tmpp, "patch_size_px": size}
    plan = TilePlan(mpp, tmpp, tile_size, overlap, min_tissue, Path(coords_dir) if coords_dir is not None else None)

    def extract(f: Path, setup: EncoderSetup, target: Path, batch: int, workers: int) -> int:
        return _extract_slide(f, setup, plan=plan, out_path=target, preview_dir=out / "previews" if preview else None,
                              batch_size=batch, num_workers=workers, reporter=reporter)

    opts = EncoderOptions(encoder.strip(), weights, random_weights, device, precision, batch_size, num_workers)
    summary = run_items(files, out, extract, opts=opts, settings=settings, weigh=plan.n_tiles, overwrite=overwrite,
                        shard=parse_shard(shard), lock_timeout=lock_timeout, reporter=reporter)
    summary.seconds = max(summary.seconds, time.perf_counter() - t_run)
    return summary
