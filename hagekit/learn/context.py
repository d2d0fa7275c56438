"""Neighbour-mean context for any method: it sees ``[x_i, mean of x over i's neighbours]``.

:class:`NeighbourMeanContext` is a mixin placed before a :class:`~hagekit.learn.estimator.Regressor`
subclass (``class RidgeCtx(NeighbourMeanContext, RidgeRegressor)``). ``fit`` builds the
neighbourhoods of each training section over its training *and* validation spots (the
protocol's 4:1 split leaves a validation spot's neighbours among the training spots), from
features and positions only; ``predict`` builds them over the spots it is given (one test
section at a time in the protocol). Expression never enters a neighbourhood, so a test
section's expression cannot reach a prediction.

Neighbourhoods are computed once per ``fit`` and per ``predict`` call (a k-d tree over the
positions; figures in ``docs/context-methods.md``), so nothing is cached on disk that could
go stale against its features.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from hagekit.errors import DataError
from hagekit.learn.neighbours import context_features

__all__ = ["NeighbourMeanContext", "with_neighbour_mean"]

log = logging.getLogger(__name__)


def with_neighbour_mean(
    X: np.ndarray,
    spatial: np.ndarray | None,
    *,
    radius: float,
    groups: np.ndarray | None = None,
    val: tuple[Any, Any, Any] | None = None,
    name: str = "context",
) -> tuple[np.ndarray, np.ndarray | None]:
    """``[X, neighbour mean of X]`` (N, 2D) for the spots of ``X`` and, given
    ``val = (X_val, spatial_val, groups_val)``, for the validation spots (neighbourhoods over
    both sets, per group). Without positions every spot is its own neighbourhood (warned),
    so tools that pass only ``X`` (scikit-learn's ``GridSearchCV``) still run.
    """
    X = np.asarray(X, dtype=np.float32)
    Xv = None if val is None or val[0] is None else np.asarray(val[0], dtype=np.float32)
    if spatial is None:
        log.warning("%s: no spot positions given; every spot is its own neighbourhood (context off)", name)
        return np.hstack([X, X]), (None if Xv is None else np.hstack([Xv, Xv]))
    spatial = np.asarray(spatial, dtype=np.float64)
    if len(spatial) != len(X):
        raise DataError(f"{name}: spatial has {len(spatial)} rows for {len(X)} spots")
    if Xv is not None and len(Xv) and (val[1] is None or len(val[1]) != len(Xv)):
        raise DataError(f"{name}: validation spots need one position each (spatial_val)")
    extra = None if Xv is None or not len(Xv) else (Xv, np.asarray(val[1], np.float64), val[2])
    ctx, ctx_val = context_features(X, spatial, radius=radius, groups=groups, extra=extra)
    out_val = None if Xv is None else (np.hstack([Xv, ctx_val]) if ctx_val is not None else np.hstack([Xv, Xv]))
    return np.hstack([X, ctx]), out_val


class NeighbourMeanContext:
    """Mixin: the method's features become ``[x_i, neighbour mean]`` when
    :meth:`_context_radius` is not ``None`` (spot pitches); otherwise it is a pass-through.

    ``n_features_in_`` is the width the wrapped method sees (2D with context);
    ``n_spot_features_`` is the width of one spot's own features (D), what a run stores.
    """

    method: str

    def _context_radius(self) -> float | None:
        """Neighbourhood radius in spot pitches, or ``None`` for no context."""
        raise NotImplementedError

    def fit(self, X: np.ndarray, Y: np.ndarray, **fit_params: Any) -> Any:
        """Add the neighbour means (train + validation spots per section; ``groups_val=`` names
        each validation spot's section), then fit as the method does (the same keywords)."""
        groups_val = fit_params.pop("groups_val", None)
        radius = self._context_radius()
        if radius is not None:
            val = (fit_params.get("X_val"), fit_params.get("spatial_val"), groups_val)
            X, fit_params["X_val"] = with_neighbour_mean(X, fit_params.get("spatial"), radius=radius,
                                                         groups=fit_params.get("groups"), val=val, name=self.method)
        return super().fit(X, Y, **fit_params)  # type: ignore[misc]

    def predict(self, X: np.ndarray, *, spatial: np.ndarray | None = None) -> np.ndarray:
        """Predict from ``X`` (N, D) and the positions of the same spots (one section)."""
        return super().predict(self._context_input(X, spatial), spatial=spatial)  # type: ignore[misc]

    def _context_input(self, X: np.ndarray, spatial: np.ndarray | None) -> np.ndarray:
        """What the method's core sees at prediction: ``X``, or ``[X, neighbour mean]`` with context.
        A subclass that overrides ``predict`` calls this first."""
        radius = self._context_radius()
        if radius is None:
            return X
        X = np.asarray(X, dtype=np.float32)
        width = getattr(self, "n_spot_features_", None)
        if width is not None and (X.ndim != 2 or X.shape[1] != width):
            raise DataError(f"{self.method}: expected features of shape (N, {width}), got {X.shape}")
        return with_neighbour_mean(X, spatial, radius=radius, name=self.method)[0]

    @property
    def n_spot_features_(self) -> int:
        """Width of one spot's own features (before the neighbour means are appended)."""
        n = int(self.n_features_in_)  # type: ignore[attr-defined]
        return n // 2 if self._context_radius() is not None else n
