"""Baselines on synthetic arrays with a known answer: a linear map, a cluster structure."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hagekit.baselines import get_baseline, list_baselines, make_baseline
from hagekit.errors import ConfigError, DataError
from hagekit.metrics import evaluate_section

pytestmark = pytest.mark.usefixtures("one_torch_thread_module")


def _linear(n=360, d=12, g=10, seed=0, noise=0.05):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    W = rng.normal(size=(d, g))
    b = rng.normal(size=g) + 3.0
    Y = (X @ W + b + noise * rng.normal(size=(n, g))).astype(np.float32)
    groups = np.repeat(np.arange(3), n // 3)
    return X, Y, W, b, groups


def _clusters(n=420, k=4, d=16, g=12, seed=1):
    """Features and expression both determined by a hidden cluster label (nonlinear in X)."""
    rng = np.random.default_rng(seed)
    cx = rng.normal(size=(k, d)) * 2.0
    cy = rng.normal(size=(k, g)) * 1.5
    lab = rng.integers(0, k, n)
    X = (cx[lab] + rng.normal(size=(n, d))).astype(np.float32)
    Y = (cy[lab] + 0.2 * rng.normal(size=(n, g))).astype(np.float32)
    S = np.stack([rng.integers(0, 20, n), rng.integers(0, 20, n)], 1).astype(np.float32)
    return X, Y, S


def _split(*arrays, a=0.6, b=0.75):
    n = len(arrays[0])
    i, j = int(a * n), int(b * n)
    return [(x[:i], x[i:j], x[j:]) for x in arrays]


def test_registry_lists_all_and_refuses_unknown():
    assert list_baselines() == ["mean", "ridge", "xgboost", "mlp", "bleep", "mclstexp", "ridge-ctx", "triplex", "histogene",
                               "hist2st", "hage-ctx", "hage"]
    with pytest.raises(ConfigError, match="unknown method 'lasso'.*ridge"):
        get_baseline("lasso")
    with pytest.raises(ConfigError, match="ridge: unknown parameters bogus"):
        make_baseline("ridge", bogus=1)


def test_mean_predicts_training_mean_and_scores_zero_pcc():
    X, Y, *_ = _linear()
    m = make_baseline("mean").fit(X[:200], Y[:200])
    p = m.predict(X[200:])
    np.testing.assert_allclose(p[0], Y[:200].mean(0), rtol=1e-5)
    met = evaluate_section(Y[200:], p)
    assert met.pcc_all == 0.0 and met.n_constant_pred == Y.shape[1]


def test_ridge_recovers_a_linear_map_with_a_sensible_alpha():
    X, Y, W, b, groups = _linear()
    m = make_baseline("ridge", pca=None).fit(X[:300], Y[:300], groups=groups[:300])
    assert "GroupKFold(3)" in m.cv_kind_
    assert m.alpha_ <= 10.0  # little noise: the CV must not pick heavy shrinkage
    met = evaluate_section(Y[300:], m.predict(X[300:]))
    assert met.pcc_all > 0.99
    # coefficients back in the original feature scale equal W
    coef = m.coef_ / m._proj.scaler.scale_[:, None]
    np.testing.assert_allclose(coef, W, atol=0.05)


def test_ridge_shrinks_hard_when_there_is_no_signal():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(240, 30)).astype(np.float32)
    Y = rng.normal(size=(240, 5)).astype(np.float32)
    m = make_baseline("ridge", pca=8).fit(X, Y)
    assert m.alpha_ >= 1e3 and "KFold(5, shuffled)" == m.cv_kind_
    assert m._proj.components_.shape == (30, 8)


def test_ridge_refuses_bad_settings():
    X, Y, *_ = _linear(n=60)
    with pytest.raises(ConfigError, match=r"ridge\]? alphas"):
        make_baseline("ridge", alphas=[0.0, 1.0]).fit(X, Y)
    with pytest.raises(ConfigError, match=r"ridge\]? scoring.*mse, pcc"):
        make_baseline("ridge", scoring="r2").fit(X, Y)


@pytest.mark.parametrize("name", ["mean", "ridge", "mlp"])
def test_bad_inputs_are_refused(name):
    X, Y, *_ = _linear(n=60)
    est = make_baseline(name)
    with pytest.raises(ConfigError, match="before fit"):
        est.predict(X)
    with pytest.raises(DataError, match="X has 60 spots but Y has 59"):
        est.fit(X, Y[:-1])
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        est.fit(bad, Y)


def test_predict_checks_feature_width():
    X, Y, *_ = _linear(n=60)
    m = make_baseline("ridge").fit(X, Y)
    with pytest.raises(DataError, match=r"expected features of shape \(N, 12\)"):
        m.predict(X[:, :5])


def test_xgboost_learns_signal_on_target_pcs():
    X, Y, *_ = _linear(n=300, g=8)
    (Xtr, Xva, Xte), (Ytr, Yva, Yte) = _split(X, Y)
    m = make_baseline("xgboost", n_estimators=40, target_pca=4, max_depth=3).fit(Xtr, Ytr, X_val=Xva, Y_val=Yva)
    assert m.components_.shape == (4, 8)
    assert evaluate_section(Yte, m.predict(Xte)).pcc_all > 0.5
    per_gene = make_baseline("xgboost", n_estimators=5, target_pca=None).fit(Xtr, Ytr[:, :2])
    assert per_gene.components_ is None and per_gene.predict(Xte).shape == (len(Xte), 2)


def test_mlp_fits_and_is_deterministic():
    X, Y, *_ = _linear(n=300, g=6)
    (Xtr, Xva, Xte), (Ytr, Yva, Yte) = _split(X, Y)
    kw = dict(epochs=25, hidden=64, batch_size=32, patience=25, random_state=7)
    a = make_baseline("mlp", **kw).fit(Xtr, Ytr, X_val=Xva, Y_val=Yva)
    b = make_baseline("mlp", **kw).fit(Xtr, Ytr, X_val=Xva, Y_val=Yva)
    pa = a.predict(Xte)
    np.testing.assert_array_equal(pa, b.predict(Xte))
    assert evaluate_section(Yte, pa).pcc_all > 0.8
    assert len(a.history_) == 25


@pytest.mark.parametrize(
    "name,kw",
    [
        ("bleep", dict(epochs=12, projection_dim=32, batch_size=64)),
        ("mclstexp", dict(epochs=12, projection_dim=32, heads=2, dim_head=16, batch_size=64, lr=1e-3)),
    ],
)
def test_retrieval_methods_beat_the_mean_on_clusters(name, kw):
    X, Y, S = _clusters()
    (Xtr, Xva, Xte), (Ytr, Yva, Yte), (Str, Sva, _) = _split(X, Y, S)
    m = make_baseline(name, **kw, random_state=0).fit(Xtr, Ytr, X_val=Xva, Y_val=Yva, spatial=Str, spatial_val=Sva)
    base = evaluate_section(Yte, make_baseline("mean").fit(Xtr, Ytr).predict(Xte))
    got = evaluate_section(Yte, m.predict(Xte))
    assert got.pcc_all > 0.6
    assert got.mse < 0.7 * base.mse
    assert m.keys_.shape == (len(Xtr), 32)


def test_retrieve_expression_weightings_by_hand():
    from hagekit.baselines._common import retrieve_expression

    keys = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], np.float32)
    values = np.array([[1.0], [3.0], [100.0]], np.float32)
    q = np.array([[1.0, 0.05]], np.float32)
    avg = retrieve_expression(q, keys, values, top_k=2, weighting="average")
    np.testing.assert_allclose(avg, [[2.0]])
    inv = retrieve_expression(q, keys, values, top_k=2, weighting="inverse_l1_sq")
    d = np.array([0.05, 0.15])  # L1 distances to the two nearest keys
    w = (1 / d**2) / (1 / d**2).sum()
    np.testing.assert_allclose(inv, [[w @ np.array([1.0, 3.0])]], rtol=1e-5)
    ex = retrieve_expression(q, keys, values, top_k=2, weighting="bleep_exp")
    d2 = np.array([0.0025, 0.0125])
    w = np.exp(-(d2 - d2[0] + 1))
    np.testing.assert_allclose(ex, [[(w / w.sum()) @ np.array([1.0, 3.0])]], rtol=1e-5)
    with pytest.raises(ConfigError, match="weighting"):
        retrieve_expression(q, keys, values, top_k=2, weighting="median")


def test_bleep_loss_matches_the_published_formula():
    import torch

    from hagekit.baselines.bleep import bleep_loss

    g = torch.Generator().manual_seed(0)
    img, spot = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    t = 1.0
    logits = (spot @ img.T) / t
    targets = torch.softmax(((img @ img.T) + (spot @ spot.T)) / 2 * t, dim=-1)
    ce = lambda p, y: (-y * torch.log_softmax(p, dim=-1)).sum(1)  # noqa: E731
    expected = ((ce(logits, targets) + ce(logits.T, targets.T)) / 2).mean()
    torch.testing.assert_close(bleep_loss(img, spot, t), expected)


def test_grid_positions_keep_array_coords_and_quantise_pixels():
    from hagekit.baselines.mclstexp import grid_positions

    arr = np.array([[3, 4], [5, 6]], float)
    idx, pitch = grid_positions(arr)
    assert pitch == 1.0 and idx.tolist() == [[3, 4], [5, 6]]
    px = np.array([[1000.0, 2000.0], [1260.0, 2000.0], [1000.0, 2260.0]])
    idx, pitch = grid_positions(px)
    assert pitch == pytest.approx(260.0) and idx.tolist() == [[4, 8], [5, 8], [4, 9]]
    with pytest.raises(DataError, match="spatial"):
        grid_positions(np.zeros((3, 3)))


def test_save_writes_estimator_json_and_safetensors(tmp_path):
    X, Y, *_ = _linear(n=90)
    m = make_baseline("ridge", pca=4).fit(X, Y)
    out = m.save(tmp_path / "ridge")
    assert not (out / "params.json").exists()
    params = json.loads((out / "estimator.json").read_text())
    assert params["class"] == "RidgeRegressor" and params["alpha_"] == m.alpha_
    assert params["format"] == "hagekit.estimator/1" and params["method"] == "ridge"
    from safetensors.numpy import load_file

    arrays = load_file(str(out / "model.safetensors"))
    assert arrays["coef"].shape == (4, Y.shape[1])


@pytest.mark.parametrize(
    "name,kw",
    [
        ("mean", {}),
        ("xgboost", dict(n_estimators=3, target_pca=2)),
        ("mlp", dict(epochs=1, hidden=8)),
        ("bleep", dict(epochs=1, projection_dim=8)),
        ("mclstexp", dict(epochs=1, projection_dim=8, heads=1, dim_head=4, layers=1)),
    ],
)
def test_every_method_saves(tmp_path, name, kw):
    X, Y, S = _clusters(n=60, g=4)
    m = make_baseline(name, **kw).fit(X, Y, X_val=X[:10], Y_val=Y[:10], spatial=S)
    out = m.save(tmp_path / name)
    assert json.loads((out / "estimator.json").read_text())["class"] == type(m).__name__
    assert (out / "model.safetensors").stat().st_size > 0
    assert m.predict(X[:5]).shape == (5, 4)
