"""Pieces every baseline shares: the estimator base class, input checks, standardisation,
retrieval, saving.

Kept here once so that the baselines differ only in what makes them different methods.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

from hagekit.device import usable_cpus as n_cpus
from hagekit.errors import ConfigError, DataError
from hagekit.progress import Reporter

log = logging.getLogger(__name__)

__all__ = [
    "Baseline",
    "check_fit_inputs",
    "check_predict_input",
    "Standardizer",
    "retrieve_expression",
    "retrieve",
    "save_arrays",
    "params_of",
    "n_cpus",
]


class Baseline(RegressorMixin, BaseEstimator):
    """Base of every baseline: scikit-learn estimator (``get_params``/``clone``/``GridSearchCV``),
    ``fit(X, Y, *, X_val, Y_val, spatial, spatial_val, groups, progress) -> self``,
    ``predict(X, *, spatial) -> (N, G)``, and ``save(out_dir)`` from :meth:`_arrays`.

    ``__init__`` of a subclass only stores its keyword parameters.
    """

    method: ClassVar[str] = "baseline"
    """The registry name, used in messages."""

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
    ) -> Baseline:
        """Validate the inputs and fit (see :meth:`_fit`); returns ``self``."""
        X, Y = check_fit_inputs(self.method, X, Y)
        val = None
        if X_val is not None and Y_val is not None and len(X_val) > 0:
            val = check_fit_inputs(f"{self.method} (validation)", X_val, Y_val)
        self._fit(X, Y, val=val, spatial=spatial, groups=groups, progress=progress)
        self.n_features_in_ = X.shape[1]
        return self

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


class Standardizer:
    """Column-wise z-scoring fitted on training data; constant columns keep scale 1."""

    def __init__(self) -> None:
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None

    def fit(self, X: np.ndarray) -> Standardizer:
        X = np.asarray(X, dtype=np.float64)
        self.mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        self.scale_ = np.where(std > 1e-8, std, 1.0)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        assert self.mean_ is not None and self.scale_ is not None
        return ((np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_).astype(np.float32)

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        return self.fit(X).transform(X)


WEIGHTINGS = ("average", "bleep_exp", "inverse_l1_sq")


def retrieve_expression(query: Any, keys: Any, values: Any, *, top_k: int, weighting: str = "average",
                        chunk: int = 256) -> np.ndarray:
    """:func:`retrieve` as a float32 numpy array."""
    return retrieve(query, keys, values, top_k=top_k, weighting=weighting, chunk=chunk).cpu().numpy().astype(np.float32)


def retrieve(
    query: Any,
    keys: Any,
    values: Any,
    *,
    top_k: int,
    weighting: str = "average",
    chunk: int = 256,
) -> np.ndarray:
    """Predict expression as a weighted average of the ``top_k`` most similar reference spots.

    Neighbours are chosen by cosine similarity of the embeddings (BLEEP's ``find_matches``).
    ``weighting``: ``average`` (BLEEP's default, plain mean), ``bleep_exp`` (BLEEP's
    ``weighted_average``: ``exp(-(d2 - d2_min + 1))`` on squared Euclidean distances) or
    ``inverse_l1_sq`` (mclSTExp: ``1 / L1^2`` normalised). Returns a tensor on the query's device.
    """
    import torch
    import torch.nn.functional as F

    if weighting not in WEIGHTINGS:
        raise ConfigError(f"weighting: unknown {weighting!r} (choose from {', '.join(WEIGHTINGS)})")
    q = torch.as_tensor(query, dtype=torch.float32)
    k = torch.as_tensor(keys, dtype=torch.float32, device=q.device)
    v = torch.as_tensor(values, dtype=torch.float32, device=q.device)
    top_k = int(max(1, min(top_k, k.shape[0])))
    kn = F.normalize(k, dim=-1)
    out = []
    for start in range(0, q.shape[0], chunk):
        qc = q[start : start + chunk]
        sim = F.normalize(qc, dim=-1) @ kn.T
        idx = sim.topk(top_k, dim=1).indices  # (c, k)
        if weighting == "average":
            w = torch.full(idx.shape, 1.0 / top_k, device=q.device)
        else:
            diff = k[idx] - qc[:, None, :]  # (c, k, d)
            if weighting == "bleep_exp":
                d2 = (diff**2).sum(-1)
                w = torch.exp(-(d2 - d2[:, :1] + 1.0))
            else:
                l1 = diff.abs().sum(-1).clamp_min(1e-12)
                w = 1.0 / l1**2
            w = w / w.sum(dim=1, keepdim=True).clamp_min(1e-30)
        dense = torch.zeros(qc.shape[0], k.shape[0], device=q.device).scatter_(1, idx, w)
        out.append(dense @ v)
    return torch.cat(out)


def save_arrays(out_dir: Path | str, params: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``params.json`` and ``model.safetensors`` (numpy arrays) into ``out_dir``."""
    from safetensors.numpy import save_file

    from hagekit.io.atomic import atomic_path, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "params.json", dict(params))
    with atomic_path(out / "model.safetensors") as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
    return out


def params_of(obj: Any) -> dict[str, Any]:
    """The constructor parameters of an estimator (``get_params``), JSON-friendly."""
    out = {"class": type(obj).__name__}
    for n, val in obj.get_params(deep=False).items():
        out[n] = list(val) if isinstance(val, tuple) else val
    return json.loads(json.dumps(out, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
