"""Reader for the HER2-positive breast cancer ST data (Andersson et al. 2021, ``almaan/her2st``).

Layout (``<raw>`` is the repository root or its ``data/`` folder)::

    ST-cnts/<S>.tsv.gz               spots x genes raw counts; first column "{x}x{y}"
    ST-spotfiles/<S>_selection.tsv   x y new_x new_y pixel_x pixel_y selected
    ST-imgs/<letter>/<S>/*.jpg       full-resolution H&E (optional per section)
    ST-pat/lbl/<S>_labeled_coordinates.tsv   pathologist labels (some sections)

Patient = the letter, section = letter + digit. Pixel size: HER2ST is on the 1k ST array
(100 µm spots, 200 µm per array step; :mod:`hagekit.data.st_array` tells it from the 2k
array), so microns per pixel = 200 / (pixels per array step), fitted per section from
``new_x/new_y`` vs ``pixel_x/pixel_y`` (an exact affine map in these files).
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
from hagekit.data.st_array import PITCH_TOLERANCE, StArray, detect_st_array, pitch_xy_px
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
    slopes = [p for p in pitch_xy_px(array_xy, pixel_xy) if np.isfinite(p)]
    return float(np.mean(slopes)) if slopes else float("nan")


def _select_spots(table, spots, spot_file: Path, counts_file: Path, section: str) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Rows of counts and spot file kept (matched and ``selected``), and the dropped spots by reason,
    said in one warning: counts under unselected positions, counts without a position, selected
    positions without counts (unselected positions without counts are no spots at all)."""
    xy = spots[["x", "y"]].to_numpy(dtype=np.float64)
    if not np.isfinite(xy).all():
        raise DataError(at(spot_file, "x/y array coordinates contain NaN"))
    ax, ay = np.rint(xy[:, 0]).astype(np.int64), np.rint(xy[:, 1]).astype(np.int64)
    spot_ids = [f"{x}x{y}" for x, y in zip(ax, ay, strict=True)]
    selected = _selected(spots)
    ci, si, _ = match_barcodes(table.barcodes, spot_ids, counts_file=counts_file, spots_file=spot_file, warn=False)
    keep = selected[si]
    dropped = {
        "unselected": int((~keep).sum()),
        "no_position": int(len(table.barcodes) - len(ci)),
        "no_counts": int(selected.sum() - keep.sum()),
    }
    if not keep.any():
        raise DataError(at(spot_file, f"none of the {len(ci)} spots with counts is selected (selected == 0 everywhere)"))
    if sum(dropped.values()):
        log.warning(
            "%s: dropped %d spot(s): %d with counts under unselected positions (selected == 0), %d with counts "
            "but no position, %d selected positions without counts; %d kept",
            section, sum(dropped.values()), dropped["unselected"], dropped["no_position"], dropped["no_counts"], int(keep.sum()),
        )
    return ci[keep], si[keep], dropped


def _selected(spots) -> np.ndarray:
    """The spot file's ``selected`` column as booleans (every position when it has none)."""
    return spots["selected"].fillna(0).to_numpy() != 0 if "selected" in spots.columns else np.ones(len(spots), bool)


def _microns_per_pixel(spots, spot_file: Path, section: str) -> tuple[float, float, StArray]:
    """(µm/px, px per array step, array): the array told from every occupied position, the pitch
    fitted on the selected spots; a warning when the x and y pitch differ by more than 5%."""
    array = detect_st_array(spots[["x", "y"]].to_numpy(dtype=np.float64))
    fit_cols = ["new_x", "new_y"] if {"new_x", "new_y"} <= set(spots.columns) else ["x", "y"]
    sel = spots[_selected(spots)]
    px, py = pitch_xy_px(sel[fit_cols].to_numpy(dtype=np.float64), sel[["pixel_x", "pixel_y"]].to_numpy(dtype=np.float64))
    pitch = float(np.nanmean([px, py])) if np.isfinite([px, py]).any() else float("nan")
    if np.isfinite([px, py]).all() and abs(px - py) > PITCH_TOLERANCE * pitch:
        log.warning("%s: x and y array pitch differ by %.0f%% (%.1f vs %.1f px per step) in %s: a stretched or "
                    "rescaled image; their mean is used (%.2f µm/px on the %s)",
                    section, 100 * abs(px - py) / pitch, px, py, spot_file.name, array.step_um / pitch, array.label)
    return array.step_um / pitch if pitch > 0 else float("nan"), pitch, array


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
    """Read one legacy-ST section (her2st, cSCC, STUtility) into the Section layout.

    Counts-only (no mpp) when ``image`` is None. Spots with ``selected == 0`` in the spot
    file are dropped like spots missing from either file (one warning, by reason). The array
    (1k or 2k) and so the µm per array step are told from the occupied positions.
    """
    from hagekit.data.section import SectionImage, SectionLabels, make_section
    from hagekit.slides.info import open_image_info
    from hagekit.slides.patches import check_spots_inside

    table = read_counts_tsv(counts_file)
    spots = read_table(spot_file, required=("x", "y", "pixel_x", "pixel_y"), what="spot file")
    ci, si, dropped = _select_spots(table, spots, spot_file, counts_file, section)
    pixel = spots[["pixel_x", "pixel_y"]].to_numpy(dtype=np.float64)
    if not np.isfinite(pixel[si]).all():
        raise DataError(at(spot_file, "pixel_x/pixel_y contain NaN"))
    mpp_fit, pitch_px, array = _microns_per_pixel(spots, spot_file, section)
    spatial = pixel[si]
    barcodes = [table.barcodes[i] for i in ci]
    mpp = None
    thumb = scale = None
    if image is not None:
        info = open_image_info(image)
        check_spots_inside(spatial, info.width, info.height, source=image, barcodes=barcodes)
        thumb, scale = info.thumbnail, info.thumbnail_scale
        if not np.isfinite(pitch_px) or pitch_px <= 0:
            raise DataError(at(spot_file, "cannot fit the array pitch in pixels (need spots in more than one row and column)"))
        mpp = mpp_fit
    xy = np.rint(spots[["x", "y"]].to_numpy(dtype=np.float64)[si]).astype(np.int64)
    obs: dict[str, Sequence] = {"array_x": xy[:, 0], "array_y": xy[:, 1]}
    if label_file is not None:
        obs["label"] = _labels(label_file, barcodes)
    adata = make_section(table.counts[ci], barcodes, table.genes, spatial,
        SectionLabels(dataset, section, patient if patient is not None else _patient(section), source),
        image=SectionImage(image, mpp, ST_SPOT_DIAMETER_UM, thumb, scale),
        obs=obs)
    meta = adata.uns["hagekit"]
    meta["n_dropped_spots"] = int(sum(dropped.values()))
    meta["dropped_spots"] = dropped
    meta["array_pitch_px"] = float(pitch_px)
    meta["array"] = array.label
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
