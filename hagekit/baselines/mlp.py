"""``mlp``: a 3-layer MLP regressor on frozen features, trained with MSE.

The "simple foundation-model features + MLP" baseline: standardised inputs, two hidden
layers (ReLU, dropout), Adam, early stopping on the validation spots' MSE (best weights kept),
trained by the shared loop (:class:`hagekit.learn.torch_regressor.TorchRegressor`).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np

from hagekit.learn.estimator import hyperparameters
from hagekit.learn.param_checks import Interval
from hagekit.learn.torch_regressor import Batchable, TorchRegressor

__all__ = ["MLPRegressor"]

log = logging.getLogger(__name__)


def _build(d_in: int, hidden: int, d_out: int, dropout: float) -> Any:
    """Linear-ReLU-Dropout twice (d_in -> hidden -> hidden), then Linear to d_out."""
    from torch import nn

    layers: list[nn.Module] = []
    for a in (d_in, hidden):
        layers += [nn.Linear(a, hidden), nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers, nn.Linear(hidden, d_out))


@hyperparameters(
    hidden=512, dropout=0.4, lr=3e-4, weight_decay=1e-3, epochs=100, batch_size=256, patience=10, device="auto",
    random_state=0,
)
class MLPRegressor(TorchRegressor):
    """Linear-ReLU-Linear-ReLU-Linear with MSE loss and validation early stopping.

    Defaults (dropout 0.4, lr 3e-4, weight decay 1e-3; were 0.1, 1e-3, 1e-5) were chosen by the same
    nested validation as HAGE's (``hagekit bench tune --method mlp`` on HER2ST C2..C6: inner score
    0.2437 vs 0.2192), so that a comparison with HAGE does not pit a tuned model against an untuned one.
    """

    method: ClassVar[str] = "mlp"
    monitor: ClassVar[str] = "val_mse"
    mode: ClassVar[str] = "min"
    min_delta: ClassVar[float] = 1e-6
    min_batch: ClassVar[int] = 1
    param_constraints: ClassVar[dict[str, Any]] = {
        "hidden": Interval(1, integer=True), "dropout": Interval(0, 1, high_open=True),
        "lr": Interval(0, low_open=True), "weight_decay": Interval(0), "epochs": Interval(1, integer=True),
        "batch_size": Interval(1, integer=True), "patience": Interval(0, integer=True),

    }

    def _build(self, d_in: int, Y: np.ndarray) -> Any:
        import torch

        model = _build(d_in, int(self.hidden), Y.shape[1], float(self.dropout))
        with torch.no_grad():  # start from the per-gene mean, so training learns the deviations
            model[-1].bias.copy_(torch.from_numpy(Y.mean(axis=0)))
        return model

    def _optimizer(self, model: Any) -> Any:
        import torch

        return torch.optim.Adam(model.parameters(), lr=float(self.lr), weight_decay=float(self.weight_decay))

    def _loss(self, model: Any, data: Batchable, idx: Any) -> Any:
        import torch.nn.functional as F

        return F.mse_loss(model(data.x[idx]), data.y[idx])

    def _validate(self, model: Any, data: Batchable) -> dict[str, float]:
        import torch.nn.functional as F

        return {"val_mse": float(F.mse_loss(model(data.x_val), data.y_val))}

    def _predict(self, X: np.ndarray) -> np.ndarray:
        from hagekit.learn.loop import predict_in_batches

        self.model_.eval()
        return predict_in_batches(self.model_, self._features(X)).cpu().numpy()
