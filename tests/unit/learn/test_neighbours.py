"""Spot neighbourhoods: pitch, radius / k-nearest graphs per section, neighbour means."""

from __future__ import annotations

import numpy as np
import pytest

from hagekit.errors import ConfigError, DataError
from hagekit.learn.neighbours import (
    context_features,
    neighbour_graph,
    neighbour_mean,
    spot_pitch,
)


def _grid(nx: int, ny: int, step: float = 100.0) -> np.ndarray:
    xx, yy = np.meshgrid(np.arange(nx) * step, np.arange(ny) * step)
    return np.stack([xx.ravel(), yy.ravel()], axis=1)


def _hex(nx: int, ny: int, step: float = 100.0) -> np.ndarray:
    """Visium-like hexagonal lattice: rows offset by half a step, row spacing step*sqrt(3)/2."""
    pts = [(x * step + (y % 2) * step / 2, y * step * np.sqrt(3) / 2) for y in range(ny) for x in range(nx)]
    return np.asarray(pts)


def test_spot_pitch_of_grids_and_degenerate_input() -> None:
    assert spot_pitch(_grid(5, 4, 37.5)) == pytest.approx(37.5)
    assert spot_pitch(_hex(6, 6, 100.0)) == pytest.approx(100.0)
    # a duplicated spot does not make the pitch 0
    s = np.concatenate([_grid(3, 3), _grid(3, 3)[:1]])
    assert spot_pitch(s) == pytest.approx(100.0)
    assert np.isnan(spot_pitch(np.zeros((1, 2))))
    with pytest.raises(DataError, match=r"\(N, 2\)"):
        spot_pitch(np.zeros((4, 3)))


def test_radius_graph_counts_on_square_and_hex_grids() -> None:
    g = neighbour_graph(_grid(5, 5), radius=1.0)
    deg = np.asarray(g.sum(axis=1)).ravel()
    assert deg[12] == 4 and deg[0] == 2  # centre: 4-neighbourhood, corner: 2
    g = neighbour_graph(_grid(5, 5), radius=1.5)
    assert np.asarray(g.sum(axis=1)).ravel()[12] == 8  # diagonals at sqrt(2) pitches
    h = neighbour_graph(_hex(7, 7), radius=1.1)
    centre = 3 * 7 + 3
    assert np.asarray(h.sum(axis=1)).ravel()[centre] == 6  # the hexagonal ring
    assert (g != g.T).nnz == 0 and g.diagonal().sum() == 0
    assert set(np.unique(g.data)) == {1.0}


def test_groups_are_never_neighbours_and_pitch_is_per_group() -> None:
    a = _grid(4, 4, 100.0)
    b = _grid(4, 4, 10.0)  # another section, same place, a finer pitch
    s = np.concatenate([a, b])
    groups = np.array(["s1"] * 16 + ["s2"] * 16)
    g = neighbour_graph(s, radius=1.0, groups=groups).tocoo()
    assert (groups[g.row] == groups[g.col]).all()
    deg = np.asarray(g.tocsr().sum(axis=1)).ravel()
    np.testing.assert_array_equal(deg[:16], deg[16:])  # the same lattice in pitch units
    without = neighbour_graph(s, radius=1.0)
    assert (without.tocoo().row < 16).sum() > 0 and without.nnz != g.nnz


def test_k_nearest_and_include_self() -> None:
    s = _grid(6, 6)
    g = neighbour_graph(s, k=3)
    assert (np.asarray(g.sum(axis=1)).ravel() == 3).all() and g.diagonal().sum() == 0
    g = neighbour_graph(s[:3], k=10)  # capped at the group's other spots
    assert (np.asarray(g.sum(axis=1)).ravel() == 2).all()
    gs = neighbour_graph(s, radius=1.0, include_self=True)
    assert gs.diagonal().sum() == 36
    # duplicates: self may not come first in the tree's answer; it is still excluded
    dup = np.zeros((4, 2))
    gd = neighbour_graph(dup, k=2)
    assert gd.diagonal().sum() == 0 and (np.asarray(gd.sum(axis=1)).ravel() == 2).all()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="radius"):
        neighbour_graph(_grid(3, 3), radius=0)
    with pytest.raises(ConfigError, match="k"):
        neighbour_graph(_grid(3, 3), k=0)
    with pytest.raises(DataError, match="groups"):
        neighbour_graph(_grid(3, 3), groups=np.zeros(4))
    with pytest.raises(DataError, match="NaN"):
        neighbour_graph(np.array([[0.0, np.nan], [1.0, 1.0]]))


def test_neighbour_mean_and_isolated_spots() -> None:
    s = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [50.0, 0.0]])
    X = np.array([[1.0], [2.0], [4.0], [9.0]], dtype=np.float32)
    g = neighbour_graph(s, radius=1.0)
    m = neighbour_mean(X, g)
    np.testing.assert_allclose(m.ravel(), [2.0, 2.5, 2.0, 9.0])  # the isolated spot keeps its row
    assert m.dtype == np.float32
    with pytest.raises(DataError, match="graph"):
        neighbour_mean(X[:3], g)


def test_context_features_use_train_and_validation_spots_of_a_section() -> None:
    rng = np.random.default_rng(0)
    s = _grid(8, 8)
    X = rng.normal(size=(64, 3)).astype(np.float32)
    full = neighbour_mean(X, neighbour_graph(s, radius=1.0))
    va = rng.permutation(64)[:13]
    tr = np.setdiff1d(np.arange(64), va)
    g = np.zeros(64, dtype=int)
    c_tr, c_va = context_features(X[tr], s[tr], radius=1.0, groups=g[tr], extra=(X[va], s[va], g[va]))
    np.testing.assert_allclose(c_tr, full[tr], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c_va, full[va], rtol=1e-5, atol=1e-6)
    alone, none = context_features(X, s, radius=1.0)
    assert none is None
    np.testing.assert_allclose(alone, full)


def test_fifty_thousand_spots_build_a_sparse_graph() -> None:
    side = 224  # 50,176 spots (Visium HD scale); timings and memory: benchmarks/context_scale.py
    s = _hex(side, side, 2.0)
    g = neighbour_graph(s, radius=1.5)
    deg = np.asarray(g.sum(axis=1)).ravel()
    assert g.shape == (side * side, side * side)
    assert deg.max() == 6 and g.nnz <= 6 * side * side  # O(N k) storage, not O(N^2)
