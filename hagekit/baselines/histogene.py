"""``histogene``: HisToGene (Pang et al., 2021) on frozen spot features.

Read from maxpmx/HisToGene (``vis_model.py``: ``HisToGene``; ``transformer.py``: ``ViT``). All
spots of a section are one sequence: each spot's token is a linear embedding of its patch plus
learned x and y position embeddings (``nn.Embedding(n_pos, dim)`` over the spot-grid
coordinates); a ViT encoder (pre-norm attention + GELU feed-forward of width ``2 dim``, dropout
on the embeddings and inside) lets every spot attend to every other; a LayerNorm + Linear head
predicts the genes; MSE; Adam; one section per step. Ours embeds the spot's frozen features
instead of its flattened raw pixels, sizes the model for CPU (width 128, 2 layers, 4 heads;
HisToGene: 1024, 4 layers, 16 heads), starts the head's bias at the gene means, and keeps the
epoch with the best validation PCC (HisToGene trains a fixed 100 epochs).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hagekit.baselines._sections import SectionBaseline, section_grid
from hagekit.learn.estimator import hyperparameters
from hagekit.learn.param_checks import Interval

__all__ = ["HisToGeneRegressor", "SpotSequenceEncoder"]


class SpotSequenceEncoder(nn.Module):
    """Feature embedding + x/y position embeddings, then a pre-norm transformer over the spots."""

    def __init__(self, d_in: int, d: int, heads: int, layers: int, mlp_dim: int, dropout: float, n_pos: int) -> None:
        super().__init__()
        self.embed = nn.Linear(d_in, d)
        self.x_embed = nn.Embedding(n_pos, d)
        self.y_embed = nn.Embedding(n_pos, d)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(d, heads, mlp_dim, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def positions(self, grid: torch.Tensor) -> torch.Tensor:
        grid = grid.clamp(0, self.x_embed.num_embeddings - 1)
        return self.x_embed(grid[:, 0]) + self.y_embed(grid[:, 1])

    def forward(self, x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self.embed(x) + self.positions(grid))
        return self.layers(h[None])[0]


# dropout: chosen by nested bench tune (docs/context-models.md)
@hyperparameters(
    d_model=128, heads=4, layers=2, mlp_ratio=2.0, dropout=0.3, n_pos=128, lr=1e-3, weight_decay=1e-4, epochs=100,
    patience=10, device="auto", random_state=0,
)
class HisToGeneRegressor(SectionBaseline):
    """A transformer over all spots of a section (features + learned 2-D position embeddings)."""

    method: ClassVar[str] = "histogene"
    param_constraints: ClassVar[dict[str, Any]] = {
        "layers": Interval(1, integer=True), "mlp_ratio": Interval(0, low_open=True),
        "dropout": Interval(0, 1, high_open=True),
    }

    def _build(self, d_in: int, Y: np.ndarray) -> nn.Module:
        d = int(self.d_model)
        encoder = SpotSequenceEncoder(d_in, d, int(self.heads), int(self.layers), max(1, int(d * float(self.mlp_ratio))),
                                      float(self.dropout), int(self.n_pos))
        head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, Y.shape[1]))
        with torch.no_grad():
            head[1].bias.copy_(torch.from_numpy(Y.mean(axis=0)))
        return nn.ModuleDict({"encoder": encoder, "head": head})

    def _section_inputs(self, spatial: np.ndarray) -> dict[str, Any]:
        return {"grid": torch.from_numpy(section_grid(spatial))}

    def _section_forward(self, model: Any, x: Any, inputs: dict[str, Any], rows: Any) -> dict[str, Any]:
        h = model["encoder"](x, inputs["grid"])
        return {"pred": model["head"](h[rows])}

    def _loss_terms(self, out: dict[str, Any], y: Any) -> dict[str, Any]:
        return {"loss": F.mse_loss(out["pred"], y)}
