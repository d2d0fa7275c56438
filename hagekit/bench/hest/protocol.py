"""HEST-Bench's regression protocol on frozen embeddings, as ``src/hest/bench`` computes it.

Per fold (``benchmark.py: predict_single_split``, ``trainer.py: train_test_reg``):

1. ``Pipeline([StandardScaler(), PCA(256, random_state=seed)])`` fitted on the training
   embeddings (``dimreduce="PCA"``, ``latent_dim=256``; seed 1); HEST then wraps both
   outputs in ``torch.Tensor``, i.e. float32, and so do we. ``--no-pca`` skips both steps.
2. Ridge: ``alpha = 100 / (n_features * n_targets)`` (HEST ignores its ``--alpha``),
   ``solver="lsqr"``, ``fit_intercept=False``, ``max_iter=1000``, ``random_state=seed``.
   ``xgboost``: HEST's settings (100 trees, lr 0.1, depth 3, subsample/colsample 0.8).
   ``random-forest``: HEST uses cuML's RandomForestRegressor(70 trees, random_state 42)
   per gene; here scikit-learn's with the same settings (close, not bit-identical).
3. Pearson per gene (``scipy.stats.pearsonr``) on the concatenated test split; the fold's
   score is the mean over genes. Across folds: mean and (population) std of the fold scores.

``alpha="nested"`` (ours, not HEST's) chooses ridge's alpha by inner patient-grouped CV on the
training samples; HEST's published numbers use the fixed rule.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hagekit.errors import ConfigError
from hagekit.registry import Registry

__all__ = ["ProtocolConfig", "FoldScores", "hest_alpha", "reduce_features", "fit_predict", "pearson_per_gene",
           "evaluate_fold", "METHODS", "NESTED_GRID"]

log = logging.getLogger(__name__)

#: HEST-Bench's regressors on (reduced) features: ``fit_predict(x_train, y_train, x_test, seed, alpha)``.
#: A new regressor is one ``METHODS.register`` line (or the ``hagekit.hest_regressors`` entry points).
METHODS: Registry[Callable[..., np.ndarray]] = Registry("HEST-Bench regressor", option="--method",
                                                       entry_points="hagekit.hest_regressors")
#: Multiples of HEST's alpha tried by ``--alpha nested``.
NESTED_GRID = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)


@dataclass(frozen=True)
class ProtocolConfig:
    """HEST-Bench protocol settings; defaults are HEST's (``BenchmarkConfig``)."""

    method: str = "ridge"
    pca: bool = True
    latent_dim: int = 256
    alpha: str = "hest"  # "hest" (fixed rule), "nested", or a number
    seed: int = 1
    normalize: bool = True  # log1p of the counts
    inner_folds: int = 3

    def validate(self) -> ProtocolConfig:
        METHODS.entry(self.method)  # an unknown name lists the known ones
        if self.latent_dim < 1:
            raise ConfigError(f"--latent-dim: must be >= 1, got {self.latent_dim}")
        if self.alpha not in ("hest", "nested"):
            try:
                if not float(self.alpha) > 0:
                    raise ValueError
            except ValueError:
                raise ConfigError(f"--alpha: 'hest', 'nested' or a positive number, got {self.alpha!r}") from None
        if self.alpha != "hest" and self.method != "ridge":
            raise ConfigError(f"--alpha {self.alpha}: only ridge has an alpha (--method {self.method})")
        return self


@dataclass
class FoldScores:
    """One fold's result: per-gene Pearson r, its mean, sizes and the alpha used (ridge)."""

    pearson: np.ndarray  # (G,)
    n_train: int
    n_test: int
    alpha: float | None = None

    @property
    def mean(self) -> float:
        """Mean over genes (genes constant in the test split, NaN r, are left out)."""
        finite = np.isfinite(self.pearson)
        return float(np.mean(self.pearson[finite])) if finite.any() else float("nan")

    @property
    def n_nan(self) -> int:
        return int((~np.isfinite(self.pearson)).sum())


def hest_alpha(n_features: int, n_targets: int) -> float:
    """HEST's ridge alpha: ``100 / (n_features * n_targets)`` (trainer.py)."""
    return 100.0 / (n_features * n_targets)


def reduce_features(x_train: np.ndarray, x_test: np.ndarray, config: ProtocolConfig) -> tuple[np.ndarray, np.ndarray]:
    """StandardScaler then PCA fitted on ``x_train`` (HEST's pipeline), as float32; identity without PCA."""
    if not config.pca:
        return x_train, x_test
    from sklearn.decomposition import PCA
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    k = config.latent_dim
    if k > min(x_train.shape):
        raise ConfigError(f"--latent-dim: PCA to {k} needs at least {k} training patches and features, "
                          f"got {x_train.shape[0]} x {x_train.shape[1]}; lower --latent-dim or use --no-pca")
    pipe = Pipeline([("scaler", StandardScaler()), ("PCA", PCA(n_components=k, random_state=config.seed))])
    return pipe.fit_transform(x_train).astype(np.float32), pipe.transform(x_test).astype(np.float32)


def _ridge(alpha: float, seed: int) -> Any:
    from sklearn.linear_model import Ridge

    return Ridge(solver="lsqr", alpha=alpha, random_state=seed, fit_intercept=False, max_iter=1000)


def fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, config: ProtocolConfig,
                alpha: float | None = None) -> np.ndarray:
    """Predictions (N_test, G) of HEST's regressor fitted on (``x_train``, ``y_train``)."""
    return METHODS.get(config.method)(x_train, y_train, x_test, config.seed, alpha)


@METHODS.register("ridge", help="ridge, HEST's alpha rule (or nested / fixed --alpha)")
def _ridge_fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, seed: int,
                       alpha: float | None) -> np.ndarray:
    a = hest_alpha(x_train.shape[1], y_train.shape[1]) if alpha is None else alpha
    return np.asarray(_ridge(a, seed).fit(x_train, y_train).predict(x_test))


@METHODS.register("xgboost", help="XGBoost, HEST's settings")
def _xgboost_fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, seed: int,
                         alpha: float | None) -> np.ndarray:
    import xgboost as xgb

    reg = xgb.XGBRegressor(n_estimators=100, learning_rate=0.1, max_depth=3, min_child_weight=1, subsample=0.8,
                           colsample_bytree=0.8, gamma=0, reg_alpha=0, reg_lambda=1, random_state=seed, n_jobs=1)
    return np.asarray(reg.fit(x_train, y_train).predict(x_test))


@METHODS.register("random-forest", help="random forest per gene, HEST's settings")
def _forest_fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, seed: int,
                        alpha: float | None) -> np.ndarray:
    from sklearn.ensemble import RandomForestRegressor

    cols = [RandomForestRegressor(n_estimators=70, random_state=42).fit(x_train, y_train[:, j]).predict(x_test)
            for j in range(y_train.shape[1])]
    return np.stack(cols, axis=1)


def pearson_per_gene(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """``scipy.stats.pearsonr`` per column (NaN where either column is constant), as HEST loops it."""
    import warnings

    from scipy.stats import pearsonr

    out = np.empty(y_true.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: r is NaN, counted in FoldScores.n_nan
        for j in range(y_true.shape[1]):
            out[j] = float(pearsonr(y_true[:, j], y_pred[:, j])[0])
    return out


def _nested_alpha(x: np.ndarray, y: np.ndarray, groups: np.ndarray, config: ProtocolConfig) -> float:
    """Ridge alpha chosen by inner CV over training groups (patients), PCA refitted per inner fold."""
    from sklearn.model_selection import GroupKFold

    n_groups = len(set(groups.tolist()))
    if n_groups < 2:
        raise ConfigError(f"--alpha nested: needs at least 2 patients/samples in training, found {n_groups}")
    splitter = GroupKFold(n_splits=min(config.inner_folds, n_groups))
    scores = np.zeros(len(NESTED_GRID))
    for tr, va in splitter.split(x, y, groups):
        xtr, xva = reduce_features(x[tr], x[va], config)
        base = hest_alpha(xtr.shape[1], y.shape[1])
        for k, mult in enumerate(NESTED_GRID):
            r = pearson_per_gene(y[va], fit_predict(xtr, y[tr], xva, config, alpha=base * mult))
            scores[k] += float(np.nanmean(r)) if np.isfinite(r).any() else -1.0
    best = int(np.argmax(scores))
    xdim = min(config.latent_dim, x.shape[1]) if config.pca else x.shape[1]
    return hest_alpha(xdim, y.shape[1]) * NESTED_GRID[best]


def evaluate_fold(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                  config: ProtocolConfig, groups: np.ndarray | None = None) -> FoldScores:
    """One fold of HEST's protocol: reduce, regress, per-gene Pearson on the concatenated test split."""
    alpha: float | None = None
    if config.method == "ridge" and config.alpha == "nested":
        alpha = _nested_alpha(x_train, y_train, np.asarray(groups if groups is not None else []), config)
    elif config.method == "ridge" and config.alpha != "hest":
        alpha = float(config.alpha)
    xtr, xte = reduce_features(x_train, x_test, config)
    if config.method == "ridge" and alpha is None:
        alpha = hest_alpha(xtr.shape[1], y_train.shape[1])
    pred = fit_predict(xtr, y_train, xte, config, alpha=alpha)
    return FoldScores(pearson_per_gene(y_test, pred), int(y_train.shape[0]), int(y_test.shape[0]), alpha)
