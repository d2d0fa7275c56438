"""``ridge-ctx``: ridge on a spot's features next to the mean of its neighbours' features.

The cheap baseline that shows what spatial context alone is worth: the same standardise ->
PCA -> inner-CV ridge as ``ridge``, on ``[x_i, mean of x_j over spots j within radius]``.
The radius is in spot pitches (the section's median nearest-neighbour distance): 1.5 takes the
8 surrounding ST spots (pitch 200 µm, so 300 µm) or the 6 surrounding Visium spots (pitch
100 µm, 150 µm). Neighbourhoods use image features and positions only (see
:mod:`hagekit.learn.context`).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from hagekit.baselines.ridge import Projector, RidgeRegressor
from hagekit.errors import ConfigError, DataError, at
from hagekit.learn.context import NeighbourMeanContext
from hagekit.learn.estimator import hyperparameters, read_estimator_meta
from hagekit.learn.param_checks import Interval
from hagekit.learn.standardize import Standardizer

__all__ = ["RidgeCtxRegressor"]


@hyperparameters(radius=1.5)
class RidgeCtxRegressor(NeighbourMeanContext, RidgeRegressor):
    """``ridge`` on ``[features, neighbour-mean features]``; ``radius`` in spot pitches."""

    method: ClassVar[str] = "ridge-ctx"
    param_constraints: ClassVar[dict[str, Interval]] = {"radius": Interval(0, low_open=True)}

    def _context_radius(self) -> float:
        r = float(self.radius)
        if not (np.isfinite(r) and r > 0):
            raise ConfigError(f"ridge-ctx radius: need a positive number of spot pitches, got {self.radius}")
        return r

    @classmethod
    def load(cls, directory: Path | str) -> RidgeCtxRegressor:
        """Rebuild a fitted model from the ``estimator.json`` (or older ``params.json``) + ``model.safetensors`` of :meth:`save`."""
        from safetensors.numpy import load_file

        directory = Path(directory)
        params, _ = read_estimator_meta(directory, cls)
        try:
            arrays = load_file(str(directory / "model.safetensors"))
        except Exception as exc:  # safetensors raises several types on missing/corrupt files
            raise DataError(at(directory / "model.safetensors", f"unreadable ({exc})")) from None
        names = cls._get_param_names()
        est = cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in params.items() if k in names})
        try:
            proj = Projector(int(est.pca) if est.pca else None, est.random_state)
            proj.scaler = Standardizer()
            proj.scaler.mean_ = arrays["scaler_mean"].astype(np.float64)
            proj.scaler.scale_ = arrays["scaler_scale"].astype(np.float64)
            comps = arrays.get("pca_components")
            proj.components_ = None if comps is None else comps.astype(np.float64)
            est._proj = proj
            est.coef_ = arrays["coef"].astype(np.float64)
            est.intercept_ = arrays["intercept"].astype(np.float64)
            est.cv_scores_ = arrays["cv_scores"].astype(np.float64)
            est.alpha_ = float(params["alpha_"])
            est.cv_kind_ = str(params["cv_kind_"])
        except KeyError as exc:
            raise DataError(at(directory, f"incomplete {cls.method} model (no {exc})")) from None
        est.n_features_in_ = int(proj.scaler.mean_.shape[0])
        return est
