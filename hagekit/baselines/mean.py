"""``mean``: predict each gene's training mean everywhere, the floor every method must beat.

Its predictions are constant, so ``hagekit.metrics`` scores its PCC as 0 for every gene;
its MSE is the reference other methods are reported against.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hagekit.baselines._common import check_fit_inputs, check_predict_input, params_of, save_arrays
from hagekit.progress import Reporter

__all__ = ["MeanRegressor"]


class MeanRegressor:
    """The per-gene training mean (ignores the features)."""

    _PARAMS = ("random_state",)

    def __init__(self, *, random_state: int = 0) -> None:
        self.random_state = random_state

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
    ) -> MeanRegressor:
        X, Y = check_fit_inputs("mean", X, Y)
        self.n_features_in_ = X.shape[1]
        self.mean_ = Y.astype(np.float64).mean(axis=0).astype(np.float32)
        return self

    def predict(self, X: np.ndarray, *, spatial: np.ndarray | None = None) -> np.ndarray:
        X = check_predict_input("mean", X, getattr(self, "n_features_in_", None))
        return np.broadcast_to(self.mean_, (X.shape[0], self.mean_.shape[0])).copy()

    def get_params(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in self._PARAMS}

    def save(self, out_dir: Path | str) -> Path:
        """Write ``params.json`` + ``model.safetensors`` (the mean vector)."""
        return save_arrays(out_dir, params_of(self, self._PARAMS), {"mean": self.mean_})
