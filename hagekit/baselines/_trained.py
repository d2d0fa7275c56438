"""Retrieval baselines (BLEEP, mclSTExp) on the torch template (:class:`hagekit.learn.torch_regressor.TorchRegressor`).

:class:`RetrievalBaseline` adds BLEEP-style top-k retrieval from the training spots to what
every torch estimator does (standardise, seeded build, the shared loop, keep the best weights).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np

from hagekit.baselines._common import WEIGHTINGS, retrieve
from hagekit.errors import ConfigError
from hagekit.learn.param_checks import Interval, OneOf
from hagekit.learn.torch_regressor import Batchable, TorchRegressor

__all__ = ["RetrievalBaseline"]

log = logging.getLogger(__name__)


class RetrievalBaseline(TorchRegressor):
    """Image and spot encoders aligned contrastively (``model["image"]``, ``model["spot"]``);
    prediction averages the expression of the ``top_k`` training spots nearest in embedding."""

    param_constraints: ClassVar[dict[str, Any]] = {  # what BLEEP and mclSTExp share
        "projection_dim": Interval(1, integer=True), "dropout": Interval(0, 1, high_open=True),
        "temperature": Interval(0, low_open=True), "lr": Interval(0, low_open=True), "weight_decay": Interval(0),
        "epochs": Interval(1, integer=True), "batch_size": Interval(2, integer=True), "top_k": Interval(1, integer=True),
        "weighting": OneOf(WEIGHTINGS), "patience": Interval(0, integer=True),
    }

    def _check_params(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(
                f"{self.method} weighting: unknown {self.weighting!r} (choose from {', '.join(WEIGHTINGS)})"
            )

    def _reference_keys(self, model: Any, data: Batchable) -> Any:
        """Embeddings (N, d) of the training spots, the keys retrieval searches."""
        raise NotImplementedError

    def _retrieve(self, query: Any, keys: Any, values: Any) -> Any:
        return retrieve(query, keys, values, top_k=int(self.top_k), weighting=self.weighting)

    def _validate(self, model: Any, data: Batchable) -> dict[str, float]:
        from hagekit.learn.loop import predict_in_batches
        from hagekit.metrics.device import mean_gene_pcc

        keys = self._reference_keys(model, data)
        model.eval()
        pred = self._retrieve(predict_in_batches(model["image"], data.x_val), keys, data.y)
        return {"val_pcc": mean_gene_pcc(pred, data.y_val)}

    def _after_fit(self, model: Any, data: Batchable, result: Any) -> None:
        self.keys_ = self._reference_keys(model, data)
        self.values_ = data.y

    def _predict(self, X: np.ndarray) -> np.ndarray:
        from hagekit.learn.loop import predict_in_batches

        head = self.model_["image"]
        head.eval()
        q = predict_in_batches(head, self._features(X))
        return self._retrieve(q, self.keys_, self.values_).cpu().numpy()

    def _arrays(self) -> dict[str, np.ndarray]:
        return {**super()._arrays(), "reference_keys": self.keys_.cpu().numpy(),
                "reference_values": self.values_.cpu().numpy()}
