"""The learning layer (:mod:`hagekit.learn`): the torch estimator template, the one save format
(and the older ``params.json`` still loading), and constructor parameters declared once
(``@hyperparameters``) with scikit-learn's contract intact."""

from __future__ import annotations

import inspect
import json
import pickle
from typing import Any, ClassVar

import joblib
import numpy as np
import pytest
from sklearn.base import clone

from hagekit.baselines import list_baselines, make_method
from hagekit.hage.estimator import HAGERegressor
from hagekit.hage.model import HAGEConfig
from hagekit.io.atomic import write_json
from hagekit.learn.estimator import hyperparameters, params_of
from hagekit.learn.param_checks import Interval, declared_constraints
from hagekit.learn.torch_regressor import Batchable, TorchRegressor

pytestmark = pytest.mark.usefixtures("one_torch_thread_module")


def _data(n=80, d=5, g=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    Y = (X @ rng.normal(size=(d, g)) + 0.1 * rng.normal(size=(n, g))).astype(np.float32)
    S = np.stack(np.meshgrid(np.arange(10), np.arange(n // 10)), -1).reshape(-1, 2).astype(np.float64)
    return X, Y, S


@hyperparameters(lr=0.05, epochs=6, batch_size=16, patience=0, device="cpu", random_state=0)
class _ToyLinear(TorchRegressor):
    """A linear model on the template: only what a method must supply."""

    method: ClassVar[str] = "toy-linear"
    monitor: ClassVar[str] = "val_mse"
    mode: ClassVar[str] = "min"
    param_constraints: ClassVar[dict[str, Any]] = {"lr": Interval(0, low_open=True)}

    def _build(self, d_in: int, Y: np.ndarray) -> Any:
        import torch

        return torch.nn.Linear(d_in, Y.shape[1])

    def _optimizer(self, model: Any) -> Any:
        import torch

        return torch.optim.SGD(model.parameters(), lr=float(self.lr))

    def _loss(self, model: Any, data: Batchable, idx: Any) -> Any:
        return ((model(data.x[idx]) - data.y[idx]) ** 2).mean()

    def _validate(self, model: Any, data: Batchable) -> dict[str, float]:
        return {"val_mse": float(((model(data.x_val) - data.y_val) ** 2).mean())}

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self.model_(self._features(X)).detach().numpy()


def test_torch_template_fits_seeded_keeps_the_best_and_saves(tmp_path):
    X, Y, _ = _data()
    fit = lambda seed: _ToyLinear(random_state=seed).fit(X[:60], Y[:60], X_val=X[60:], Y_val=Y[60:])  # noqa: E731
    est = fit(0)
    mses = [h["val_mse"] for h in est.history_]
    assert len(mses) == 6 and est.best_epoch_ == 1 + int(np.argmin(mses)) and est.device_ == "cpu"
    pred = est.predict(X[60:])
    assert np.mean((pred - Y[60:]) ** 2) == pytest.approx(min(mses), rel=1e-4)  # the best weights are kept
    np.testing.assert_array_equal(fit(0).predict(X[60:]), pred)
    assert not np.allclose(fit(1).predict(X[60:]), pred)
    out = est.save(tmp_path / "toy")
    meta = json.loads((out / "estimator.json").read_text())
    assert meta["format"] == "hagekit.estimator/1" and meta["method"] == "toy-linear" and meta["class"] == "_ToyLinear"
    assert meta["lr"] == 0.05 and (out / "model.safetensors").stat().st_size > 0 and not (out / "params.json").exists()


def test_hyperparameters_give_sklearn_a_keyword_only_signature():
    params = inspect.signature(_ToyLinear.__init__).parameters
    assert [p.kind for n, p in params.items() if n != "self"] == [inspect.Parameter.KEYWORD_ONLY] * 6
    est = _ToyLinear(lr=0.1)
    assert est.get_params() == {"lr": 0.1, "epochs": 6, "batch_size": 16, "patience": 0, "device": "cpu", "random_state": 0}
    twin = clone(est.set_params(epochs=2))
    assert twin is not est and twin.get_params() == est.get_params() and twin.epochs == 2
    assert repr(est) == "_ToyLinear(epochs=2, lr=0.1)"  # scikit-learn's repr: only what differs from the defaults
    with pytest.raises(TypeError):
        _ToyLinear(0.1)  # keyword-only, as the hand-written constructors were
    with pytest.raises(TypeError, match="immutable"):
        hyperparameters(alphas=[1.0, 2.0])(type("Bad", (TorchRegressor,), {}))


# Every baseline's parameters and defaults as the hand-written constructors declared them (5d5b5eb).
DEFAULTS = {
    "mean": {"random_state": 0},
    "ridge": {"alphas": tuple(float(a) for a in np.logspace(-2, 6, 17)), "pca": 256, "cv": 5, "scoring": "mse", "random_state": 0},
    "mlp": {"hidden": 512, "dropout": 0.4, "lr": 3e-4, "weight_decay": 1e-3, "epochs": 100, "batch_size": 256,
            "patience": 10, "device": "auto", "random_state": 0},
    "bleep": {"projection_dim": 256, "dropout": 0.1, "temperature": 1.0, "lr": 1e-3, "weight_decay": 1e-3, "epochs": 50,
              "batch_size": 256, "top_k": 50, "weighting": "average", "patience": 5, "device": "auto", "random_state": 0},
    "histogene": {"d_model": 128, "heads": 4, "layers": 2, "mlp_ratio": 2.0, "dropout": 0.3, "n_pos": 128, "lr": 1e-3,
                  "weight_decay": 1e-4, "epochs": 100, "patience": 10, "device": "auto", "random_state": 0},
}


@pytest.mark.parametrize("name", list_baselines())
def test_every_method_keeps_the_sklearn_contract(name):
    est = make_method(name)
    cls = type(est)
    if name in DEFAULTS:
        assert est.get_params(deep=False) == DEFAULTS[name]
    if name == "ridge-ctx":  # ridge's parameters and its own
        assert est.get_params() == {**DEFAULTS["ridge"], "radius": 1.5}
    twin = clone(est)
    assert type(twin) is cls and repr(twin.get_params()) == repr(est.get_params())
    back = pickle.loads(pickle.dumps(est))
    assert repr(back.get_params()) == repr(est.get_params())
    assert declared_constraints(cls)["random_state"].accepts(0) and not declared_constraints(cls)["random_state"].accepts(-1)
    assert set(getattr(cls, "search_space", None) or {}) <= set(cls._get_param_names()) | {"config"}


def test_a_fitted_torch_baseline_travels_to_a_worker_process_and_back(tmp_path):
    X, Y, _ = _data()
    est = make_method("mlp", hidden=8, epochs=2, device="cpu").fit(X[:60], Y[:60], X_val=X[60:], Y_val=Y[60:])
    joblib.dump(est, tmp_path / "mlp.joblib")
    back = joblib.load(tmp_path / "mlp.joblib")
    np.testing.assert_array_equal(back.predict(X[60:]), est.predict(X[60:]))


def test_hage_is_a_torch_regressor_with_device_auto_and_positional_config():
    emb = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    est = HAGERegressor(HAGEConfig(d=8), emb, label="x")
    assert isinstance(est, TorchRegressor)
    assert est.device == "auto" and est.config.d == 8 and est.gene_embeddings is emb and est.label == "x"
    twin = clone(est.set_params(config__epochs=2, random_state=3))
    assert twin.get_params()["config__epochs"] == 2 and twin.random_state == 3


def _write_params_json_as_before(est: Any, out) -> None:
    """What the estimators saved before ``estimator.json``: ``params.json`` = parameters + fitted scalars."""
    (out / "estimator.json").unlink()
    write_json(out / "params.json", {**params_of(est), **est._fitted_params()})


@pytest.mark.parametrize("name,kw", [
    ("triplex", {"d_model": 8, "heads": 2, "depth_global": 2, "depth_neighbour": 1, "epochs": 2, "device": "cpu"}),
    ("ridge-ctx", {"pca": None, "cv": 2}),
])
def test_models_saved_with_params_json_still_load(tmp_path, name, kw):
    X, Y, S = _data()
    est = make_method(name, **kw).fit(X[:60], Y[:60], X_val=X[60:], Y_val=Y[60:], spatial=S[:60], spatial_val=S[60:])
    pred = est.predict(X[60:], spatial=S[60:])
    out = est.save(tmp_path / name)
    assert json.loads((out / "estimator.json").read_text())["class"] == type(est).__name__
    _write_params_json_as_before(est, out)
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors", "params.json"]
    loaded = type(est).load(out)
    np.testing.assert_allclose(loaded.predict(X[60:], spatial=S[60:]), pred, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["ridge-ctx", "triplex"])
def test_spatial_fit_refuses_an_unknown_keyword(name):
    X, Y, S = _data()
    with pytest.raises(TypeError, match="bogus"):
        make_method(name).fit(X, Y, spatial=S, bogus=1)
