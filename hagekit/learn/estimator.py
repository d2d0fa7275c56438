"""The estimator contract every method implements (HAGE and every baseline), written once.

:class:`Regressor` is a scikit-learn ``BaseEstimator`` + ``RegressorMixin``, so ``clone``,
``get_params(deep=True)`` and ``GridSearchCV`` work on every method; it fixes the common
``fit``/``predict``/``save`` signatures and input checks, and a method supplies what differs.

One save format for every method: ``estimator.json`` (what the estimator is: ``format``,
``method``, ``class``, its parameters and fitted scalars; HAGE adds its config and history) beside
``model.safetensors``. Folders written before that hold ``params.json`` instead; they still load
(:func:`read_estimator_meta`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

from hagekit.errors import ConfigError, DataError, at
from hagekit.learn.param_checks import Interval
from hagekit.progress import Reporter

__all__ = [
    "Regressor", "hyperparameters", "check_fit_inputs", "check_predict_input", "params_of", "save_arrays", "read_estimator_meta",
    "ESTIMATOR_FILE", "MODEL_FILE", "LEGACY_PARAMS_FILE", "FORMAT",
]

ESTIMATOR_FILE = "estimator.json"
"""What every saved estimator says about itself (format, method, class, parameters, fitted scalars)."""
MODEL_FILE = "model.safetensors"
"""The fitted arrays (weights, scaler) of every saved estimator."""
LEGACY_PARAMS_FILE = "params.json"
"""Where baselines saved before ``estimator.json`` kept their parameters (still read)."""
FORMAT = "hagekit.estimator/1"

_R = TypeVar("_R", bound=type)


def hyperparameters(**defaults: Any) -> Callable[[_R], _R]:
    """Class decorator: the estimator's constructor parameters and their defaults, in one place.

    Generates the keyword-only ``__init__`` that stores each parameter as it is given (what
    scikit-learn asks of an estimator; ``get_params``, ``set_params`` and ``clone`` read its
    signature); a subclass inherits its parent's parameters and adds its own. Defaults must be
    immutable (numbers, strings, tuples, ``None``)::

        @hyperparameters(hidden=512, dropout=0.4, device="auto", random_state=0)
        class MLPRegressor(TorchRegressor): ...
    """

    def decorate(cls: _R) -> _R:
        annotations = cls.__dict__.get("__annotations__", {})
        for name, value in defaults.items():
            if isinstance(value, (list, dict, set)):
                raise TypeError(f"{cls.__name__}.{name}: a default must be immutable, got {type(value).__name__}")
            annotations[name] = "Any"
            setattr(cls, name, value)
        cls.__annotations__ = annotations
        return dataclass(kw_only=True, repr=False, eq=False)(cls)

    return decorate


class Regressor(RegressorMixin, BaseEstimator):
    """Base of every method (HAGE and the baselines): a scikit-learn estimator
    (``get_params``/``clone``/``GridSearchCV``) with
    ``fit(X, Y, *, X_val, Y_val, spatial, spatial_val, groups, progress) -> self``,
    ``predict(X, *, spatial) -> (N, G)`` and ``save(out_dir)``.

    A subclass's ``__init__`` only stores its parameters (:func:`hyperparameters` writes it); it implements :meth:`_fit`,
    :meth:`_predict` and :meth:`_arrays` (and may override :meth:`_check_inputs`).
    """

    method: ClassVar[str] = "method"
    """The registry name, used in messages."""

    param_constraints: ClassVar[Mapping[str, Any]] = {"random_state": Interval(0, integer=True)}
    """``{parameter: Interval(...) | OneOf(...)}`` (:mod:`hagekit.learn.param_checks`), checked
    by ``hagekit.baselines.make_method`` before any run folder is written."""

    def fit(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        *,
        X_val: np.ndarray | None = None,
        Y_val: np.ndarray | None = None,
        spatial: np.ndarray | None = None,
        spatial_val: np.ndarray | None = None,
        groups: np.ndarray | None = None,
        progress: Reporter | None = None,
    ) -> Regressor:
        """Validate the inputs and fit (see :meth:`_fit`); returns ``self``."""
        X, Y = self._check_inputs(X, Y, "")
        val = None
        if X_val is not None and Y_val is not None and len(X_val) > 0:
            val = self._check_inputs(X_val, Y_val, "validation")
            if val[0].shape[1] != X.shape[1]:
                raise DataError(f"{self.method}: validation features have {val[0].shape[1]} dims, training {X.shape[1]}")
        self._fit(X, Y, val=val, spatial=spatial, groups=groups, progress=progress)
        self.n_features_in_ = X.shape[1]
        return self

    def _check_inputs(self, X: Any, Y: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
        """Validated float32 ``(X, Y)``; ``what`` is ``""`` (training) or ``"validation"``."""
        return check_fit_inputs(f"{self.method} ({what})" if what else self.method, X, Y)

    def _fit(self, X: np.ndarray, Y: np.ndarray, *, val: tuple[np.ndarray, np.ndarray] | None,
             spatial: np.ndarray | None, groups: np.ndarray | None, progress: Reporter | None) -> None:
        raise NotImplementedError

    def predict(self, X: np.ndarray, *, spatial: np.ndarray | None = None) -> np.ndarray:
        """Predicted targets (N, G) float32 for features ``X`` (N, D)."""
        X = check_predict_input(self.method, X, getattr(self, "n_features_in_", None))
        return np.asarray(self._predict(X), dtype=np.float32)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _arrays(self) -> dict[str, np.ndarray]:
        """The fitted arrays ``save`` writes into ``model.safetensors``."""
        raise NotImplementedError

    def _fitted_params(self) -> dict[str, Any]:
        """Fitted scalars ``save`` adds to ``estimator.json`` (e.g. a chosen penalty)."""
        return {}

    def save(self, out_dir: Path | str) -> Path:
        """Write ``estimator.json`` (format, method, parameters + fitted scalars) and ``model.safetensors``."""
        meta = {"format": FORMAT, "method": self.method, **params_of(self), **self._fitted_params()}
        return save_arrays(out_dir, meta, self._arrays())


def check_fit_inputs(name: str, X: Any, Y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``X`` (N, D) and ``Y`` (N, G): 2-D, same N, finite; return float32 copies."""
    X = np.asarray(X, dtype=np.float32)
    Y = np.asarray(Y, dtype=np.float32)
    if X.ndim != 2 or Y.ndim != 2:
        raise DataError(f"{name}: X and Y must be 2-D (spots x features, spots x genes), got {X.shape} and {Y.shape}")
    if X.shape[0] != Y.shape[0]:
        raise DataError(f"{name}: X has {X.shape[0]} spots but Y has {Y.shape[0]}")
    if X.shape[0] < 2:
        raise DataError(f"{name}: need at least 2 training spots, got {X.shape[0]}")
    if X.shape[1] == 0:
        raise DataError(f"{name}: features have width 0 (no feature files were given?)")
    if not np.isfinite(X).all() or not np.isfinite(Y).all():
        raise DataError(f"{name}: X or Y contains NaN or infinite values")
    return X, Y


def check_predict_input(name: str, X: Any, n_features: int | None) -> np.ndarray:
    """Validate a prediction input against the fitted feature width."""
    if n_features is None:
        raise ConfigError(f"{name}: predict() called before fit()")
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != n_features:
        raise DataError(f"{name}: expected features of shape (N, {n_features}), got {X.shape}")
    return X


def save_arrays(out_dir: Path | str, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``estimator.json`` (``meta``) and ``model.safetensors`` (numpy arrays) into ``out_dir``."""
    from hagekit.io.atomic import atomic_path, write_json
    from hagekit.io.tensorfile import save_safetensors

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / ESTIMATOR_FILE, dict(meta))
    with atomic_path(out / MODEL_FILE) as tmp:
        save_safetensors({k: np.ascontiguousarray(v) for k, v in arrays.items()}, tmp)
    return out


def params_of(obj: Any) -> dict[str, Any]:
    """The constructor parameters of an estimator (``get_params``), JSON-friendly."""
    out = {"class": type(obj).__name__}
    for n, val in obj.get_params(deep=False).items():
        out[n] = list(val) if isinstance(val, tuple) else val
    return json.loads(json.dumps(out, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def read_estimator_meta(directory: Path | str, cls: type) -> tuple[dict[str, Any], Path]:
    """The saved description of a ``cls`` estimator in ``directory`` and the file it came from:
    ``estimator.json``, or the ``params.json`` of folders saved before it; refused when it
    describes another class."""
    from hagekit.io.jsonfile import read_json_object

    directory = Path(directory)
    path = directory / ESTIMATOR_FILE
    if not path.is_file() and (directory / LEGACY_PARAMS_FILE).is_file():
        path = directory / LEGACY_PARAMS_FILE
    meta = read_json_object(path, missing="not found; is this a saved model folder?")
    if meta.get("class") != cls.__name__:
        raise DataError(at(path, f"holds a {meta.get('class')}, not a {cls.__name__}"))
    return meta, path

