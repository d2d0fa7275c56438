"""Reader for 10x Genomics Visium (Space Ranger ``outs`` folder).

Inputs::

    filtered_feature_bc_matrix.h5       10x HDF5 (group ``matrix``: barcodes, data, indices,
                                        indptr, shape = (genes, barcodes), features/{id,name,
                                        feature_type,genome})
    spatial/tissue_positions.csv        Space Ranger >= 2.0 (header row), or
    spatial/tissue_positions_list.csv   Space Ranger 1.x (no header); columns barcode,
                                        in_tissue, array_row, array_col, pxl_row_in_fullres,
                                        pxl_col_in_fullres
    spatial/scalefactors_json.json      spot_diameter_fullres (px), tissue_*_scalef

Visium spots are 55 µm across, so microns per pixel = 55 / ``spot_diameter_fullres``.
"""

from __future__ import annotations

import logging
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
from hagekit.errors import DataError, at
from hagekit.io.jsonfile import read_json_object
from hagekit.progress import Reporter

if TYPE_CHECKING:
    import anndata
    import pandas as pd

__all__ = ["VISIUM_SPOT_DIAMETER_UM", "read_10x_h5", "read_tissue_positions", "build_visium_section", "prepare_visium"]

log = logging.getLogger(__name__)

VISIUM_SPOT_DIAMETER_UM = 55.0
_POSITION_COLUMNS = ["barcode", "in_tissue", "array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres"]


def read_10x_h5(path: Path | str, *, feature_type: str = "Gene Expression"):
    """Read a 10x feature-barcode HDF5 (Cell Ranger/Space Ranger >= 3 schema).

    Returns (barcodes, gene symbols, gene ids, CSR counts of shape (barcodes, genes)),
    keeping only features of ``feature_type``.
    """
    import h5py
    import scipy.sparse as sp

    path = require_file(path, "10x matrix file")
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(at(path, f"not a readable HDF5 file ({exc})")) from None
    with fh:
        if "matrix" not in fh:
            raise DataError(at(path, f"no 'matrix' group (10x HDF5 schema of Space Ranger >= 1.0 expected; has {list(fh.keys())[:5]})"))
        g = fh["matrix"]
        for key in ("barcodes", "data", "indices", "indptr", "shape", "features"):
            if key not in g:
                raise DataError(at(path, f"matrix group lacks '{key}' (10x HDF5 schema)"))
        n_genes, n_barcodes = (int(v) for v in g["shape"][()])
        barcodes = [b.decode() if isinstance(b, bytes) else str(b) for b in g["barcodes"][()]]
        feats = g["features"]
        names = [b.decode() for b in feats["name"][()]]
        ids = [b.decode() for b in feats["id"][()]] if "id" in feats else list(names)
        ftype = [b.decode() for b in feats["feature_type"][()]] if "feature_type" in feats else [feature_type] * len(names)
        data = g["data"][()]
        indices = g["indices"][()]
        indptr = g["indptr"][()]
    if len(barcodes) != n_barcodes or len(names) != n_genes or len(indptr) != n_barcodes + 1:
        raise DataError(at(path, f"inconsistent matrix: shape {n_genes} x {n_barcodes}, {len(names)} features, {len(barcodes)} barcodes"))
    try:
        # stored column-compressed as genes x barcodes == row-compressed barcodes x genes
        X = sp.csr_matrix((data, indices, indptr), shape=(n_barcodes, n_genes))
    except ValueError as exc:
        raise DataError(at(path, f"corrupt sparse matrix ({exc})")) from None
    keep = np.array([t == feature_type for t in ftype])
    if not keep.any():
        raise DataError(at(path, f"no '{feature_type}' features (types present: {sorted(set(ftype))})"))
    if not keep.all():
        X = X[:, np.flatnonzero(keep)]
        names = [n for n, k in zip(names, keep, strict=True) if k]
        ids = [n for n, k in zip(ids, keep, strict=True) if k]
    values = X.data
    if values.size and (not np.isfinite(values).all() or (values < 0).any() or (np.mod(values, 1) != 0).any()):
        raise DataError(at(path, "counts contain NaN, negative or non-integer values (raw UMI counts expected)"))
    return barcodes, names, ids, X.tocsr()


def read_tissue_positions(spatial_dir: Path) -> tuple[pd.DataFrame, Path]:
    """Spot positions from ``tissue_positions.csv`` (with header) or ``tissue_positions_list.csv`` (without)."""
    import pandas as pd

    new, old = spatial_dir / "tissue_positions.csv", spatial_dir / "tissue_positions_list.csv"
    if new.is_file():
        df = read_table(new, required=_POSITION_COLUMNS, sep=",", what="tissue positions file")
        path = new
    elif old.is_file():
        df = read_table(old, sep=",", what="tissue positions file", names=_POSITION_COLUMNS)
        path = old
    else:
        raise DataError(at(spatial_dir, "no tissue_positions.csv or tissue_positions_list.csv"))
    try:
        for col in _POSITION_COLUMNS[1:]:
            df[col] = pd.to_numeric(df[col])
    except (ValueError, TypeError) as exc:
        raise DataError(at(path, f"non-numeric position value ({exc})")) from None
    df["barcode"] = df["barcode"].astype(str)
    return df, path


def _scalefactors(spatial_dir: Path) -> tuple[dict, Path]:
    path = require_file(spatial_dir / "scalefactors_json.json", "scale factors file")
    sf = read_json_object(path, what="a Space Ranger scale factors file")
    d = sf.get("spot_diameter_fullres")
    if not isinstance(d, (int, float)) or not d > 0:
        raise DataError(at(path, "lacks a positive spot_diameter_fullres"))
    return sf, path


def build_visium_section(
    outs: Path,
    *,
    name: str,
    image: Path | None,
    patient: str | None = None,
    dataset: str = "visium",
    in_tissue_only: bool = True,
) -> anndata.AnnData:
    """Read one Space Ranger ``outs`` folder into the Section layout."""
    from hagekit.data.section import make_section
    from hagekit.slides.info import open_image_info
    from hagekit.slides.patches import check_spots_inside

    outs = require_dir(outs, "Space Ranger outs folder")
    h5 = outs / "filtered_feature_bc_matrix.h5"
    barcodes, genes, gene_ids, X = read_10x_h5(h5)
    spatial_dir = require_dir(outs / "spatial", "spatial folder")
    pos, pos_path = read_tissue_positions(spatial_dir)
    sf, _ = _scalefactors(spatial_dir)
    n_outside = 0
    if in_tissue_only:
        inside = pos["in_tissue"].to_numpy() == 1
        n_outside = int((~inside).sum())
        pos = pos[inside].reset_index(drop=True)
    ci, si, dropped = match_barcodes(barcodes, pos["barcode"].tolist(), counts_file=h5, spots_file=pos_path)
    # matrix barcodes outside the tissue were dropped on purpose, not for lack of a position
    p = pos.iloc[si]
    spatial = np.stack([p["pxl_col_in_fullres"].to_numpy(float), p["pxl_row_in_fullres"].to_numpy(float)], axis=1)
    mpp_coords = VISIUM_SPOT_DIAMETER_UM / float(sf["spot_diameter_fullres"])
    thumb = scale = None
    mpp = None
    if image is not None:
        info = open_image_info(image)
        check_spots_inside(spatial, info.width, info.height, source=image, barcodes=[barcodes[i] for i in ci])
        thumb, scale = info.thumbnail, info.thumbnail_scale
        mpp = mpp_coords
    adata = make_section(
        X[ci],
        [barcodes[i] for i in ci],
        genes,
        spatial,
        dataset=dataset,
        section=name,
        patient=patient or name,
        image_path=image,
        mpp=mpp,
        spot_diameter_um=VISIUM_SPOT_DIAMETER_UM,
        thumbnail=thumb,
        thumbnail_scale=scale,
        obs={
            "array_x": p["array_col"].to_numpy(np.int64),
            "array_y": p["array_row"].to_numpy(np.int64),
            "in_tissue": p["in_tissue"].to_numpy(np.int64),
        },
        source="10x Space Ranger",
    )
    adata.var["gene_ids"] = gene_ids
    adata.uns["hagekit"]["n_dropped_spots"] = int(dropped)
    adata.uns["hagekit"]["n_outside_tissue"] = n_outside
    adata.uns["hagekit"]["coords_mpp"] = mpp_coords
    return adata


def prepare_visium(
    raw: Path | str,
    out_root: Path | str,
    *,
    name: str,
    image: Path | str | None = None,
    patient: str | None = None,
    dataset: str = "visium",
    in_tissue_only: bool = True,
    overwrite: bool = False,
    progress: Reporter | None = None,
) -> PrepareReport:
    """Prepare one Visium section ``name`` from a Space Ranger ``outs`` folder."""
    from hagekit.workspace import canonical_dataset

    ds = canonical_dataset(dataset)
    outs = require_dir(Path(raw), "Space Ranger outs folder")
    require_file(outs / "filtered_feature_bc_matrix.h5", "10x matrix file")
    require_dir(outs / "spatial", "spatial folder")
    img = Path(image) if image is not None else None
    if img is not None:
        require_file(img, "image file")
    else:
        log.warning("%s: no --image given; section %s prepared with counts only", outs, name)

    def build():
        return build_visium_section(outs, name=name, image=img, patient=patient, dataset=ds, in_tissue_only=in_tissue_only)

    files = tuple(p for p in (outs / "filtered_feature_bc_matrix.h5", img) if p is not None)
    src = SectionSource(name, patient or name, files, build, has_image=img is not None)
    return prepare_dataset([src], out_root, ds, overwrite=overwrite, progress=progress)
