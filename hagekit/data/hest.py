"""Reader for HEST-1k samples (Jaume et al. 2024, ``MahmoodLab/hest`` on Hugging Face).

Layout of a (partial) HEST-1k download::

    st/<id>.h5ad          AnnData: raw counts, obsm["spatial"] = spot centres (x, y) in WSI
                          level-0 pixels (or obs pxl_col_in_fullres / pxl_row_in_fullres)
    wsis/<id>.tif         pyramidal generic TIFF (the H&E the spots are aligned to)
    metadata/<id>.json    pixel_size_um_estimated (µm/px), spot_diameter (µm), patient, ...

Microns per pixel: ``pixel_size_um_estimated`` (HEST's own estimate from the spot grid),
else ``pixel_size_um_embedded``, else the TIFF resolution tags.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hagekit.data.prepare import (
    PrepareReport,
    SectionSource,
    require_dir,
    select_sections,
)
from hagekit.errors import DataError, at
from hagekit.progress import Reporter

if TYPE_CHECKING:
    import anndata

    from hagekit.data.section import SectionImage

__all__ = ["find_hest_samples", "build_hest_section", "prepare_hest", "read_hest_metadata"]

log = logging.getLogger(__name__)

DATASET = "hest"


def read_hest_metadata(path: Path) -> dict[str, Any]:
    """The sample's metadata JSON as a dict (one-line error when missing or malformed)."""
    from hagekit.io.jsonfile import read_json_object

    return read_json_object(path, missing="metadata file not found")


def _positive(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def hest_patient(meta: dict[str, Any], sid: str, *, warn: bool = False) -> str:
    """The sample's patient, or its own id when HEST has none (835 of 1,229 rows of
    HEST_v1_1_0.csv: NaN/empty/"nan"), so ``--split patient`` never merges unrelated samples."""
    value = meta.get("patient")
    text = "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else str(value).strip()
    if text.lower() in {"", "nan", "none", "na", "n/a", "null"}:
        if warn:
            log.warning("%s: no patient in HEST metadata; the sample id is used as its patient", sid)
        return sid
    return text


def _find_wsi(raw: Path, sid: str) -> Path | None:
    for suffix in (".tif", ".tiff", ".btf", ".svs"):
        cand = raw / "wsis" / f"{sid}{suffix}"
        if cand.is_file():
            return cand
    return None


def find_hest_samples(raw: Path | str, ids: Sequence[str] | None = None, *, dataset: str = DATASET) -> list[SectionSource]:
    """Find HEST samples under ``raw`` (every ``st/<id>.h5ad``, or the ``ids`` given)."""
    raw = require_dir(Path(raw), "HEST folder")
    st = require_dir(raw / "st", "HEST st/ folder")
    found = sorted(p.name[: -len(".h5ad")] for p in st.glob("*.h5ad") if not p.name.startswith("."))
    if not found:
        raise DataError(at(st, "no <id>.h5ad files"))
    names = select_sections(found, ids, option="--ids")
    sources = []
    for sid in names:
        h5ad = st / f"{sid}.h5ad"
        meta_path = raw / "metadata" / f"{sid}.json"
        if not meta_path.is_file():
            raise DataError(at(h5ad, f"no metadata file {meta_path} (needed for the pixel size)"))
        wsi = _find_wsi(raw, sid)
        patches = raw / "patches" / f"{sid}.h5" if wsi is None and (raw / "patches" / f"{sid}.h5").is_file() else None
        if wsi is None and patches is None:
            log.warning("%s: no wsis/%s.tif and no patches/%s.h5; sample prepared with counts only", raw, sid, sid)
        elif patches is not None:
            log.info("%s: no WSI; its stored patches (patches/%s.h5) will be used by extract", raw, sid)
        meta = read_hest_metadata(meta_path)
        patient = hest_patient(meta, sid, warn=True)

        def build(h5ad=h5ad, wsi=wsi, meta_path=meta_path, sid=sid, patches=patches):
            return build_hest_section(h5ad, meta_path, wsi=wsi, section=sid, dataset=dataset, patches=patches)

        files = tuple(p for p in (h5ad, wsi, patches, meta_path) if p is not None)
        sources.append(SectionSource(sid, patient, files, build, has_image=wsi is not None or patches is not None))
    return sources


def _hest_spatial(adata: anndata.AnnData, path: Path) -> np.ndarray:
    if "spatial" in adata.obsm and np.asarray(adata.obsm["spatial"]).shape == (adata.n_obs, 2):
        return np.asarray(adata.obsm["spatial"], dtype=np.float64)
    if {"pxl_col_in_fullres", "pxl_row_in_fullres"} <= set(adata.obs.columns):
        return np.stack(
            [adata.obs["pxl_col_in_fullres"].to_numpy(float), adata.obs["pxl_row_in_fullres"].to_numpy(float)], axis=1
        )
    raise DataError(at(path, "no spot centres (obsm['spatial'] or obs pxl_col_in_fullres/pxl_row_in_fullres)"))


def _read_hest_h5ad(h5ad: Path) -> tuple[anndata.AnnData, np.ndarray, Any]:
    """(the sample, its spot centres, its raw counts), each checked."""
    import anndata as ad

    try:
        src = ad.read_h5ad(h5ad)
    except Exception as exc:  # h5py/anndata raise many types for corrupt files
        raise DataError(at(h5ad, f"not a readable .h5ad file ({type(exc).__name__}: {exc})")) from None
    if src.n_obs == 0:
        raise DataError(at(h5ad, "no spots"))
    spatial = _hest_spatial(src, h5ad)
    if not np.isfinite(spatial).all():
        raise DataError(at(h5ad, "spot centres contain NaN"))
    X = src.raw.X if src.raw is not None and src.raw.shape == src.shape else src.X
    _check_hest_counts(X, src, h5ad)
    return src, spatial, X


def _kept_spots(src: anndata.AnnData, h5ad: Path, wsi: Path | None, patches: Path | None) -> np.ndarray:
    """The spots in the tissue and, with stored patches but no WSI, those with a patch."""
    if "in_tissue" in src.obs.columns:
        inside = src.obs["in_tissue"].to_numpy() == 1
        n_out = int((~inside).sum())
        if n_out:
            log.info("%s: %d spot(s) outside the tissue dropped", h5ad, n_out)
    else:
        inside = np.ones(src.n_obs, dtype=bool)
    if not inside.any():
        raise DataError(at(h5ad, "no spot has in_tissue == 1"))
    if wsi is None and patches is not None:
        from hagekit.io.hest import read_stored_index

        stored = set(read_stored_index(patches)[0].tolist())
        has_patch = np.isin(np.asarray(src.obs_names.astype(str)), list(stored))
        if not (inside & has_patch).any():
            raise DataError(at(patches, f"no stored patch matches a spot barcode of {h5ad.name}"))
        if (inside & ~has_patch).any():
            log.info("%s: %d spot(s) without a stored patch dropped", h5ad, int((inside & ~has_patch).sum()))
        inside &= has_patch
    return inside


def _hest_image(meta: dict[str, Any], meta_path: Path, wsi: Path | None, patches: Path | None,
                spots: tuple[np.ndarray, list[str]]) -> SectionImage:
    """The section's image: the WSI (spots checked inside it; µm/px from the metadata, else its
    TIFF tags), else none (µm/px kept when stored patches stand in for it)."""
    from hagekit.data.section import SectionImage
    from hagekit.slides.info import open_image_info
    from hagekit.slides.patches import check_spots_inside

    mpp = _positive(meta.get("pixel_size_um_estimated")) or _positive(meta.get("pixel_size_um_embedded"))
    thumb = scale = None
    if wsi is not None:
        info = open_image_info(wsi)
        check_spots_inside(spots[0], info.width, info.height, source=wsi, barcodes=spots[1])
        thumb, scale = info.thumbnail, info.thumbnail_scale
        if mpp is None:
            mpp = info.mpp
        if mpp is None:
            raise DataError(at(meta_path, "no pixel_size_um_estimated / pixel_size_um_embedded and no TIFF resolution tags"))
    else:
        mpp = mpp if patches is not None else None
    spot_um = _positive(meta.get("spot_diameter")) or (55.0 if "visium" in str(meta.get("st_technology", "")).lower() else 100.0)
    return SectionImage(wsi, mpp, spot_um, thumb, scale)


def build_hest_section(h5ad: Path, meta_path: Path, *, wsi: Path | None, section: str, dataset: str = DATASET,
                       patches: Path | None = None) -> anndata.AnnData:
    """Read one HEST sample into the Section layout; without a WSI, ``patches`` (HEST's stored
    ``patches/<id>.h5``) keeps the spots that have a patch and is recorded for ``extract``."""
    from hagekit.data.section import SectionLabels, make_section

    meta = read_hest_metadata(meta_path)
    src, spatial, X = _read_hest_h5ad(h5ad)
    inside = _kept_spots(src, h5ad, wsi, patches)
    image = _hest_image(meta, meta_path, wsi, patches, (spatial[inside], list(src.obs_names[inside])))
    idx = np.flatnonzero(inside)
    obs: dict[str, Any] = {}
    for a, b in (("array_x", "array_col"), ("array_y", "array_row")):
        if b in src.obs.columns:
            obs[a] = src.obs[b].to_numpy()[idx].astype(np.int64)
    labels = SectionLabels(dataset, section, hest_patient(meta, section), f"HEST-1k {meta.get('dataset_title', '')}".strip())
    adata = make_section(X[idx], list(src.obs_names[idx]), list(src.var_names), spatial[idx], labels,
                         image=image, obs=obs)
    adata.uns["hagekit"]["n_dropped_spots"] = int(src.n_obs - len(idx))
    if wsi is None and patches is not None:  # H&E as HEST's stored patches: extract reads them
        adata.uns["hagekit"]["has_image"] = True
        adata.uns["hagekit"]["patches_path"] = str(Path(patches).resolve())
    for key in ("st_technology", "organ", "species", "oncotree_code", "license"):
        if meta.get(key) is not None:
            adata.uns["hagekit"][f"hest_{key}"] = str(meta[key])
    return adata


def _check_hest_counts(X: Any, src: anndata.AnnData, path: Path) -> None:
    import scipy.sparse as sp

    values = X.data if sp.issparse(X) else np.asarray(X)
    if values.size == 0:
        return
    if not np.isfinite(values).all():
        raise DataError(at(path, "counts contain NaN or infinite values (raw counts expected)"))
    if (values < 0).any():
        raise DataError(at(path, "counts contain negative values (raw counts expected)"))
    if (np.mod(values, 1) != 0).any():
        raise DataError(at(path, "counts are not integers (normalised data? raw counts expected)"))


def prepare_hest(raw: Path | str, out_root: Path | str, *, ids: Sequence[str] | None = None, dataset: str = DATASET,
                 overwrite: bool = False, progress: Reporter | None = None) -> PrepareReport:
    """Prepare HEST-1k samples (all under ``st/``, or ``ids``) into ``<out_root>/<dataset>/``."""
    from hagekit.data.prepare import prepare_layout

    return prepare_layout(find_hest_samples, raw, ids, out_root, dataset, overwrite=overwrite, progress=progress)
