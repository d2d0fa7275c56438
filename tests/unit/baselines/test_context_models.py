"""The section-context methods (``triplex``, ``histogene``, ``hist2st``): the estimator contract on
a tiny input (fit, predict, clone, save, load, seeded reproducibility), their position-derived
inputs worked by hand, and that they read the neighbourhood (features only)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import clone

from hagekit.baselines import make_method
from hagekit.errors import ConfigError, DataError

pytestmark = pytest.mark.usefixtures("one_torch_thread_module")

#: Tiny settings per method (everything else at its default).
TINY = {
    "triplex": {"d_model": 8, "heads": 2, "depth_global": 2, "depth_neighbour": 1, "epochs": 3, "device": "cpu"},
    "histogene": {"d_model": 8, "heads": 2, "layers": 1, "epochs": 3, "device": "cpu"},
    "hist2st": {"d_model": 8, "heads": 2, "depth_transformer": 1, "depth_graph": 2, "epochs": 3, "device": "cpu"},
}
METHODS = list(TINY)


def sections(n_sections=3, side=6, d=6, g=4, seed=0):
    """Square-grid sections whose expression depends on the neighbours' features (a 3 x 3 mean)."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(d, g))
    Xs, Ys, Ss, Gs = [], [], [], []
    for sec in range(n_sections):
        grid = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)
        X = rng.normal(size=(len(grid), d)).astype(np.float32)
        img = X.reshape(side, side, d)
        pad = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
        local = sum(pad[1 + dy : 1 + dy + side, 1 + dx : 1 + dx + side] for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9
        Y = np.log1p(np.exp(local.reshape(-1, d) @ W)).astype(np.float32)
        Xs.append(X), Ys.append(Y), Ss.append(grid.astype(np.float64) * 100.0 + 7.0), Gs.append(np.full(len(grid), sec))
    return np.concatenate(Xs), np.concatenate(Ys), np.concatenate(Ss), np.concatenate(Gs)


def _fit(name, seed=0, **kw):
    X, Y, S, G = sections()
    val = np.arange(len(X)) % 5 == 0
    est = make_method(name, **{**TINY[name], "random_state": seed, **kw})
    est.fit(X[~val], Y[~val], X_val=X[val], Y_val=Y[val], spatial=S[~val], spatial_val=S[val],
            groups=G[~val], groups_val=G[val])
    return est, X[G == 2], S[G == 2]


@pytest.mark.parametrize("name", METHODS)
def test_fit_predict_save_load_and_seed(name, tmp_path):
    est, Xt, St = _fit(name)
    pred = est.predict(Xt, spatial=St)
    assert pred.shape == (len(Xt), 4) and pred.dtype == np.float32 and np.isfinite(pred).all()
    assert len(est.history_) == 3 and all("val_pcc" in h for h in est.history_)
    # clone: same parameters, unfitted
    twin = clone(est)
    assert twin.get_params() == est.get_params() and not hasattr(twin, "n_features_in_")
    # save / load: the same predictions
    out = est.save(tmp_path / name)
    assert json.loads((out / "estimator.json").read_text())["n_genes_"] == 4
    loaded = type(est).load(out)
    np.testing.assert_allclose(loaded.predict(Xt, spatial=St), pred, rtol=0, atol=1e-5)
    # a seed gives the same numbers, another seed others
    again, _, _ = _fit(name)
    np.testing.assert_array_equal(again.predict(Xt, spatial=St), pred)
    other, _, _ = _fit(name, seed=1)
    assert not np.allclose(other.predict(Xt, spatial=St), pred)


@pytest.mark.parametrize("name", METHODS)
def test_prediction_reads_the_neighbourhood_not_only_the_spot(name):
    est, Xt, St = _fit(name)
    base = est.predict(Xt, spatial=St)
    changed = Xt.copy()
    changed[7] += 3.0  # spot 7 at grid (1, 1); spot 0 at (0, 0) is its diagonal neighbour
    moved = est.predict(changed, spatial=St)
    assert not np.allclose(moved[0], base[0], atol=1e-6)


@pytest.mark.parametrize("name", METHODS)
def test_validation_without_groups_val_holds_out_training_spots(name):
    X, Y, S, G = sections()
    est = make_method(name, **TINY[name]).fit(X, Y, spatial=S, groups=G)
    assert np.isfinite([h["val_pcc"] for h in est.history_]).all()
    with pytest.raises(DataError, match="groups_val has"):
        make_method(name, **TINY[name]).fit(X, Y, X_val=X[:5], Y_val=Y[:5], spatial=S, spatial_val=S[:5],
                                            groups=G, groups_val=G[:4])
    with pytest.raises(DataError, match="spatial must be finite"):
        make_method(name, **TINY[name]).fit(X, Y, spatial=S[:, :1], groups=G)


def test_bad_settings_are_refused_by_name():
    X, Y, S, G = sections(n_sections=1)
    with pytest.raises(ConfigError, match="d_model .* multiple of heads"):
        make_method("histogene", d_model=10, heads=4, device="cpu").fit(X, Y, spatial=S)
    with pytest.raises(ConfigError, match="triplex depth_global"):
        make_method("triplex", depth_global=1, device="cpu").fit(X, Y, spatial=S)
    with pytest.raises(ConfigError, match=r"\[baselines\.hist2st\] neighbours = 0: must be an integer >= 1"):
        make_method("hist2st", neighbours=0, device="cpu")  # a declared range: refused before any fit


def test_load_refuses_another_method(tmp_path):
    est, _, _ = _fit("histogene")
    out = est.save(tmp_path / "h")
    from hagekit.baselines.triplex import TriplexRegressor

    with pytest.raises(DataError, match="not a TriplexRegressor"):
        TriplexRegressor.load(out)


def test_neighbour_slots_by_hand():
    from hagekit.baselines.triplex import neighbour_slots

    grid = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [3, 3]])
    slots, present = neighbour_slots(grid, 1)
    assert slots.shape == (5, 9)
    # spot 0 at (0, 0): cells (dy, dx) row-major; present: itself, right (1,0), below (0,1), diagonal (1,1)
    assert present[0].tolist() == [False, False, False, False, True, True, False, True, True]
    assert slots[0, [4, 5, 7, 8]].tolist() == [0, 1, 2, 3]
    assert present[4].sum() == 1 and slots[4, 4] == 4  # isolated: only itself
    assert (slots[~present] == np.repeat(np.arange(5), 9).reshape(5, 9)[~present]).all()


def test_triplex_attention_bias_index_matches_offsets():
    from hagekit.baselines.triplex import _offset_bias_index

    index, n_offsets = _offset_bias_index(1)
    assert index.shape == (9, 9) and n_offsets == 9  # |dy|, |dx| in {0, 1, 2}
    assert index[0, 0] == index[4, 4] and index[0, 8] == index[8, 0] and index[0, 1] == index[1, 0] != index[0, 0]


def test_apeg_scatters_averages_and_samples_back():
    import torch

    from hagekit.baselines.triplex import APEG

    apeg = APEG(2, kernel_size=3)
    with torch.no_grad():  # identity kernel: the output is the cell mean at each spot
        apeg.proj.weight.zero_()
        apeg.proj.weight[:, 0, 1, 1] = 1.0
        apeg.proj.bias.zero_()
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [10.0, 0.0]]])
    grid = torch.tensor([[0, 0], [0, 0], [2, 1]])
    out = apeg(x, grid)
    np.testing.assert_allclose(out[0].detach().numpy(), [[2.0, 3.0], [2.0, 3.0], [10.0, 0.0]])


def test_triplex_loss_is_the_published_formula():
    import torch

    from hagekit.baselines.triplex import triplex_loss

    y = torch.tensor([[1.0, 2.0]])
    out = {"pred": torch.tensor([[1.0, 1.0]]), "target": torch.tensor([[0.0, 2.0]]),
           "neighbour": torch.tensor([[1.0, 2.0]]), "global": torch.tensor([[3.0, 2.0]])}
    mse = lambda a, b: float(((a - b) ** 2).mean())  # noqa: E731
    want = mse(out["pred"], y) + sum(0.7 * mse(out[k], y) + 0.3 * mse(out["pred"], out[k])
                                     for k in ("target", "neighbour", "global"))
    assert float(triplex_loss(out, y, 0.3)["loss"]) == pytest.approx(want)


def test_hist2st_graph_is_k_nearest_within_two_pitches_row_normalised():
    from hagekit.baselines.hist2st import spot_graph

    grid = np.stack(np.meshgrid(np.arange(4), np.arange(4)), -1).reshape(-1, 2).astype(float) * 50.0
    spatial = np.concatenate([grid, [[1000.0, 1000.0]]])  # one far-away spot
    (rows, cols), weight = spot_graph(spatial, k=4, radius=2.0)
    deg = np.bincount(rows, minlength=len(spatial))
    assert (deg[:16] == 4).all() and deg[16] == 1
    assert cols[rows == 16].tolist() == [16]  # alone: a self loop
    inner = 5  # grid (1, 1): its 4 nearest are the 4 edge-adjacent spots
    assert sorted(cols[rows == inner].tolist()) == [1, 4, 6, 9]
    np.testing.assert_allclose(np.bincount(rows, weights=weight), 1.0, rtol=1e-6)


def test_hist2st_self_distillation_adds_its_term():
    est, Xt, St = _fit("hist2st", bake=2)
    assert all("bake" in h and np.isfinite(h["bake"]) for h in est.history_)
    assert np.isfinite(est.predict(Xt, spatial=St)).all()


def test_large_sections_are_cut_into_tiles():
    from hagekit.baselines._sections import tiles

    grid = np.stack(np.meshgrid(np.arange(10), np.arange(5)), -1).reshape(-1, 2)
    parts = tiles(grid, 20)
    assert [len(p) for p in parts] == [17, 17, 16]
    assert sorted(np.concatenate(parts).tolist()) == list(range(50))
    assert all(np.ptp(grid[p][:, 1]) <= 2 for p in parts)  # row-major blocks: a few grid rows each
    assert [len(p) for p in tiles(grid, 50)] == [50]


def test_predict_tiles_a_section_larger_than_max_spots(monkeypatch):
    est, Xt, St = _fit("histogene")
    whole = est.predict(Xt, spatial=St)
    monkeypatch.setattr(type(est), "max_spots", 12)
    tiled = est.predict(Xt, spatial=St)
    assert tiled.shape == whole.shape and np.isfinite(tiled).all() and not np.allclose(tiled, whole)


def test_without_positions_fit_and_predict_still_work(caplog):
    X, Y, _, _ = sections(n_sections=1)
    est = make_method("triplex", **TINY["triplex"]).fit(X, Y)
    assert "without spot positions" in caplog.text
    assert est.predict(X[:5]).shape == (5, 4)


@pytest.mark.parametrize("name", METHODS)
def test_default_search_space_is_declared_and_valid(name):
    from hagekit.bench.expression.tune import BASELINE_SPACES

    space = BASELINE_SPACES[name]
    defaults = make_method(name).get_params()
    for key, values in space.items():
        assert defaults[key] in values  # the defaults are a point of the space
        for v in values:
            make_method(name, **{key: v})  # every value passes the registry's type check


def test_a_section_of_validation_spots_only_is_context_not_a_training_step():
    X, Y, S, G = sections()
    train, val = G < 2, G == 2
    est = make_method("histogene", **TINY["histogene"])
    est.fit(X[train], Y[train], X_val=X[val], Y_val=Y[val], spatial=S[train], spatial_val=S[val],
            groups=G[train], groups_val=G[val])
    assert [h["steps"] for h in est.history_] == [2.0, 4.0, 6.0]  # two training sections per epoch
    assert np.isfinite([h["val_pcc"] for h in est.history_]).all()
