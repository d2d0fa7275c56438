"""``ridge``: HEST-Benchmark's linear probe done right.

Standardise the features, optionally reduce them with PCA (256 components, as HEST), then
ridge regression with an intercept whose penalty is chosen by inner cross-validation on the
training data, grouped by training section when sections are given (HEST uses a fixed tiny
alpha, which over-fits high-dimensional features). Scaling and PCA are refitted inside
every inner fold, so the selection never sees its own validation spots.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from hagekit.errors import ConfigError
from hagekit.learn.estimator import Regressor, hyperparameters
from hagekit.learn.param_checks import Interval, OneOf
from hagekit.learn.standardize import Standardizer
from hagekit.progress import Reporter, reporter_or_null

__all__ = ["RidgeRegressor", "Projector", "DEFAULT_ALPHAS"]

log = logging.getLogger(__name__)

#: Penalty grid (on standardised/PCA features, so comparable across encoders).
DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-2, 6, 17))
SCORINGS = ("mse", "pcc")


class Projector:
    """Standardise, then (optionally) project on the leading principal components."""

    def __init__(self, n_components: int | None, seed: int) -> None:
        self.n_components = n_components
        self.seed = seed

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        self.scaler = Standardizer().fit(X)
        Z = self.scaler.transform(X).astype(np.float64)
        self.components_: np.ndarray | None = None
        k = self.n_components
        if k is not None and k < min(Z.shape):
            # Exact PCA via SVD of the centred, standardised data (Z is already centred).
            _, _, vt = np.linalg.svd(Z, full_matrices=False)
            self.components_ = vt[:k].T
            Z = Z @ self.components_
        return Z

    def transform(self, X: np.ndarray) -> np.ndarray:
        Z = self.scaler.transform(X).astype(np.float64)
        return Z @ self.components_ if self.components_ is not None else Z


def _ridge_paths(Z: np.ndarray, Y: np.ndarray, Zte: np.ndarray, alphas: Sequence[float]) -> np.ndarray:
    """Predictions of ridge (with intercept) for every alpha at once via one SVD: (A, Nte, G)."""
    zm = Z.mean(axis=0)
    ym = Y.mean(axis=0)
    U, s, Vt = np.linalg.svd(Z - zm, full_matrices=False)
    UtY = U.T @ (Y - ym)  # (r, G)
    P = (Zte - zm) @ Vt.T  # (Nte, r)
    out = np.empty((len(alphas), Zte.shape[0], Y.shape[1]))
    for i, a in enumerate(alphas):
        out[i] = (P * (s / (s**2 + a))) @ UtY + ym
    return out


def _score(Y: np.ndarray, P: np.ndarray, scoring: str) -> float:
    """Higher is better: negative MSE, or mean per-gene PCC (constant genes skipped)."""
    if scoring == "mse":
        return -float(np.mean((Y - P) ** 2))
    from hagekit.metrics import pearson_per_gene

    r, _, _ = pearson_per_gene(Y, P)
    return float(np.nanmean(r)) if np.isfinite(r).any() else 0.0


@hyperparameters(
    alphas=DEFAULT_ALPHAS, pca=256, cv=5, scoring="mse", random_state=0,
)
class RidgeRegressor(Regressor):
    """Standardise -> optional PCA -> ridge with inner-CV penalty and an intercept.

    ``alphas``: penalty grid; ``pca``: components (``None``/0 for none); ``cv``: inner folds
    (grouped by ``groups`` when it has at least 2 values, else shuffled K-fold);
    ``scoring``: ``"mse"`` or ``"pcc"`` for the selection.
    """

    method: ClassVar[str] = "ridge"
    param_constraints: ClassVar[dict[str, Any]] = {
        "alphas": Interval(0, low_open=True, each=True), "pca": Interval(1, integer=True, optional=True),
        "cv": Interval(2, integer=True), "scoring": OneOf(SCORINGS),
    }

    def _check_params(self) -> tuple[np.ndarray, int | None]:
        alphas = np.asarray(list(self.alphas), dtype=np.float64)
        if alphas.size == 0 or (alphas <= 0).any():
            raise ConfigError(f"ridge alphas: need positive penalties, got {list(alphas)}")
        if self.scoring not in SCORINGS:
            raise ConfigError(f"ridge scoring: unknown {self.scoring!r} (choose from {', '.join(SCORINGS)})")
        if int(self.cv) < 2:
            raise ConfigError(f"ridge cv: need at least 2 inner folds, got {self.cv}")
        pca = int(self.pca) if self.pca else None
        if pca is not None and pca < 1:
            raise ConfigError(f"ridge pca: need a positive number of components, got {self.pca}")
        return alphas, pca

    def _inner_splits(self, n: int, groups: np.ndarray | None) -> list[tuple[np.ndarray, np.ndarray]]:
        from sklearn.model_selection import GroupKFold, KFold

        if groups is not None and len(np.unique(groups)) >= 2:
            k = min(int(self.cv), len(np.unique(groups)))
            self.cv_kind_ = f"GroupKFold({k}) by training section"
            return list(GroupKFold(n_splits=k).split(np.zeros(n), groups=groups))
        k = min(int(self.cv), n)
        self.cv_kind_ = f"KFold({k}, shuffled)"
        return list(KFold(n_splits=k, shuffle=True, random_state=self.random_state).split(np.zeros(n)))

    def _fit(self, X: np.ndarray, Y: np.ndarray, *, val: Any, spatial: np.ndarray | None,
             groups: np.ndarray | None, progress: Reporter | None) -> None:
        """Select alpha by inner CV on (X, Y) and refit on all of it (validation data unused)."""
        alphas, pca = self._check_params()
        Yd = Y.astype(np.float64)
        if groups is not None:
            groups = np.asarray(groups)
            if groups.shape[0] != X.shape[0]:
                raise ConfigError(f"ridge: groups has {groups.shape[0]} entries for {X.shape[0]} spots")
        splits = self._inner_splits(X.shape[0], groups)
        task = reporter_or_null(progress).task("ridge inner CV", total=len(splits))
        scores = np.zeros((len(alphas), len(splits)))
        for j, (tr, te) in enumerate(splits):
            proj = Projector(pca, self.random_state)
            Ztr = proj.fit_transform(X[tr])
            preds = _ridge_paths(Ztr, Yd[tr], proj.transform(X[te]), alphas)
            scores[:, j] = [_score(Yd[te], p, self.scoring) for p in preds]
            task.advance(1)
        task.close()
        mean_scores = scores.mean(axis=1)
        best = int(np.argmax(mean_scores))
        self.alpha_ = float(alphas[best])
        self.cv_scores_ = scores
        if best in (0, len(alphas) - 1) and len(alphas) > 1:
            log.warning("ridge: chosen alpha %.3g is at the edge of the grid; widen `alphas`", self.alpha_)
        self._proj = Projector(pca, self.random_state)
        Z = self._proj.fit_transform(X)
        zm, ym = Z.mean(axis=0), Yd.mean(axis=0)
        # coef = (Zc'Zc + a I)^-1 Zc'Yc via SVD (stable for any shape).
        U, s, Vt = np.linalg.svd(Z - zm, full_matrices=False)
        self.coef_ = (Vt.T * (s / (s**2 + self.alpha_))) @ (U.T @ (Yd - ym))  # (P, G)
        self.intercept_ = ym - zm @ self.coef_
        log.info("ridge: alpha=%.3g (%s, scoring=%s)", self.alpha_, self.cv_kind_, self.scoring)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self._proj.transform(X) @ self.coef_ + self.intercept_

    def _fitted_params(self) -> dict[str, Any]:
        return {"alpha_": self.alpha_, "cv_kind_": self.cv_kind_}

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            "coef": self.coef_.astype(np.float32),
            "intercept": self.intercept_.astype(np.float32),
            "scaler_mean": self._proj.scaler.mean_.astype(np.float32),
            "scaler_scale": self._proj.scaler.scale_.astype(np.float32),
            "cv_scores": self.cv_scores_.astype(np.float32),
        }
        if self._proj.components_ is not None:
            arrays["pca_components"] = self._proj.components_.astype(np.float32)
        return arrays
