"""Expression-defined patch classification sets from a prepared section (``hagekit data probe-set``).

For each gene, the section's spots are split at the gene's median expression (library-size
normalised log1p, the training target): ``high`` above the median, ``low`` at or below it. The
spot patches (``patch_um`` µm around each spot centre, ``size`` px PNG) are written once and
linked into ``<out>/<gene>/high`` and ``<out>/<gene>/low``, the layout ``bench linear-probe
--dataset folder`` reads. File names start with a spatial block id (``b<k>_<barcode>.png``,
blocks of ``block_spots`` x ``block_spots`` spot pitches) so that ``--group-regex '^b(\\d+)_'``
keeps neighbouring spots in one cross-validation fold.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hagekit.errors import ConfigError, DataError, at
from hagekit.io.paths import child_path
from hagekit.progress import Reporter, reporter_or_null

__all__ = ["ProbeSet", "build_probe_set", "GROUP_REGEX"]

log = logging.getLogger(__name__)

GROUP_REGEX = r"^b(\d+)_"
"""The ``--group-regex`` that recovers a patch's spatial block from its file name."""


@dataclass
class ProbeSet:
    """What :func:`build_probe_set` wrote: per gene its folder and class counts."""

    out_dir: Path
    section: str
    genes: dict[str, Path] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    medians: dict[str, float] = field(default_factory=dict)


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or no hard links: copy
        shutil.copyfile(src, dst)


def _open_section(section_path: Path, genes: list[str]) -> tuple[Any, dict[str, Any], Path]:
    """(the section, its hagekit metadata, its image), refused without an image or the genes."""
    from hagekit.data.section import read_section, section_image_path

    if not section_path.is_file():
        raise DataError(at(section_path, "section not found (a prepared <dataset>/<section>.h5ad)"))
    adata = read_section(section_path)
    meta = dict(adata.uns.get("hagekit", {}))
    image = section_image_path(adata, section_path)
    if image is None or not Path(image).is_file():
        raise DataError(at(section_path, "section has no image; probe sets need the H&E patches"))
    missing = [g for g in genes if g not in adata.var_names]
    if missing:
        raise DataError(at(section_path, f"gene(s) {', '.join(missing)} not in this section"))
    return adata, meta, Path(image)


def _write_patches(adata: Any, image: Path, store: Path, geometry: tuple[float, int, int], task: Any) -> list[Path]:
    """One PNG per spot (``b<block>_<barcode>.png``; kept when already there); ``geometry``:
    patch µm, pixels, spots per block side."""
    from PIL import Image

    from hagekit.slides.patches import SpotPatcher

    patch_um, size, block_spots = geometry
    barcodes = [str(b) for b in adata.obs_names]
    mpp = float(dict(adata.uns.get("hagekit", {})).get("mpp", float("nan")))
    centres = np.asarray(adata.obsm["spatial"], dtype=np.float64)
    pitch = _spot_pitch(centres)
    block = np.floor(centres / (block_spots * pitch)).astype(np.int64)
    block_id = np.unique(block, axis=0, return_inverse=True)[1].reshape(-1)
    patcher = SpotPatcher(image, centres, mpp=mpp, patch_um=patch_um, out_size=size, barcodes=barcodes)
    store.mkdir(parents=True, exist_ok=True)
    files = []
    try:
        for i, bc in enumerate(barcodes):
            f = store / f"b{block_id[i]}_{bc}.png"
            if not f.is_file():
                tmp = f.with_name(f".{f.name}.tmp")
                Image.fromarray(patcher.patch(i)).save(tmp, format="PNG")
                os.replace(tmp, f)
            files.append(f)
            task.advance(1)
    finally:
        task.close()
        patcher.close()
    return files


def _split_gene(result: ProbeSet, gene: str, values: np.ndarray, files: list[Path], gdir: Path) -> None:
    """``gdir/high`` and ``gdir/low``: the spots above and at-or-below the gene's median (hard links)."""
    med = float(np.median(values))
    high = values > med
    if gdir.exists():
        shutil.rmtree(gdir)
    for cls, mask in (("high", high), ("low", ~high)):
        (gdir / cls).mkdir(parents=True, exist_ok=True)
        for f in np.asarray(files, dtype=object)[mask]:
            _link(f, gdir / cls / f.name)
    result.genes[gene] = gdir
    result.counts[gene] = {"high": int(high.sum()), "low": int((~high).sum())}
    result.medians[gene] = med
    if min(result.counts[gene].values()) < 0.25 * len(values):
        log.warning("%s: %s classes are unbalanced (high %d, low %d; many spots at the median %.3f)",
                    result.section, gene, high.sum(), (~high).sum(), med)


def build_probe_set(
    section_path: Path | str,
    genes: Sequence[str],
    out_dir: Path | str,
    *,
    patch_um: float = 112.0,
    size: int = 224,
    block_spots: int = 4,
    overwrite: bool = False,
    progress: Reporter | None = None,
) -> ProbeSet:
    """Write high/low class folders per gene for one prepared section with an image."""
    from hagekit.bench.leakage import PROBE_SET_FILE
    from hagekit.io.atomic import write_json
    from hagekit.slides.patches import check_patch_um
    from hagekit.targets import expression_targets

    section_path, out = Path(section_path), Path(out_dir)
    genes = [g.strip() for g in genes if g.strip()]
    if not genes:
        raise ConfigError("--genes: give at least one gene symbol")
    if size < 8:
        raise ConfigError(f"--size must be >= 8, got {size}")
    check_patch_um(patch_um)
    adata, meta, image = _open_section(section_path, genes)
    name = str(meta.get("section", section_path.stem))
    gene_dirs = {g: child_path(out, g, what="gene symbol") for g in genes}  # before any write
    store = child_path(out / "_patches", name, what="section name", source=section_path)
    for bc in adata.obs_names:
        child_path(store, f"b0_{str(bc)}.png", what="spot barcode", source=section_path)
    done = [g for g in genes if gene_dirs[g].exists()]
    if done and not overwrite:
        raise DataError(at(out / done[0], "already exists; use --overwrite or another --out"))
    counts = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    expr = expression_targets(counts)  # library size over every gene of the section, then log1p
    col = {g: int(adata.var_names.get_loc(g)) for g in genes}
    for g in genes:
        if np.ptp(expr[:, col[g]]) == 0:
            raise DataError(at(section_path, f"gene {g} is constant in this section; no high/low split"))
    task = reporter_or_null(progress).task(f"probe set {name}", total=adata.n_obs)
    files = _write_patches(adata, image, store, (patch_um, size, block_spots), task)
    write_json(out / PROBE_SET_FILE, {"section": name, "patient": str(meta.get("patient", "")),
                                      "dataset": str(meta.get("dataset", "")), "source": str(section_path)})
    result = ProbeSet(out, name)
    for g in genes:
        _split_gene(result, g, expr[:, col[g]], files, gene_dirs[g])
    return result


def _spot_pitch(centres: np.ndarray) -> float:
    """Median nearest-neighbour distance between spot centres (px)."""
    from scipy.spatial import cKDTree

    if len(centres) < 2:
        return 1.0
    d, _ = cKDTree(centres).query(centres, k=2)
    return float(np.median(d[:, 1])) or 1.0
