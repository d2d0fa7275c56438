"""``mean``: predict each gene's training mean everywhere, the floor every method must beat.

Its predictions are constant, so ``hagekit.metrics`` scores its PCC as 0 for every gene;
its MSE is the reference other methods are reported against.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from hagekit.learn.estimator import Regressor, hyperparameters
from hagekit.progress import Reporter

__all__ = ["MeanRegressor"]


@hyperparameters(random_state=0)
class MeanRegressor(Regressor):
    """The per-gene training mean (ignores the features)."""

    method: ClassVar[str] = "mean"

    def _fit(self, X: np.ndarray, Y: np.ndarray, *, val: Any, spatial: np.ndarray | None,
             groups: np.ndarray | None, progress: Reporter | None) -> None:
        self.mean_ = Y.astype(np.float64).mean(axis=0).astype(np.float32)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.mean_, (X.shape[0], self.mean_.shape[0])).copy()

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean_}
