"""Spatial neighbourhoods of spots: who is next to whom in a section, from positions alone.

Context methods (``ridge-ctx``, HAGE with ``context = "mean"``, TRIPLEX-style models) read a
spot's neighbours' *features*, never their expression. Neighbourhoods come from a k-d tree
(:class:`scipy.spatial.cKDTree`), so a 50,000-spot section takes milliseconds and O(N k)
memory; the radius is in spot pitches (the median nearest-neighbour distance of the section),
so one setting means the same on Visium (pitch ~100 µm), ST (~200 µm) and Visium HD bins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from hagekit.errors import ConfigError, DataError

if TYPE_CHECKING:  # pragma: no cover
    from scipy.sparse import csr_matrix

__all__ = ["spot_pitch", "neighbour_graph", "neighbour_mean", "neighbour_features", "context_features"]

#: Relative slack on the radius, so that spots at exactly ``radius`` pitches (a grid) count.
_RADIUS_SLACK = 1e-6


def _positions(spatial: Any, what: str = "spatial") -> np.ndarray:
    s = np.asarray(spatial, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != 2:
        raise DataError(f"{what}: expected (N, 2) spot positions, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise DataError(f"{what}: positions contain NaN or infinite values")
    return s


def spot_pitch(spatial: np.ndarray) -> float:
    """Median nearest-neighbour distance of (N, 2) positions, in their unit (pixels, µm).

    Repeated positions count once; ``nan`` when fewer than two distinct positions exist
    (no neighbourhood can be defined).
    """
    from scipy.spatial import cKDTree

    s = np.unique(_positions(spatial), axis=0)
    if len(s) < 2:
        return float("nan")
    dist, _ = cKDTree(s).query(s, k=2)
    return float(np.median(dist[:, 1]))


def _group_edges(s: np.ndarray, radius: float, k: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of one group's neighbour pairs (self excluded), local indices."""
    from scipy.spatial import cKDTree

    n = len(s)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    tree = cKDTree(s)
    if k is not None:
        kk = min(k, n - 1)
        _, idx = tree.query(s, k=kk + 1)
        idx = idx.reshape(n, kk + 1)
        keep = idx != np.arange(n)[:, None]
        keep &= np.cumsum(keep, axis=1) <= kk  # a duplicate may push self out of the list
        rows = np.repeat(np.arange(n), kk + 1).reshape(n, kk + 1)[keep]
        return rows.astype(np.int64), idx[keep].astype(np.int64)
    pitch = spot_pitch(s)
    if not np.isfinite(pitch):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pairs = tree.query_pairs(radius * pitch * (1 + _RADIUS_SLACK), output_type="ndarray")
    pairs = pairs.astype(np.int64)
    return np.concatenate([pairs[:, 0], pairs[:, 1]]), np.concatenate([pairs[:, 1], pairs[:, 0]])


def neighbour_graph(
    spatial: np.ndarray,
    *,
    radius: float = 1.5,
    groups: np.ndarray | None = None,
    k: int | None = None,
    include_self: bool = False,
) -> csr_matrix:
    """(N, N) 0/1 adjacency (float32 CSR): row ``i`` marks spot ``i``'s neighbours.

    Neighbours lie within ``radius`` spot pitches (the pitch measured per group), or are the
    ``k`` nearest spots when ``k`` is given (then rows need not be symmetric). Spots of
    different ``groups`` (sections) are never neighbours. ``include_self`` adds the diagonal.
    """
    from scipy.sparse import coo_matrix

    s = _positions(spatial)
    n = len(s)
    if k is not None and (isinstance(k, bool) or int(k) < 1):
        raise ConfigError(f"neighbours k: need a positive number of neighbours, got {k}")
    if k is None and not (np.isfinite(radius) and radius > 0):
        raise ConfigError(f"neighbours radius: need a positive number of spot pitches, got {radius}")
    if groups is None:
        members = [np.arange(n)]
    else:
        g = np.asarray(groups)
        if g.shape != (n,):
            raise DataError(f"neighbours groups: {g.shape[0] if g.ndim else 0} entries for {n} spots")
        _, inv = np.unique(g, return_inverse=True)
        order = np.argsort(inv, kind="stable")
        members = np.split(order, np.flatnonzero(np.diff(inv[order])) + 1)
    rows, cols = [], []
    for idx in members:
        r, c = _group_edges(s[idx], float(radius), None if k is None else int(k))
        rows.append(idx[r])
        cols.append(idx[c])
    if include_self:
        rows.append(np.arange(n))
        cols.append(np.arange(n))
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n, n)).tocsr()
    graph.data[:] = 1.0  # duplicates summed by tocsr: back to 0/1
    return graph


def neighbour_mean(X: np.ndarray, graph: Any) -> np.ndarray:
    """Mean of each spot's neighbours' rows of ``X`` (N, D); a spot without neighbours gets
    its own row. Float32."""
    X = np.asarray(X, dtype=np.float32)
    if graph.shape != (len(X), len(X)):
        raise DataError(f"neighbour_mean: graph is {graph.shape} for {len(X)} rows")
    deg = np.asarray(graph.sum(axis=1), dtype=np.float32).ravel()
    summed = np.asarray(graph.astype(np.float32) @ X, dtype=np.float32)
    has = deg > 0
    summed[has] /= deg[has, None]
    summed[~has] = X[~has]
    return summed


def neighbour_features(X: np.ndarray, spatial: np.ndarray, *, radius: float = 1.5,
                       groups: np.ndarray | None = None, k: int | None = None) -> np.ndarray:
    """Neighbour-mean features (N, D): :func:`neighbour_graph` then :func:`neighbour_mean`."""
    X = np.asarray(X, dtype=np.float32)
    if spatial is None or len(spatial) != len(X):
        raise DataError(f"context: need one position per spot ({len(X)}), got "
                        f"{'none' if spatial is None else len(spatial)}")
    return neighbour_mean(X, neighbour_graph(spatial, radius=radius, groups=groups, k=k))


def context_features(
    X: np.ndarray,
    spatial: np.ndarray,
    *,
    radius: float = 1.5,
    groups: np.ndarray | None = None,
    extra: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Neighbour means for ``X`` and, given ``extra = (X_val, spatial_val, groups_val)``, for
    the validation spots too, each neighbourhood drawn from train + validation spots of the
    same group (section): features and positions only, never expression.

    Without ``groups_val`` the validation spots form their own neighbourhoods (they cannot be
    placed in a section). Returns ``(ctx_train, ctx_val or None)``.
    """
    if extra is None or extra[0] is None or len(extra[0]) == 0:
        return neighbour_features(X, spatial, radius=radius, groups=groups), None
    Xv, Sv, Gv = extra
    if Gv is None or groups is None:
        return (neighbour_features(X, spatial, radius=radius, groups=groups),
                neighbour_features(Xv, Sv, radius=radius, groups=Gv))
    if Sv is None or len(Sv) != len(Xv):
        raise DataError("context: validation spots need positions (spatial_val)")
    both = neighbour_features(np.concatenate([X, Xv]), np.concatenate([spatial, Sv]), radius=radius,
                              groups=np.concatenate([np.asarray(groups), np.asarray(Gv)]))
    return both[: len(X)], both[len(X):]
