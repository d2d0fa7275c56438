"""Every registered method is a scikit-learn estimator: clone, get_params(deep=True), set_params,
GridSearchCV, and the registry builds HAGE like the rest."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from hagekit.baselines import list_methods, make_method
from hagekit.errors import ConfigError
from hagekit.hage.model import HAGEConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GENES = 5
EMB = np.random.default_rng(3).normal(size=(GENES, 4)).astype(np.float32)
TINY_HAGE = HAGEConfig(d=8, n_heads=2, k1=2, k2=2, epochs=2, batch_size=16, lr=1e-3)
CONTEXT = {"config": TINY_HAGE, "gene_embeddings": EMB, "device": "cpu"}

#: Small settings per method and the grid GridSearchCV searches.
SMALL = {
    "mean": ({}, {"random_state": [0, 1]}),
    "ridge": ({"pca": None, "cv": 2}, {"alphas": [(0.1,), (10.0,)]}),
    "xgboost": ({"n_estimators": 3, "target_pca": None, "n_jobs": 1}, {"max_depth": [2, 3]}),
    "mlp": ({"hidden": 8, "epochs": 2}, {"lr": [1e-3, 1e-2]}),
    "bleep": ({"projection_dim": 8, "epochs": 2, "top_k": 3}, {"top_k": [2, 3]}),
    "mclstexp": ({"projection_dim": 8, "heads": 1, "dim_head": 4, "epochs": 2, "top_k": 3}, {"temperature": [0.5, 1.0]}),
    "ridge-ctx": ({"pca": None, "cv": 2}, {"radius": [1.0, 2.0]}),  # no positions here: context off (warned)
    "triplex": ({"d_model": 8, "heads": 2, "depth_neighbour": 1, "epochs": 2}, {"lr": [1e-3, 1e-2]}),  # no positions: no layout (warned)
    "histogene": ({"d_model": 8, "heads": 2, "layers": 1, "epochs": 2}, {"lr": [1e-3, 1e-2]}),
    "hist2st": ({"d_model": 8, "heads": 2, "depth_transformer": 1, "epochs": 2}, {"lr": [1e-3, 1e-2]}),
    "hage": ({}, {"config__lr": [1e-3, 1e-2]}),
}


def _data(n=48, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    Y = (np.log1p(np.exp(X @ rng.normal(size=(d, GENES)))) + 0.1 * rng.normal(size=(n, GENES))).astype(np.float32)
    return X, Y


def test_every_registered_method_is_covered():
    assert set(SMALL) == set(list_methods())


@pytest.mark.parametrize("name", list(SMALL))
def test_clone_and_params(name):
    params, _ = SMALL[name]
    est = make_method(name, context=CONTEXT, **params)
    deep = est.get_params(deep=True)
    assert set(est.get_params(deep=False)) <= set(deep)
    twin = clone(est)
    assert type(twin) is type(est) and twin is not est
    assert repr(twin.get_params(deep=False)) == repr(est.get_params(deep=False))
    assert not hasattr(twin, "n_features_in_")  # clone is unfitted


@pytest.mark.parametrize("name", list(SMALL))
def test_grid_search_fits_and_refits(name):
    import warnings

    params, grid = SMALL[name]
    X, Y = _data()
    est = make_method(name, context=CONTEXT, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny folds: constant-gene and position warnings
        search = GridSearchCV(est, grid, cv=2, error_score="raise").fit(X, Y)
    key = next(iter(grid))
    assert search.best_params_[key] in grid[key]
    pred = search.predict(X[:7])
    assert pred.shape == (7, GENES) and np.isfinite(pred).all()
    if name == "hage":
        assert search.best_estimator_.config.lr == search.best_params_["config__lr"]


def test_hage_config_params_round_trip():
    est = make_method("hage", context=CONTEXT, config__epochs=4)
    assert est.config.epochs == 4 and est.get_params()["config__epochs"] == 4 and est.config.d == 8
    assert clone(est).config == est.config
    with pytest.raises(ConfigError, match="hage: unknown parameters config__nope"):
        make_method("hage", context=CONTEXT, config__nope=1)
    with pytest.raises(ConfigError, match="lr"):
        est.set_params(config__lr=-1.0)
