"""The estimator contract every method implements (HAGE and every baseline), written once.

:class:`Regressor` is a scikit-learn ``BaseEstimator`` + ``RegressorMixin``, so ``clone``,
``get_params(deep=True)`` and ``GridSearchCV`` work on every method; it fixes the common
``fit``/``predict``/``save`` signatures and input checks, and a method supplies what differs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

from hagekit.errors import ConfigError, DataError
from hagekit.progress import Reporter
from hagekit.training.param_checks import Interval

__all__ = ["Regressor", "check_fit_inputs", "check_predict_input", "params_of", "save_arrays"]


class Regressor(RegressorMixin, BaseEstimator):
    """Base of every method (HAGE and the baselines): a scikit-learn estimator
    (``get_params``/``clone``/``GridSearchCV``) with
    ``fit(X, Y, *, X_val, Y_val, spatial, spatial_val, groups, progress) -> self``,
    ``predict(X, *, spatial) -> (N, G)`` and ``save(out_dir)``.

    A subclass's ``__init__`` only stores its parameters; it implements :meth:`_fit`,
    :meth:`_predict` and :meth:`_arrays` (and may override :meth:`_check_inputs`).
    """

    method: ClassVar[str] = "method"
    """The registry name, used in messages."""

    param_constraints: ClassVar[Mapping[str, Any]] = {"random_state": Interval(0, integer=True)}
    """``{parameter: Interval(...) | OneOf(...)}`` (:mod:`hagekit.training.param_checks`), checked
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
        """Fitted scalars ``save`` adds to ``params.json`` (e.g. a chosen penalty)."""
        return {}

    def save(self, out_dir: Path | str) -> Path:
        """Write ``params.json`` (parameters + fitted scalars) and ``model.safetensors``."""
        return save_arrays(out_dir, {**params_of(self), **self._fitted_params()}, self._arrays())


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


def save_arrays(out_dir: Path | str, params: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``params.json`` and ``model.safetensors`` (numpy arrays) into ``out_dir``."""
    from hagekit.io.atomic import atomic_path, write_json
    from hagekit.io.tensorfile import save_safetensors

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "params.json", dict(params))
    with atomic_path(out / "model.safetensors") as tmp:
        save_safetensors({k: np.ascontiguousarray(v) for k, v in arrays.items()}, tmp)
    return out


def params_of(obj: Any) -> dict[str, Any]:
    """The constructor parameters of an estimator (``get_params``), JSON-friendly."""
    out = {"class": type(obj).__name__}
    for n, val in obj.get_params(deep=False).items():
        out[n] = list(val) if isinstance(val, tuple) else val
    return json.loads(json.dumps(out, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
