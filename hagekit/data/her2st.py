"""Reader for the HER2-positive breast cancer ST data (Andersson et al. 2021, ``almaan/her2st``).

Layout (``<raw>`` is the repository root or its ``data/`` folder)::

    ST-cnts/<S>.tsv.gz               spots x genes raw counts; first column "{x}x{y}"
    ST-spotfiles/<S>_selection.tsv   x y new_x new_y pixel_x pixel_y selected
    ST-imgs/<letter>/<S>/*.jpg       full-resolution H&E (optional per section)
    ST-pat/lbl/<S>_labeled_coordinates.tsv   pathologist labels (some sections)

Patient = the letter, section = letter + digit. Pixel size: legacy ST arrays have 100 µm
spots on a 200 µm centre-to-centre grid, so microns per pixel = 200 / (pixels per array
step), fitted per section from ``new_x/new_y`` vs ``pixel_x/pixel_y`` (an exact affine map
in these files). For the C sections this gives ~290 px per step, i.e. ~0.69 µm/px.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hagekit.data.prepare import (
    PrepareReport,
    SectionSource,
    match_barcodes,
    read_counts_tsv,
    read_table,
    require_dir,
    select_sections,
)
from hagekit.errors import DataError, at
from hagekit.progress import Reporter

if TYPE_CHECKING:
    import anndata

__all__ = [
    "ST_PITCH_UM",
    "ST_SPOT_DIAMETER_UM",
    "find_her2st_sections",
    "build_her2st_section",
    "array_pitch_px",
    "prepare_her2st",
]

log = logging.getLogger(__name__)

ST_PITCH_UM = 200.0  # legacy ST array: centre-to-centre distance of neighbouring spots
ST_SPOT_DIAMETER_UM = 100.0
DATASET = "her2"
_SECTION_RE = re.compile(r"^([A-Za-z]+)(\d+)$")


def _data_dir(raw: Path) -> Path:
    raw = require_dir(raw, "her2st folder")
    for cand in (raw / "data", raw):
        if (cand / "ST-cnts").is_dir():
            return cand
    raise DataError(at(raw, "no ST-cnts folder (expected the almaan/her2st layout: data/ST-cnts/<S>.tsv.gz)"))


def _counts_files(data: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in sorted((data / "ST-cnts").iterdir()):
        name = path.name
        for suffix in (".tsv.gz", ".tsv"):
            if name.endswith(suffix) and not name.startswith("."):
                found.setdefault(name[: -len(suffix)], []).append(path)
    return found


def _patient(section: str) -> str:
    m = _SECTION_RE.match(section)
    return m.group(1).upper() if m else section


def find_her2st_sections(
    raw: Path | str, sections: Sequence[str] | None = None, *, dataset: str = DATASET
) -> list[SectionSource]:
    """Find the her2st sections under ``raw`` (all, or those named); check their files exist."""
    data = _data_dir(Path(raw))
    counts = _counts_files(data)
    if not counts:
        raise DataError(at(data / "ST-cnts", "no <section>.tsv.gz counts files"))
    names = select_sections(sorted(counts, key=_sort_key), sections)
    sources: list[SectionSource] = []
    for name in names:
        files = counts[name]
        if len(files) > 1:
            raise DataError(at(files[1], f"section {name!r} named twice (also {files[0]}); keep one counts file"))
        counts_file = files[0]
        spot_file = data / "ST-spotfiles" / f"{name}_selection.tsv"
        if not spot_file.is_file():
            gz = spot_file.with_name(spot_file.name + ".gz")
            if gz.is_file():
                spot_file = gz
            else:
                raise DataError(at(counts_file, f"counts file with no matching spot file (expected {spot_file})"))
        image = _find_image(data, name)
        labels = data / "ST-pat" / "lbl" / f"{name}_labeled_coordinates.tsv"
        label_file = labels if labels.is_file() else None
        files_t = tuple(p for p in (counts_file, spot_file, image, label_file) if p is not None)

        def build(counts_file=counts_file, spot_file=spot_file, image=image, label_file=label_file, name=name):
            return build_her2st_section(
                counts_file, spot_file, image=image, label_file=label_file, section=name, dataset=dataset
            )

        sources.append(SectionSource(name, _patient(name), files_t, build, has_image=image is not None))
    return sources


def _sort_key(name: str) -> tuple[str, int, str]:
    m = _SECTION_RE.match(name)
    return (m.group(1), int(m.group(2)), name) if m else (name, 0, name)


def _find_image(data: Path, section: str) -> Path | None:
    folder = data / "ST-imgs" / _patient(section) / section
    if not folder.is_dir():
        folder = data / "ST-imgs" / section[:1] / section
    if not folder.is_dir():
        return None
    images = sorted(p for p in folder.iterdir()
                    if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".tif", ".tiff"} and not p.name.startswith("."))
    if not images:
        return None
    if len(images) > 1:
        log.warning("%s: %d images, using %s", folder, len(images), images[0].name)
    return images[0]


def array_pitch_px(array_xy: np.ndarray, pixel_xy: np.ndarray) -> float:
    """Pixels per array step: slopes of the least-squares fit pixel ~ array, averaged over x and y."""
    slopes = []
    for k in range(2):
        a = np.asarray(array_xy[:, k], dtype=np.float64)
        if np.ptp(a) > 0:
            slopes.append(abs(np.polyfit(a, pixel_xy[:, k], 1)[0]))
    return float(np.mean(slopes)) if slopes else float("nan")


def build_her2st_section(
    counts_file: Path,
    spot_file: Path,
    *,
    image: Path | None,
    label_file: Path | None,
    section: str,
    dataset: str = DATASET,
    patient: str | None = None,
    source: str = "almaan/her2st",
) -> anndata.AnnData:
    """Read one legacy-ST section (her2st, cSCC) into the Section layout.

    Counts-only (no mpp) when ``image`` is None. Spots with ``selected == 0`` in the spot
    file are dropped like spots missing from either file.
    """
    from hagekit.data.section import make_section
    from hagekit.slides.info import open_image_info
    from hagekit.slides.patches import check_spots_inside

    table = read_counts_tsv(counts_file)
    spots = read_table(spot_file, required=("x", "y", "pixel_x", "pixel_y"), what="spot file")
    n_unselected = 0
    if "selected" in spots.columns:
        keep = spots["selected"].fillna(0).to_numpy() != 0
        n_unselected = int((~keep).sum())
        spots = spots[keep].reset_index(drop=True)
    xy = spots[["x", "y"]].to_numpy(dtype=np.float64)
    if not np.isfinite(xy).all():
        raise DataError(at(spot_file, "x/y array coordinates contain NaN"))
    ax, ay = np.rint(xy[:, 0]).astype(np.int64), np.rint(xy[:, 1]).astype(np.int64)
    spot_ids = [f"{x}x{y}" for x, y in zip(ax, ay, strict=True)]
    ci, si, dropped = match_barcodes(table.barcodes, spot_ids, counts_file=counts_file, spots_file=spot_file)
    pixel = spots[["pixel_x", "pixel_y"]].to_numpy(dtype=np.float64)
    if not np.isfinite(pixel).all():
        raise DataError(at(spot_file, "pixel_x/pixel_y contain NaN"))
    fit_cols = ["new_x", "new_y"] if {"new_x", "new_y"} <= set(spots.columns) else ["x", "y"]
    pitch_px = array_pitch_px(spots[fit_cols].to_numpy(dtype=np.float64), pixel)
    spatial = pixel[si]
    barcodes = [table.barcodes[i] for i in ci]
    counts = table.counts[ci]

    mpp = None
    thumb = scale = None
    if image is not None:
        info = open_image_info(image)
        check_spots_inside(spatial, info.width, info.height, source=image, barcodes=barcodes)
        thumb, scale = info.thumbnail, info.thumbnail_scale
        if not np.isfinite(pitch_px) or pitch_px <= 0:
            raise DataError(at(spot_file, "cannot fit the array pitch in pixels (need spots in more than one row and column)"))
        mpp = ST_PITCH_UM / pitch_px
    obs: dict[str, Sequence] = {"array_x": ax[si], "array_y": ay[si]}
    if label_file is not None:
        obs["label"] = _labels(label_file, barcodes)
    adata = make_section(
        counts,
        barcodes,
        table.genes,
        spatial,
        dataset=dataset,
        section=section,
        patient=patient if patient is not None else _patient(section),
        image_path=image,
        mpp=mpp,
        spot_diameter_um=ST_SPOT_DIAMETER_UM,
        thumbnail=thumb,
        thumbnail_scale=scale,
        obs=obs,
        source=source,
    )
    adata.uns["hagekit"]["n_dropped_spots"] = int(dropped + n_unselected)
    adata.uns["hagekit"]["array_pitch_px"] = float(pitch_px)
    return adata


def _labels(label_file: Path, barcodes: Sequence[str]) -> list[str]:
    """Pathologist label per spot ('' where unlabelled), joined on rounded array x, y."""
    df = read_table(label_file, required=("x", "y", "label"), what="label file")
    df = df[np.isfinite(df["x"].to_numpy(dtype=float)) & np.isfinite(df["y"].to_numpy(dtype=float))]
    ids = [f"{int(round(x))}x{int(round(y))}" for x, y in zip(df["x"], df["y"], strict=True)]
    lookup: dict[str, str] = {}
    for sid, lab in zip(ids, df["label"].astype(str), strict=True):
        lookup.setdefault(sid, lab)
    out = [lookup.get(b, "") for b in barcodes]
    n = sum(1 for v in out if v)
    log.debug("%s: labels for %d of %d spots", label_file, n, len(barcodes))
    return out


def prepare_her2st(raw: Path | str, out_root: Path | str, *, sections: Sequence[str] | None = None, dataset: str = DATASET,
                   overwrite: bool = False, progress: Reporter | None = None) -> PrepareReport:
    """Prepare her2st sections from ``raw`` into ``<out_root>/<dataset>/`` (default dataset ``her2``)."""
    from hagekit.data.prepare import prepare_layout

    return prepare_layout(find_her2st_sections, raw, sections, out_root, dataset, overwrite=overwrite, progress=progress)
