"""``xgboost``: gradient-boosted trees on the frozen features.

By default the trees fit the leading ``target_pca`` (32) principal components of the
centred targets and predictions are mapped back to every gene (boosting 785 genes one by
one, or with 785-wide vector leaves, took > 8 min per fold on 2 CPU cores);
``target_pca=None`` boosts every gene. ``multi_strategy``: ``"one_output_per_tree"`` (one
tree per output and round) or ``"multi_output_tree"`` (vector leaves). Runs on CUDA
(``device="cuda"``) when a GPU is visible; early stopping on the validation spots.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hagekit.baselines._common import n_cpus
from hagekit.errors import ConfigError
from hagekit.learn.estimator import Regressor, hyperparameters
from hagekit.learn.param_checks import Interval, OneOf
from hagekit.progress import Reporter, reporter_or_null

__all__ = ["XGBoostRegressor"]

log = logging.getLogger(__name__)

STRATEGIES = ("multi_output_tree", "one_output_per_tree")


@hyperparameters(
    n_estimators=100, max_depth=4, learning_rate=0.1, subsample=0.8, colsample_bytree=0.5, min_child_weight=5.0,
    reg_lambda=1.0, multi_strategy="one_output_per_tree", target_pca=32, early_stopping_rounds=10, max_bin=64,
    device="auto", n_jobs=None, random_state=0,
)
class XGBoostRegressor(Regressor):
    """Boosted trees, multi-output (vector leaves) or per gene, with validation early stopping."""

    method: ClassVar[str] = "xgboost"
    param_constraints: ClassVar[dict[str, Any]] = {
        "n_estimators": Interval(1, integer=True), "max_depth": Interval(0, integer=True),
        "learning_rate": Interval(0, 1, low_open=True), "subsample": Interval(0, 1, low_open=True),
        "colsample_bytree": Interval(0, 1, low_open=True), "min_child_weight": Interval(0),
        "reg_lambda": Interval(0), "multi_strategy": OneOf(STRATEGIES),
        "target_pca": Interval(1, integer=True, optional=True),
        "early_stopping_rounds": Interval(1, integer=True, optional=True), "max_bin": Interval(2, integer=True),
        "n_jobs": Interval(-1, integer=True, optional=True),
    }

    def _device(self) -> str:
        from hagekit.device import resolve_device

        return resolve_device(self.device).type

    def _fit(self, X: np.ndarray, Y: np.ndarray, *, val: tuple[np.ndarray, np.ndarray] | None,
             spatial: np.ndarray | None, groups: np.ndarray | None, progress: Reporter | None) -> None:
        import xgboost as xgb

        if self.multi_strategy not in STRATEGIES:
            raise ConfigError(
                f"xgboost multi_strategy: unknown {self.multi_strategy!r} (choose from {', '.join(STRATEGIES)})"
            )
        has_val = val is not None
        self.device_ = self._device()
        params: dict[str, Any] = {
            "objective": "reg:squarederror",
            "tree_method": "hist",
            "multi_strategy": self.multi_strategy,
            "max_depth": int(self.max_depth),
            "eta": float(self.learning_rate),
            "subsample": float(self.subsample),
            "colsample_bytree": float(self.colsample_bytree),
            "min_child_weight": float(self.min_child_weight),
            "lambda": float(self.reg_lambda),
            "max_bin": int(self.max_bin),
            "device": self.device_,
            "nthread": int(self.n_jobs or max(1, n_cpus() // 2)),
            "seed": int(self.random_state) % (2**31),
        }
        self.base_score_ = Y.astype(np.float64).mean(axis=0).astype(np.float32)
        self.components_ = self._target_basis(Y - self.base_score_)
        dtrain = xgb.DMatrix(X, label=self._encode(Y), nthread=params["nthread"])
        evals = [(dtrain, "train")]
        if val is not None:
            Xv, Yv = val
            evals.append((xgb.DMatrix(Xv, label=self._encode(Yv), nthread=params["nthread"]), "val"))
        task = reporter_or_null(progress).task("xgboost rounds", total=int(self.n_estimators))

        class _Tick(xgb.callback.TrainingCallback):
            def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
                task.advance(1)
                return False

        params["base_score"] = 0.0
        self.booster_ = xgb.train(
            params,
            dtrain,
            num_boost_round=int(self.n_estimators),
            evals=evals,
            early_stopping_rounds=int(self.early_stopping_rounds) if (has_val and self.early_stopping_rounds) else None,
            callbacks=[_Tick()],
            verbose_eval=False,
        )
        task.close()
        self.best_iteration_ = int(getattr(self.booster_, "best_iteration", self.n_estimators - 1))
        log.info("xgboost: %d rounds (best %d) on %s", self.booster_.num_boosted_rounds(),
                 self.best_iteration_, self.device_)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        import xgboost as xgb

        d = xgb.DMatrix(X)
        pred = self.booster_.predict(d, iteration_range=(0, self.best_iteration_ + 1))
        pred = np.asarray(pred, dtype=np.float32).reshape(X.shape[0], -1)
        if self.components_ is not None:
            pred = pred @ self.components_
        return (pred + self.base_score_).astype(np.float32)

    def _target_basis(self, Yc: np.ndarray) -> np.ndarray | None:
        """Orthonormal rows (k, G) spanning the leading target PCs, or ``None`` for per gene."""
        if not self.target_pca:
            return None
        k = int(self.target_pca)
        if k < 1:
            raise ConfigError(f"xgboost target_pca: need a positive number of components, got {k}")
        if k >= min(Yc.shape):
            return None
        _, _, vt = np.linalg.svd(Yc.astype(np.float64), full_matrices=False)
        return vt[:k].astype(np.float32)

    def _encode(self, Y: np.ndarray) -> np.ndarray:
        Yc = Y - self.base_score_
        return Yc @ self.components_.T if self.components_ is not None else Yc

    def _fitted_params(self) -> dict[str, Any]:
        return {"best_iteration_": self.best_iteration_}

    def _arrays(self) -> dict[str, np.ndarray]:
        extra = {"target_components": self.components_} if self.components_ is not None else {}
        return {"base_score": self.base_score_, **extra}

    def save(self, out_dir: Path | str) -> Path:
        """Write ``estimator.json``, ``model.safetensors`` (base score) and ``booster.ubj``."""
        from hagekit.io.atomic import atomic_path

        out = super().save(out_dir)
        with atomic_path(out / "booster.ubj") as tmp:
            self.booster_.save_model(str(tmp))  # the .ubj suffix selects UBJSON
        return out
