"""Whole-slide features: tissue mask, tile grid (or CLAM/TRIDENT coords), batched encoding.

One ``<out>/<slide_stem>.h5`` per slide in the TRIDENT/CLAM layout (``features``, ``coords``
top-left level-0 px with ``patch_size``, ``patch_size_level0``, ``patch_level``,
``level0_magnification``, ``target_magnification``, ``overlap``, ``name``). Tiles are read by
DataLoader workers (one OpenSlide handle each), so no whole level-0 slide is ever in memory.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hagekit.errors import ConfigError, DataError, at
from hagekit.extract.common import provenance
from hagekit.extract.engine import EncoderSetup, run_encoder
from hagekit.extract.resolution import source_resolution_attrs
from hagekit.extract.runner import run_items
from hagekit.extract.spec import DEFAULT_TILE_SIZE, EncoderSpec, ExtractionSpec, TilingSpec
from hagekit.extract.summary import ExtractSummary
from hagekit.progress import Reporter, reporter_or_null

__all__ = ["extract_slides", "TileDataset", "collect_slides"]

log = logging.getLogger(__name__)

_THUMB_SIDE = 2048


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

    @classmethod
    def of(cls, tiling: TilingSpec) -> TilePlan:
        """The plan of ``tiling`` (validated), its tile resolution resolved."""
        tmpp = tiling.resolved_target_mpp()
        tiling.validate()
        coords = Path(tiling.coords_dir) if tiling.coords_dir is not None else None
        return cls(tiling.mpp, tmpp, tiling.tile_size, tiling.overlap, tiling.min_tissue, coords)

    @property
    def settings(self) -> dict[str, Any]:
        """Patch attributes a finished feature file must match to be skipped (none for given coords)."""
        if self.coords_dir is not None:
            return {}
        return {"target_mpp": self.target_mpp, "patch_size_px": self.tile_size or DEFAULT_TILE_SIZE}

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
            feats, stats = run_encoder(setup, ds, batch_size=batch_size, num_workers=num_workers, task=task)
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


def extract_slides(
    slides: Sequence[Path | str] | Path | str,
    *,
    encoder: EncoderSpec | str = "builtin",
    spec: ExtractionSpec | None = None,
    progress: Reporter | None = None,
    workspace: Path | str | None = None,
) -> ExtractSummary:
    """Tile features of whole slides into ``<spec.out_dir>/<slide_stem>.h5`` (TRIDENT/CLAM layout).

    Tiles follow ``spec.tiling`` (:class:`TilingSpec`: 256 px at 0.5 µm/px over the tissue by
    default, or the tiles of CLAM/TRIDENT coords files). ``spec.out_dir`` defaults to
    ``<workspace>/features/slides/<encoder>``. A slide without mpp metadata fails unless
    ``tiling.mpp`` is given; one unreadable slide never stops the others. Under torchrun ranks
    are dealt slides balanced by tile count; ``spec.shard`` ("K/N") takes one share.
    """
    t_run = time.perf_counter()
    enc, spec = EncoderSpec.of(encoder), spec if spec is not None else ExtractionSpec()
    files = collect_slides(slides)
    enc.validate()
    plan = TilePlan.of(spec.tiling)
    out = Path(spec.out_dir) if spec.out_dir is not None else _default_out(enc, workspace)
    reporter = reporter_or_null(progress)
    previews = out / "previews" if spec.tiling.preview else None

    def extract(f: Path, setup: EncoderSetup, target: Path, batch: int, workers: int) -> int:
        return _extract_slide(f, setup, plan=plan, out_path=target, preview_dir=previews,
                              batch_size=batch, num_workers=workers, reporter=reporter)

    summary = run_items(files, extract, encoder=enc, spec=dataclasses.replace(spec, out_dir=out),
                        settings=plan.settings, weigh=plan.n_tiles, reporter=reporter)
    summary.seconds = max(summary.seconds, time.perf_counter() - t_run)
    return summary


def _default_out(encoder: EncoderSpec, workspace: Path | str | None) -> Path:
    """``<workspace>/features/slides/<encoder slug>``."""
    from hagekit.workspace import Workspace, encoder_slug

    return Workspace.resolve(workspace).root / "features" / "slides" / encoder_slug(encoder.name)
