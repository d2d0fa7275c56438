"""Every registered method is a scikit-learn estimator: clone, get_params(deep=True), set_params,
GridSearchCV, and the registry builds HAGE like the rest."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from hagekit.baselines import METHODS, list_methods, make_method
from hagekit.errors import ConfigError
from hagekit.hage.model import HAGEConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GENES = 5
EMB = np.random.default_rng(3).normal(size=(GENES, 4)).astype(np.float32)
TINY_HAGE = HAGEConfig(d=8, n_heads=2, k1=2, k2=2, epochs=2, batch_size=16, lr=1e-3)
CONTEXT = {"config": TINY_HAGE, "gene_embeddings": EMB, "device": "cpu"}

#: The grid GridSearchCV searches per method (the tiny settings are the registry's test_params).
GRIDS = {
    "mean": {"random_state": [0, 1]},
    "ridge": {"alphas": [(0.1,), (10.0,)]},
    "xgboost": {"max_depth": [2, 3]},
    "mlp": {"lr": [1e-3, 1e-2]},
    "bleep": {"top_k": [2, 3]},
    "mclstexp": {"temperature": [0.5, 1.0]},
    "ridge-ctx": {"radius": [1.0, 2.0]},  # no positions here: context off (warned)
    "triplex": {"lr": [1e-3, 1e-2]},  # no positions: no layout (warned)
    "histogene": {"lr": [1e-3, 1e-2]},
    "hist2st": {"lr": [1e-3, 1e-2]},
    "hage-ctx": {"config__lr": [1e-3, 1e-2]},  # no positions: context off (warned)
    "hage": {"config__lr": [1e-3, 1e-2]},
}


def _make(name: str):
    return make_method(name, context=CONTEXT, **dict(METHODS.entry(name).test_params or {}))


def _data(n=48, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    Y = (np.log1p(np.exp(X @ rng.normal(size=(d, GENES)))) + 0.1 * rng.normal(size=(n, GENES))).astype(np.float32)
    return X, Y


def test_every_registered_method_is_covered():
    assert set(GRIDS) == set(list_methods())


@pytest.mark.parametrize("name", list(GRIDS))
def test_grid_search_fits_and_refits(name):
    import warnings

    grid = GRIDS[name]
    X, Y = _data()
    est = _make(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny folds: constant-gene and position warnings
        search = GridSearchCV(est, grid, cv=2, error_score="raise").fit(X, Y)
    key = next(iter(grid))
    assert search.best_params_[key] in grid[key]
    pred = search.predict(X[:7])
    assert pred.shape == (7, GENES) and np.isfinite(pred).all()
    if name.startswith("hage"):
        assert search.best_estimator_.config.lr == search.best_params_["config__lr"]


def test_hage_config_params_round_trip():
    est = make_method("hage", context=CONTEXT, config__epochs=4)
    assert est.config.epochs == 4 and est.get_params()["config__epochs"] == 4 and est.config.d == 8
    assert clone(est).config == est.config
    with pytest.raises(ConfigError, match="hage: unknown parameters config__nope"):
        make_method("hage", context=CONTEXT, config__nope=1)
    with pytest.raises(ConfigError, match="lr"):
        est.set_params(config__lr=-1.0)
