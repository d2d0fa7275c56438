"""The Section model: one ST section as an AnnData file scanpy and squidpy can read.

``X``: raw integer counts (CSR). ``obs``: indexed by spot barcode, with ``patient`` and
``section``. ``var``: indexed by gene symbol (unique). ``obsm["spatial"]``: spot centres
(x, y) in full-resolution image pixels. ``uns["spatial"][section]``: scanpy's layout
(``images`` with the thumbnail under both ``hires`` and ``lowres``, the keys ``sc.pl.spatial``
and squidpy's ``img_res_key="hires"`` look for by default, ``scalefactors`` with
``spot_diameter_fullres`` and a ``tissue_<key>_scalef`` for each stored image, ``metadata``).
``uns["hagekit"]``: dataset, section, patient, image path (relative to the section file, so a
moved workspace keeps its images; :func:`section_image_path` resolves it, and still reads
older absolute paths), microns per pixel, spot diameter (µm), source.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hagekit.errors import DataError, at
from hagekit.io.atomic import visible_files

if TYPE_CHECKING:
    import anndata

__all__ = [
    "SectionInfo",
    "SectionLabels",
    "SectionImage",
    "make_section",
    "validate_section",
    "write_section",
    "read_section",
    "section_info",
    "list_sections",
    "dataset_sections",
    "section_image_path",
]

log = logging.getLogger(__name__)

#: Image keys of ``uns["spatial"][lib]["images"]``: squidpy's default ``img_res_key`` and
#: scanpy's ``sc.pl.spatial`` first choice (``hires``), and ``lowres``.
IMAGE_KEYS = ("hires", "lowres")


@dataclass(frozen=True)
class SectionInfo:
    """What a section file says about itself (cheap to read for listings)."""

    dataset: str
    section: str
    patient: str
    n_spots: int
    n_genes: int
    has_image: bool
    image_path: str
    mpp: float
    spot_diameter_um: float
    path: Path | None = None
    array: str = ""  # the array kind and µm per step, e.g. "ST 2k, 100 µm" ("" when unknown)


@dataclass(frozen=True)
class SectionLabels:
    """Which section this is: dataset, section and patient names, and where it came from."""

    dataset: str
    section: str
    patient: str
    source: str = ""


@dataclass(frozen=True)
class SectionImage:
    """A section's H&E image: path, µm per full-resolution pixel, spot size, optional thumbnail.

    ``thumbnail`` (H, W, 3 uint8) is stored as scanpy's ``hires`` and ``lowres`` image with
    ``thumbnail_scale`` = thumbnail px / full px. ``path`` None: a section without an image.
    """

    path: Path | str | None = None
    mpp: float | None = None
    spot_diameter_um: float = 55.0
    thumbnail: np.ndarray | None = None
    thumbnail_scale: float | None = None

    @property
    def present(self) -> bool:
        return self.path is not None and str(self.path) != ""


def _checked_counts(counts: Any, shape: tuple[int, int], name: str) -> Any:
    """CSR int32 raw counts of ``shape``; NaN, Inf, negative or fractional counts refused."""
    import scipy.sparse as sp

    X = sp.csr_matrix(counts) if not sp.issparse(counts) else counts.tocsr()
    if X.shape != shape:
        raise DataError(at(name, f"counts shape {X.shape} != ({shape[0]} spots, {shape[1]} genes)"))
    data = X.data
    if not np.all(np.isfinite(data)):
        raise DataError(at(name, "counts contain NaN or Inf"))
    if (data < 0).any():
        raise DataError(at(name, "counts contain negative values"))
    if not np.all(np.equal(np.mod(data, 1), 0)):
        raise DataError(at(name, "counts are not integers (raw counts expected)"))
    X = X.astype(np.int32)
    X.eliminate_zeros()
    return X


def _obs_frame(barcodes: Sequence[str], labels: SectionLabels, obs: dict[str, Sequence] | None, name: str) -> Any:
    """Spots indexed by barcode (unique), with ``patient``, ``section`` and the extra ``obs`` columns."""
    import pandas as pd

    obs_df = pd.DataFrame(index=pd.Index([str(b) for b in barcodes], name="barcode"))
    if obs_df.index.has_duplicates:
        dup = obs_df.index[obs_df.index.duplicated()][:3].tolist()
        raise DataError(at(name, f"duplicated spot barcodes, e.g. {dup}"))
    obs_df["patient"] = pd.Categorical([labels.patient] * len(barcodes))
    obs_df["section"] = pd.Categorical([labels.section] * len(barcodes))
    for key, values in (obs or {}).items():
        col = pd.Series(list(values), index=obs_df.index)
        # strings are stored as categoricals (what anndata would convert them to on write)
        obs_df[key] = col.astype("category") if col.dtype == object else col
    return obs_df


def _var_frame(genes: Sequence[str], name: str) -> Any:
    """Genes indexed by symbol, duplicates made unique (with a warning)."""
    import anndata as ad
    import pandas as pd

    var_index = pd.Index([str(g) for g in genes], name="gene")
    if var_index.has_duplicates:
        n_dup = int(var_index.duplicated().sum())
        log.warning("%s: %d duplicated gene names made unique (e.g. GENE-1)", name, n_dup)
        var_index = ad.utils.make_index_unique(var_index, join="-")
    return pd.DataFrame(index=var_index)


def _spatial_library(labels: SectionLabels, image: SectionImage, mpp_val: float) -> dict[str, Any]:
    """scanpy's ``uns["spatial"][section]``: images, scale factors, metadata."""
    spot_px = (image.spot_diameter_um / mpp_val
               if image.present and math.isfinite(mpp_val) and mpp_val > 0 else float("nan"))
    library: dict[str, Any] = {
        "images": {},
        "scalefactors": {"spot_diameter_fullres": spot_px},
        "metadata": {"source": labels.source or labels.dataset},
    }
    if image.thumbnail is not None:
        thumb = np.asarray(image.thumbnail, dtype=np.uint8)
        for key in IMAGE_KEYS:  # one small thumbnail serves both default keys
            library["images"][key] = thumb
            library["scalefactors"][f"tissue_{key}_scalef"] = float(image.thumbnail_scale or 1.0)
    return library


def make_section(
    counts,
    barcodes: Sequence[str],
    genes: Sequence[str],
    spatial: np.ndarray,
    labels: SectionLabels,
    *,
    image: SectionImage = SectionImage(),
    obs: dict[str, Sequence] | None = None,
) -> anndata.AnnData:
    """Build a validated section AnnData from counts (N x G), barcodes, genes and centres.

    ``spatial`` is (N, 2) x, y in full-resolution pixels. Gene names are made unique (with a
    warning); counts must be finite, non-negative integers.
    """
    import anndata as ad

    name = f"{labels.dataset}/{labels.section}"
    X = _checked_counts(counts, (len(barcodes), len(genes)), name)
    spatial = np.asarray(spatial, dtype=np.float64)
    if spatial.shape != (len(barcodes), 2):
        raise DataError(at(name, f"spatial must be ({len(barcodes)}, 2), got {spatial.shape}"))
    adata = ad.AnnData(X=X, obs=_obs_frame(barcodes, labels, obs, name), var=_var_frame(genes, name))
    adata.obsm["spatial"] = spatial
    mpp_val = float(image.mpp) if image.mpp is not None else float("nan")
    adata.uns["spatial"] = {labels.section: _spatial_library(labels, image, mpp_val)}
    adata.uns["hagekit"] = {
        "dataset": labels.dataset,
        "section": labels.section,
        "patient": labels.patient,
        "has_image": bool(image.present),
        "image_path": str(Path(image.path).resolve()) if image.present else "",  # type: ignore[arg-type]
        "mpp": mpp_val,
        "spot_diameter_um": float(image.spot_diameter_um),
        "source": labels.source,
        "hagekit_version": _version(),
    }
    validate_section(adata, source=name)
    return adata


def _version() -> str:
    from hagekit import __version__

    return __version__


def validate_section(adata: anndata.AnnData, *, source: str | Path = "section") -> None:
    """Check the layout contract; raise :class:`DataError` naming ``source`` otherwise."""
    meta = adata.uns.get("hagekit")
    if not isinstance(meta, dict):
        raise DataError(at(source, "not a hagekit section (no uns['hagekit']); prepare it with `hagekit data prepare`"))
    for key in ("dataset", "section", "patient", "has_image", "mpp", "spot_diameter_um"):
        if key not in meta:
            raise DataError(at(source, f"uns['hagekit'] lacks '{key}'"))
    if "spatial" not in adata.obsm or np.asarray(adata.obsm["spatial"]).shape != (adata.n_obs, 2):
        raise DataError(at(source, "obsm['spatial'] must hold (n_spots, 2) pixel centres"))
    for col in ("patient", "section"):
        if col not in adata.obs:
            raise DataError(at(source, f"obs lacks column '{col}'"))
    if adata.n_obs == 0:
        raise DataError(at(source, "section has no spots"))
    if adata.var_names.has_duplicates:
        raise DataError(at(source, "duplicated gene names"))


def write_section(adata: anndata.AnnData, path: Path | str) -> Path:
    """Write a section ``.h5ad`` atomically (gzip level 1: ~the size of level 4, faster)."""
    from hagekit.io.atomic import atomic_path

    path = Path(path)
    validate_section(adata, source=path)
    meta = adata.uns["hagekit"]
    original = meta.get("image_path", "")
    if original and Path(str(original)).is_absolute():
        meta["image_path"] = _relative_to(Path(str(original)), path.parent)
    try:
        with atomic_path(path) as tmp:
            adata.write_h5ad(tmp, compression="gzip", compression_opts=1)
    finally:
        meta["image_path"] = original  # the caller's object keeps its absolute path
    return path


def _relative_to(image: Path, folder: Path) -> str:
    """``image`` relative to ``folder`` (POSIX separators), or absolute on another drive."""
    import os

    try:
        return Path(os.path.relpath(image.resolve(), folder.resolve())).as_posix()
    except ValueError:  # Windows: another drive
        return str(image)


def section_image_path(adata: anndata.AnnData, section_path: Path | str | None) -> Path | None:
    """The section's image file: ``uns["hagekit"]["image_path"]`` resolved against the
    section file's folder (older files stored it absolute; those are used as they are)."""
    raw = str(adata.uns["hagekit"].get("image_path", "") or "")
    if not raw:
        return None
    p = Path(raw)
    if p.is_absolute() or section_path is None:
        return p
    return (Path(section_path).parent / p).resolve()


def _spatial_defaults(adata: anndata.AnnData) -> None:
    """Older files: a ``tissue_hires_scalef`` with no ``hires`` image gets the lowres one
    (or loses the stray scale factor), so squidpy/scanpy defaults find an image."""
    for lib in dict(adata.uns.get("spatial", {})).values():
        if not isinstance(lib, dict):
            continue
        images, sf = lib.setdefault("images", {}), lib.setdefault("scalefactors", {})
        if "hires" not in images:
            if "lowres" in images and "tissue_lowres_scalef" in sf:
                images["hires"] = images["lowres"]
                sf["tissue_hires_scalef"] = sf["tissue_lowres_scalef"]
            else:
                sf.pop("tissue_hires_scalef", None)


def read_section(path: Path | str, *, backed: bool = False) -> anndata.AnnData:
    """Read and validate a section file written by :func:`write_section`; ``uns["hagekit"]
    ["image_path"]`` comes back absolute (resolved against the file's folder)."""
    import anndata as ad

    path = Path(path)
    if not path.is_file():
        raise DataError(at(path, "section file not found"))
    try:
        adata = ad.read_h5ad(path, backed="r" if backed else None)
    except Exception as exc:  # h5py/anndata raise many types for corrupt files
        raise DataError(at(path, f"not a readable .h5ad file ({type(exc).__name__}: {exc})")) from None
    validate_section(adata, source=path)
    image = section_image_path(adata, path)  # the one place a stored (relative) path is resolved
    adata.uns["hagekit"]["image_path"] = str(image) if image is not None else ""
    if not backed:
        _check_finite_counts(adata, path)
        _spatial_defaults(adata)
    return adata


def _check_finite_counts(adata: anndata.AnnData, path: Path) -> None:
    x = adata.X
    values = np.asarray(x.data if hasattr(x, "data") and not isinstance(x, np.ndarray) else x)
    if values.dtype.kind == "f":
        bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
        if bad:
            raise DataError(at(path, f"counts hold {bad} NaN or infinite value(s); counts must be finite (re-prepare the section)"))


def section_info(path: Path | str) -> SectionInfo:
    """Read a section's summary without loading its counts."""
    path = Path(path)
    adata = read_section(path, backed=True)
    try:
        meta = dict(adata.uns["hagekit"])
        return SectionInfo(
            dataset=str(meta["dataset"]),
            section=str(meta["section"]),
            patient=str(meta["patient"]),
            n_spots=int(adata.n_obs),
            n_genes=int(adata.n_vars),
            has_image=bool(meta["has_image"]),
            image_path=str(section_image_path(adata, path) or ""),
            mpp=float(meta["mpp"]),
            spot_diameter_um=float(meta["spot_diameter_um"]),
            path=path,
            array=str(meta.get("array", "")),
        )
    finally:
        adata.file.close()


def dataset_sections(data_root: Path | str, dataset: str) -> list[Path]:
    """Section files of one dataset under a data root, sorted by name."""
    from hagekit.workspace import canonical_dataset

    folder = Path(data_root) / canonical_dataset(dataset)
    if not folder.is_dir():
        raise DataError(at(folder, f"no prepared dataset '{dataset}' here; run `hagekit data prepare`"))
    files = visible_files(folder, "*.h5ad")
    if not files:
        raise DataError(at(folder, "no .h5ad section files"))
    return files


def list_sections(data_root: Path | str, dataset: str | None = None) -> list[SectionInfo]:
    """Summaries of every section under ``data_root`` (or of one dataset)."""
    root = Path(data_root)
    if not root.is_dir():
        raise DataError(at(root, "data root not found"))
    if dataset is not None:
        files = dataset_sections(root, dataset)
    else:
        files = visible_files(root, "*/*.h5ad")
    infos = []
    for f in files:
        try:
            infos.append(section_info(f))
        except DataError as exc:  # one damaged section must not hide the others
            log.warning("skipped: %s", exc)
    return infos
