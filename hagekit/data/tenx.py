"""10x Genomics count matrices as Space Ranger writes them: the feature-barcode HDF5 or the
Matrix Market folder.

``filtered_feature_bc_matrix.h5``: group ``matrix`` with ``barcodes``, ``data``, ``indices``,
``indptr``, ``shape`` = (genes, barcodes) and ``features/{id,name,feature_type,genome}``.
``filtered_feature_bc_matrix/``: ``matrix.mtx(.gz)`` (genes x barcodes), ``barcodes.tsv(.gz)``
and ``features.tsv(.gz)`` (id, name, feature type; ``genes.tsv`` with two columns in Space
Ranger 1.x / Cell Ranger 2). Both give the same :class:`TenxCounts`.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hagekit.data.prepare import require_file
from hagekit.errors import DataError, at

if TYPE_CHECKING:
    import scipy.sparse as sp

__all__ = ["TenxCounts", "read_10x_h5", "read_10x_mtx", "read_10x_counts", "find_10x_counts"]

GENE_EXPRESSION = "Gene Expression"


@dataclass(frozen=True)
class TenxCounts:
    """Barcodes x genes raw counts with gene symbols and ids, and the file or folder read."""

    barcodes: list[str]
    genes: list[str]
    gene_ids: list[str]
    counts: sp.csr_matrix
    path: Path


def read_10x_h5(path: Path | str, *, feature_type: str = GENE_EXPRESSION):
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
    return _keep_type(barcodes, names, ids, ftype, X, path, feature_type)


def _keep_type(barcodes, names, ids, ftype, X, path: Path, feature_type: str):
    """Keep the features of ``feature_type``; check the counts are raw integers."""
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


def _open_text(path: Path):
    """A text handle on a plain or gzip file (by magic bytes)."""
    with path.open("rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt", encoding="utf-8") if gz else path.open("r", encoding="utf-8")


def _first(folder: Path, *names: str) -> Path | None:
    for name in names:
        for cand in (folder / f"{name}.gz", folder / name):
            if cand.is_file():
                return cand
    return None


def _need(folder: Path, what: str, *names: str) -> Path:
    found = _first(folder, *names)
    if found is None:
        raise DataError(at(folder, f"10x matrix folder lacks {what}"))
    return found


def _read_lines(path: Path) -> list[list[str]]:
    try:
        with _open_text(path) as fh:
            return [line.rstrip("\n\r").split("\t") for line in fh if line.strip()]
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(at(path, f"not a readable (gzip) text file ({exc})")) from None


def read_10x_mtx(folder: Path | str, *, feature_type: str = GENE_EXPRESSION):
    """Read a 10x Matrix Market folder (``matrix.mtx``, ``barcodes.tsv``, ``features.tsv`` or
    ``genes.tsv``, each optionally gzipped); same return value as :func:`read_10x_h5`."""
    import scipy.io
    import scipy.sparse as sp

    folder = Path(folder)
    matrix = _need(folder, "matrix.mtx(.gz)", "matrix.mtx")
    barcodes_file = _need(folder, "barcodes.tsv(.gz)", "barcodes.tsv")
    features_file = _need(folder, "features.tsv(.gz)", "features.tsv", "genes.tsv")
    barcodes = [row[0] for row in _read_lines(barcodes_file)]
    rows = _read_lines(features_file)
    ids = [r[0] for r in rows]
    names = [r[1] if len(r) > 1 else r[0] for r in rows]
    ftype = [r[2] if len(r) > 2 else feature_type for r in rows]
    try:
        with _open_text(matrix) as fh:
            m = scipy.io.mmread(fh)
    except (OSError, EOFError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(at(matrix, f"not a readable Matrix Market file ({exc})")) from None
    if m.shape != (len(ids), len(barcodes)):
        raise DataError(at(matrix, f"matrix is {m.shape[0]} x {m.shape[1]} but {features_file.name} has {len(ids)} "
                                   f"features and {barcodes_file.name} {len(barcodes)} barcodes"))
    X = sp.csr_matrix(m.T)
    return _keep_type(barcodes, names, ids, ftype, X, matrix, feature_type)


def find_10x_counts(outs: Path) -> Path:
    """The counts of a Space Ranger ``outs`` folder: the ``.h5`` if present, else the Matrix
    Market folder; a one-line error naming both when neither is there."""
    h5 = outs / "filtered_feature_bc_matrix.h5"
    folder = outs / "filtered_feature_bc_matrix"
    if h5.is_file():
        return h5
    if folder.is_dir():
        return folder
    raise DataError(at(outs, "no 10x counts: neither filtered_feature_bc_matrix.h5 nor a filtered_feature_bc_matrix/ folder"))


def read_10x_counts(path: Path | str) -> TenxCounts:
    """Counts from a 10x ``.h5`` file or Matrix Market folder."""
    path = Path(path)
    reader = read_10x_mtx if path.is_dir() else read_10x_h5
    barcodes, genes, ids, X = reader(path)
    return TenxCounts(barcodes, genes, ids, X, path)
