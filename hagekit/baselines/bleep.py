"""``bleep``: BLEEP (Xie et al., NeurIPS 2023) on frozen image features.

Published choices, from bowang-lab/BLEEP (``config.py``, ``modules.py``, ``models.py``,
``BLEEP_inference.ipynb``): projection heads Linear -> GELU -> Linear -> dropout(0.1) ->
residual -> LayerNorm into 256 dimensions; temperature 1.0; CLIP loss with *soft* targets
``softmax((sim_image + sim_spot) / 2 * temperature)`` built from the within-modality
similarities; AdamW at lr 1e-3, weight decay 1e-3, batch 256 (``BLEEP_main.py``). Inference: cosine top-k
(k = 50) reference spots, prediction = plain average of their expression (the notebook's
``"average"``; ``weighting="bleep_exp"`` is its ``weighted_average``). The image encoder is
frozen here (features from ``hagekit extract``), so only the projection heads train, on
standardised features; BLEEP keeps the epoch with the best validation loss, we keep the one
with the best validation retrieval PCC (the metric reported).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from hagekit.baselines._trained import RetrievalBaseline
from hagekit.learn.estimator import hyperparameters
from hagekit.learn.torch_regressor import Batchable

__all__ = ["BLEEPRegressor", "ProjectionHead", "bleep_loss"]

log = logging.getLogger(__name__)


class ProjectionHead(nn.Module):
    """BLEEP's projection head (also used by mclSTExp): Linear -> GELU -> Linear -> dropout,
    residual, LayerNorm."""

    def __init__(self, d_in: int, d_out: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.projection = nn.Linear(d_in, d_out)
        self.gelu = nn.GELU()
        self.fc = nn.Linear(d_out, d_out)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        projected = self.projection(x)
        h = self.dropout(self.fc(self.gelu(projected)))
        return self.layer_norm(h + projected)


def bleep_loss(img: torch.Tensor, spot: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """BLEEP's symmetric CLIP loss with soft targets from within-modality similarities."""
    logits = spot @ img.T / temperature
    targets = F.softmax((img @ img.T + spot @ spot.T) / 2 * temperature, dim=-1)
    spots_loss = -(targets * F.log_softmax(logits, dim=-1)).sum(1)
    images_loss = -(targets.T * F.log_softmax(logits.T, dim=-1)).sum(1)
    return ((spots_loss + images_loss) / 2.0).mean()


@hyperparameters(
    projection_dim=256, dropout=0.1, temperature=1.0, lr=1e-3, weight_decay=1e-3, epochs=50, batch_size=256,
    top_k=50, weighting="average", patience=5, device="auto", random_state=0,
)
class BLEEPRegressor(RetrievalBaseline):
    """Image/expression projection heads aligned contrastively; top-k retrieval at inference."""

    method: ClassVar[str] = "bleep"

    def _build(self, d_in: int, Y: Any) -> nn.Module:
        dim, p = int(self.projection_dim), float(self.dropout)
        return nn.ModuleDict({"image": ProjectionHead(d_in, dim, p), "spot": ProjectionHead(Y.shape[1], dim, p)})

    def _optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(model.parameters(), lr=float(self.lr), weight_decay=float(self.weight_decay))

    def _loss(self, model: nn.Module, data: Batchable, idx: torch.Tensor) -> torch.Tensor:
        return bleep_loss(model["image"](data.x[idx]), model["spot"](data.y[idx]), float(self.temperature))

    def _reference_keys(self, model: nn.Module, data: Batchable) -> torch.Tensor:
        from hagekit.learn.loop import predict_in_batches

        model["spot"].eval()
        return predict_in_batches(model["spot"], data.y)
