"""Reader for 10x Genomics Visium: a Space Ranger ``outs`` folder as Space Ranger writes it.

Inputs (1.x, 2.x+ and CytAssist)::

    filtered_feature_bc_matrix.h5       10x HDF5, or
    filtered_feature_bc_matrix/         Matrix Market folder (:mod:`hagekit.data.tenx`)
    spatial/tissue_positions.csv        Space Ranger >= 2.0 (header row), or
    spatial/tissue_positions_list.csv   Space Ranger 1.x (no header), or
    spatial/tissue_positions.parquet    newer Space Ranger (read when pyarrow is installed);
                                        columns barcode, in_tissue, array_row, array_col,
                                        pxl_row_in_fullres, pxl_col_in_fullres
    spatial/scalefactors_json.json      spot_diameter_fullres (px), tissue_{hires,lowres}_scalef
    spatial/tissue_{hires,lowres}_image.png

The image is the one given (full-resolution, hires or lowres: recognised from its size and the
scale factors) or, without one, ``tissue_hires_image.png`` (``tissue_lowres_image.png`` when
there is no hires), as scanpy and squidpy read it. Spot centres are scaled to that image and
microns per pixel = 55 µm / (``spot_diameter_fullres`` x its scale factor).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hagekit.data.prepare import (
    PrepareReport,
    SectionSource,
    match_barcodes,
    prepare_dataset,
    read_table,
    require_dir,
    require_file,
)
from hagekit.data.tenx import find_10x_counts, read_10x_counts, read_10x_h5, read_10x_mtx
from hagekit.errors import DataError, at
from hagekit.io.jsonfile import read_json_object
from hagekit.progress import Reporter

if TYPE_CHECKING:
    import anndata
    import pandas as pd

__all__ = [
    "VISIUM_SPOT_DIAMETER_UM",
    "VisiumImage",
    "read_10x_h5",
    "read_10x_mtx",
    "read_tissue_positions",
    "match_image_resolution",
    "choose_visium_image",
    "build_visium_section",
    "VisiumSection",
    "prepare_visium",
]

log = logging.getLogger(__name__)

VISIUM_SPOT_DIAMETER_UM = 55.0
_POSITION_COLUMNS = ["barcode", "in_tissue", "array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres"]
#: Image resolutions Space Ranger knows, with their scale-factor keys (full-res: 1).
_RESOLUTIONS = (("full-res", ""), ("hires", "tissue_hires_scalef"), ("lowres", "tissue_lowres_scalef"))


def read_tissue_positions(spatial_dir: Path) -> tuple[pd.DataFrame, Path]:
    """Spot positions from ``tissue_positions.csv`` (header), ``tissue_positions_list.csv`` (none)
    or ``tissue_positions.parquet`` (needs pyarrow; one line saying so otherwise)."""
    import pandas as pd

    new, old, parquet = (spatial_dir / n for n in ("tissue_positions.csv", "tissue_positions_list.csv", "tissue_positions.parquet"))
    if new.is_file():
        df, path = read_table(new, required=_POSITION_COLUMNS, sep=",", what="tissue positions file"), new
    elif old.is_file():
        df, path = read_table(old, sep=",", what="tissue positions file", names=_POSITION_COLUMNS), old
    elif parquet.is_file():
        df, path = _read_parquet(parquet), parquet
    else:
        raise DataError(at(spatial_dir, "no tissue_positions.csv, tissue_positions_list.csv or tissue_positions.parquet"))
    try:
        for col in _POSITION_COLUMNS[1:]:
            df[col] = pd.to_numeric(df[col])
    except (ValueError, TypeError) as exc:
        raise DataError(at(path, f"non-numeric position value ({exc})")) from None
    df["barcode"] = df["barcode"].astype(str)
    return df, path


def _read_parquet(path: Path) -> pd.DataFrame:
    import importlib.util

    import pandas as pd

    if importlib.util.find_spec("pyarrow") is None:
        raise DataError(at(path, "reading tissue_positions.parquet needs pyarrow (pip install pyarrow), "
                                 "or convert it to tissue_positions.csv"))
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises its own error types for damaged files
        raise DataError(at(path, f"not a readable parquet file ({type(exc).__name__}: {exc})")) from None
    missing = [c for c in _POSITION_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(at(path, f"tissue positions file lacks column(s) {', '.join(missing)}"))
    return df


def _scalefactors(spatial_dir: Path) -> tuple[dict, Path]:
    path = require_file(spatial_dir / "scalefactors_json.json", "scale factors file")
    sf = read_json_object(path, what="a Space Ranger scale factors file")
    d = sf.get("spot_diameter_fullres")
    if not isinstance(d, (int, float)) or not d > 0:
        raise DataError(at(path, "lacks a positive spot_diameter_fullres"))
    return sf, path


def _scales(sf: dict) -> list[tuple[str, float]]:
    """(resolution, scale factor) pairs the scale factors define, full-res first."""
    out = [("full-res", 1.0)]
    for name, key in _RESOLUTIONS[1:]:
        s = sf.get(key)
        if isinstance(s, (int, float)) and s > 0:
            out.append((name, float(s)))
    return out


def _image_size(path: Path) -> tuple[int, int]:
    from hagekit.slides.reader import pil_image_module

    Image = pil_image_module()
    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except Exception as exc:  # PIL raises many types for damaged files
        raise DataError(at(path, f"not a readable image ({type(exc).__name__}: {exc})")) from None


def fullres_size(spatial_dir: Path, sf: dict) -> tuple[float, float] | None:
    """The full-resolution image size implied by ``spatial/``'s hires (or lowres) image and its
    scale factor; None when neither image is there."""
    for name, s in _scales(sf)[1:]:
        png = spatial_dir / f"tissue_{name}_image.png"
        if png.is_file():
            w, h = _image_size(png)
            return w / s, h / s
    return None


@dataclass(frozen=True)
class VisiumImage:
    """The image a section is read against: file, resolution name and scale factor to full-res px."""

    path: Path
    resolution: str
    scale: float


def match_image_resolution(
    image: Path, size: tuple[int, int], sf: dict, full: tuple[float, float] | None, centres: np.ndarray
) -> VisiumImage:
    """Which of full-res / hires / lowres an image of ``size`` (w, h) px is.

    With the full-resolution size known (from ``spatial/``'s images) the size must match one
    scale factor (1% or 3 px); without it, the image must hold the full-res spot centres.
    Otherwise one line names the scale factors and the sizes they imply.
    """
    w, h = size
    scales = _scales(sf)
    if full is not None:
        for name, s in scales:
            ew, eh = full[0] * s, full[1] * s
            if abs(w - ew) <= max(3.0, 0.01 * ew) and abs(h - eh) <= max(3.0, 0.01 * eh):
                return VisiumImage(image, name, s)
        implied = ", ".join(f"{n} ({s:.6g}): {full[0] * s:.0f} x {full[1] * s:.0f}" for n, s in scales)
        raise DataError(at(image, f"{w} x {h} px matches no scale factor of scalefactors_json.json ({implied} px); "
                                  "give this section's full-resolution, hires or lowres image"))
    c = np.asarray(centres, dtype=np.float64)
    need = (np.nanmax(c[:, 0]) + 1, np.nanmax(c[:, 1]) + 1) if len(c) else (0.0, 0.0)
    if len(c) and w >= need[0] and h >= need[1]:
        return VisiumImage(image, "full-res", 1.0)
    implied = ", ".join(f"{n} ({s:.6g}): at least {need[0] * s:.0f} x {need[1] * s:.0f}" for n, s in scales)
    raise DataError(at(image, f"{w} x {h} px matches no scale factor of scalefactors_json.json ({implied} px, "
                              "from the spot positions; spatial/ has no hires or lowres image to tell the full size)"))


def _blank(path: Path) -> bool:
    """True when an image holds one colour only (the blanked test-data images of Seurat)."""
    from hagekit.slides.info import open_image_info

    thumb = open_image_info(path).thumbnail
    return bool(thumb.size == 0 or int(thumb.max()) == int(thumb.min()))


def choose_visium_image(spatial_dir: Path, image: Path | None, *, section: str) -> Path | None:
    """``image`` (refused when blank), or spatial/'s hires image (lowres when no hires); a blank
    default is passed over with a warning, and no usable one means counts only."""
    if image is not None:
        require_file(image, "image file")
        if _blank(image):
            raise DataError(at(image, "the image is blank (one colour): it cannot show the spots; give the H&E image"))
        return image
    for name in ("hires", "lowres"):
        png = spatial_dir / f"tissue_{name}_image.png"
        if not png.is_file():
            continue
        if _blank(png):
            log.warning("%s: blank image (one colour), not used", png)
            continue
        return png
    log.warning("%s: no --image and no usable tissue_hires_image.png or tissue_lowres_image.png; section %s "
                "prepared with counts only", spatial_dir, section)
    return None


def _attach_image(image: Path | None, spatial: np.ndarray, sf: dict, spatial_dir: Path, barcodes: list[str], section: str):
    """(centres in the image's px, image info, resolution) for ``image``; centres unchanged without one."""
    from hagekit.slides.info import open_image_info
    from hagekit.slides.patches import check_spots_inside

    if image is None:
        return spatial, None, None
    info = open_image_info(image)
    res = match_image_resolution(image, (info.width, info.height), sf, fullres_size(spatial_dir, sf), spatial)
    scaled = spatial * res.scale
    check_spots_inside(scaled, info.width, info.height, source=image, barcodes=barcodes)
    if res.resolution != "full-res":
        mpp = VISIUM_SPOT_DIAMETER_UM / (float(sf["spot_diameter_fullres"]) * res.scale)
        log.warning("%s: %s is the %s image (scale factor %.6g), not full resolution: spot centres scaled to it, "
                    "%.2f µm/px", section, image.name, res.resolution, res.scale, mpp)
    return scaled, info, res


def build_visium_section(
    outs: Path,
    *,
    name: str,
    image: Path | None,
    patient: str | None = None,
    dataset: str = "visium",
    in_tissue_only: bool = True,
) -> anndata.AnnData:
    """Read one Space Ranger ``outs`` folder into the Section layout (``image`` already chosen:
    see :func:`choose_visium_image`)."""
    from hagekit.data.section import SectionImage, SectionLabels, make_section

    outs = require_dir(outs, "Space Ranger outs folder")
    tenx = read_10x_counts(find_10x_counts(outs))
    spatial_dir = require_dir(outs / "spatial", "spatial folder")
    pos, pos_path = read_tissue_positions(spatial_dir)
    sf, _ = _scalefactors(spatial_dir)
    n_outside = 0
    if in_tissue_only:
        inside = pos["in_tissue"].to_numpy() == 1
        n_outside = int((~inside).sum())
        pos = pos[inside].reset_index(drop=True)
    ci, si, dropped = match_barcodes(tenx.barcodes, pos["barcode"].tolist(), counts_file=tenx.path, spots_file=pos_path)
    # matrix barcodes outside the tissue were dropped on purpose, not for lack of a position
    p = pos.iloc[si]
    barcodes = [tenx.barcodes[i] for i in ci]
    fullres = np.stack([p["pxl_col_in_fullres"].to_numpy(float), p["pxl_row_in_fullres"].to_numpy(float)], axis=1)
    spatial, info, res = _attach_image(image, fullres, sf, spatial_dir, barcodes, name)
    scale = res.scale if res is not None else 1.0
    image_spec = SectionImage(
        path=image,
        mpp=VISIUM_SPOT_DIAMETER_UM / (float(sf["spot_diameter_fullres"]) * scale) if info is not None else None,
        spot_diameter_um=VISIUM_SPOT_DIAMETER_UM,
        thumbnail=info.thumbnail if info is not None else None,
        thumbnail_scale=info.thumbnail_scale if info is not None else None,
    )
    adata = make_section(
        tenx.counts[ci],
        barcodes,
        tenx.genes,
        spatial,
        SectionLabels(dataset, name, patient or name, source="10x Space Ranger"),
        image=image_spec,
        obs={
            "array_x": p["array_col"].to_numpy(np.int64),
            "array_y": p["array_row"].to_numpy(np.int64),
            "in_tissue": p["in_tissue"].to_numpy(np.int64),
        },
    )
    adata.var["gene_ids"] = tenx.gene_ids
    adata.obsm["spatial_fullres"] = fullres
    meta = adata.uns["hagekit"]
    meta["n_dropped_spots"] = int(dropped)
    meta["n_outside_tissue"] = n_outside
    meta["coords_mpp"] = VISIUM_SPOT_DIAMETER_UM / float(sf["spot_diameter_fullres"])
    meta["image_resolution"] = res.resolution if res is not None else ""
    meta["image_scalef"] = float(scale)
    meta["array"] = f"Visium {res.resolution}" if res is not None else "Visium"
    return adata


@dataclass(frozen=True)
class VisiumSection:
    """One Visium section to prepare: its name, the H&E (None: spatial/'s hires, else lowres), patient."""

    name: str
    image: Path | str | None = None
    #: default: the section name
    patient: str | None = None
    #: keep only spots with ``in_tissue == 1``
    in_tissue_only: bool = True


def prepare_visium(
    raw: Path | str,
    out_root: Path | str,
    section: VisiumSection,
    *,
    dataset: str = "visium",
    overwrite: bool = False,
    progress: Reporter | None = None,
) -> PrepareReport:
    """Prepare one Visium section from a Space Ranger ``outs`` folder; without an image,
    against spatial/'s hires (or lowres) image."""
    from hagekit.workspace import canonical_dataset

    ds = canonical_dataset(dataset)
    outs = require_dir(Path(raw), "Space Ranger outs folder")
    counts = find_10x_counts(outs)
    spatial_dir = require_dir(outs / "spatial", "spatial folder")
    name, patient = section.name, section.patient
    img = choose_visium_image(spatial_dir, Path(section.image) if section.image is not None else None, section=name)

    def build():
        return build_visium_section(outs, name=name, image=img, patient=patient, dataset=ds,
                                    in_tissue_only=section.in_tissue_only)

    files = tuple(p for p in (counts, img) if p is not None)
    src = SectionSource(name, patient or name, files, build, has_image=img is not None)
    return prepare_dataset([src], out_root, ds, overwrite=overwrite, progress=progress)
