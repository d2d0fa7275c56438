"""Shared by panels, co-expression training and quality checks: load sections, normalise, correlate."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hagekit.errors import ConfigError, DataError, at
from hagekit.progress import Reporter, track

if TYPE_CHECKING:
    import anndata

log = logging.getLogger(__name__)

#: Library size every spot is normalised to before log1p (counts per 10k).
NORM_SCALE = 1e4


def load_sections(
    data_root: Path | str,
    dataset: str,
    sections: Sequence[str] | None = None,
    *,
    progress: Reporter | None = None,
    option: str = "--sections",
) -> dict[str, anndata.AnnData]:
    """Read the chosen sections of a dataset (all when ``sections`` is None), in the given order.

    ``option`` is how the command calls the section list in its errors.
    """
    from hagekit.data.section import dataset_sections, read_section

    files = {f.stem: f for f in dataset_sections(data_root, dataset)}
    names = list(dict.fromkeys(sections)) if sections else list(files)
    unknown = [s for s in names if s not in files]
    if unknown:
        raise ConfigError(
            f"{option}: unknown section(s) {', '.join(unknown)} in {Path(data_root) / dataset} "
            f"(available: {', '.join(files)})"
        )
    return {s: read_section(files[s]) for s in track(names, f"reading {len(names)} sections", progress=progress)}


def section_names_of(data_root: Path | str, dataset: str) -> list[str]:
    """Section names of a dataset (file stems), sorted."""
    from hagekit.data.section import dataset_sections

    return [f.stem for f in dataset_sections(data_root, dataset)]


def common_genes(sections: Mapping[str, anndata.AnnData]) -> list[str]:
    """Genes present in every section, in the first section's order."""
    names = list(sections)
    if not names:
        raise ConfigError("--sections: no sections chosen")
    shared = set(sections[names[0]].var_names)
    for s in names[1:]:
        shared &= set(sections[s].var_names)
    return [g for g in sections[names[0]].var_names if g in shared]


def locate_genes(genes: Sequence[str], var_names: Sequence[str], *, source: str) -> list[int]:
    """Column indices of panel genes in a section (exact, then case-insensitive).

    Raises :class:`DataError` naming the absent genes: a panel must fit the data.
    """
    from hagekit.genes.embeddings import match_symbols, symbol_examples

    idx, missing = match_symbols(list(genes), list(var_names))
    if missing:
        raise DataError(
            at(source, f"{len(missing)} of {len(genes)} panel genes are absent from the data ({symbol_examples(missing)})")
        )
    return idx


def log_normalised(adata: anndata.AnnData, columns: Sequence[int] | None = None) -> np.ndarray:
    """log1p of counts scaled to ``NORM_SCALE`` per spot (library size over all genes), (N, G) float32."""
    import scipy.sparse as sp

    X = adata.X
    totals = np.asarray(X.sum(axis=1)).ravel().astype(np.float64)
    safe = np.where(totals > 0, totals, 1.0)
    if columns is not None:
        X = X[:, list(columns)]
    dense = X.toarray() if sp.issparse(X) else np.asarray(X)
    return np.log1p(dense.astype(np.float64) / safe[:, None] * NORM_SCALE).astype(np.float32)


def standardise(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns of ``Y`` (N spots x G genes) centred and scaled so that ``Z.T @ Z`` is Pearson's r.

    Returns ``(Z (N, G) float32, valid (G,) bool)``; genes constant across spots are not
    valid and their columns are 0.
    """
    Y = np.asarray(Y, dtype=np.float64)
    Z = Y - Y.mean(axis=0, keepdims=True)
    std = np.sqrt((Z**2).mean(axis=0))
    valid = std > 1e-12
    Z[:, valid] /= std[valid] * np.sqrt(max(Y.shape[0], 1))
    Z[:, ~valid] = 0.0
    return Z.astype(np.float32), valid


def correlated_pairs(
    Z: np.ndarray, valid: np.ndarray, threshold: float, *, min_partners: int = 0, block: int = 1024
) -> np.ndarray:
    """Gene pairs (i < j, unique) with Pearson r > ``threshold``, plus each gene's
    ``min_partners`` most correlated positive partners; (P, 2) int64.

    Works in row blocks, so the G x G matrix is never held (12k genes fit in ~50 MB).
    """
    G = Z.shape[1]
    found: list[np.ndarray] = []
    valid_idx = np.flatnonzero(valid)
    for start in range(0, G, block):
        rows = np.arange(start, min(start + block, G))
        rows = rows[valid[rows]]
        if rows.size == 0:
            continue
        corr = Z[:, rows].T @ Z  # (b, G)
        corr[:, ~valid] = -np.inf
        corr[np.arange(rows.size), rows] = -np.inf
        bi, j = np.nonzero(corr > threshold)
        found.append(np.stack([rows[bi], j], axis=1))
        m = min(min_partners, valid_idx.size - 1)
        if m > 0:
            part = np.argpartition(-corr, m - 1, axis=1)[:, :m]
            vals = np.take_along_axis(corr, part, axis=1)
            keep = vals > 0
            found.append(np.stack([np.repeat(rows, m)[keep.ravel()], part.ravel()[keep.ravel()]], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.concatenate(found).astype(np.int64)
    pairs = np.sort(pairs, axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(pairs, axis=0)


def mean_correlated_pairs(Zs: list[np.ndarray], threshold: float, *, block: int = 1024) -> np.ndarray:
    """Gene pairs (i < j) whose Pearson r averaged over sections exceeds ``threshold``.

    ``Zs`` are :func:`standardise` outputs with the same gene columns (a gene constant in a
    section contributes r = 0 there). Row blocks keep memory at ``block`` x G per section.
    """
    G = Zs[0].shape[1]
    found: list[np.ndarray] = []
    for start in range(0, G, block):
        rows = np.arange(start, min(start + block, G))
        total = np.zeros((rows.size, G), dtype=np.float32)
        for Z in Zs:
            total += Z[:, rows].T @ Z
        mean = total / len(Zs)
        bi, j = np.nonzero(mean > threshold)
        keep = j > rows[bi]
        found.append(np.stack([rows[bi][keep], j[keep]], axis=1))
    pairs = np.concatenate(found).astype(np.int64) if found else np.zeros((0, 2), np.int64)
    return pairs
