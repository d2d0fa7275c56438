"""HAGE's MLPs: the expression encoder f_EE (3 layers) and the expression predictor f_Pred (3 layers)."""

from __future__ import annotations

from torch import nn

__all__ = ["mlp3", "ExpressionEncoder", "ExpressionPredictor"]


def mlp3(d_in: int, d_hidden: int, d_out: int, *, dropout: float = 0.0) -> nn.Sequential:
    """Linear-GELU-Linear-GELU-Linear, the three-layer MLP of the paper's encoders."""
    return nn.Sequential(
        nn.Linear(d_in, d_hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(d_hidden, d_hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(d_hidden, d_out),
    )


class ExpressionEncoder(nn.Sequential):
    """f_EE: normalised expression (B, G) -> z^e (B, d)."""

    def __init__(self, n_genes: int, d: int, *, dropout: float = 0.0) -> None:
        super().__init__(*mlp3(n_genes, d, d, dropout=dropout))


class ExpressionPredictor(nn.Sequential):
    """f_Pred: gene-informed image embedding z^i (B, d) -> predicted expression (B, G)."""

    def __init__(self, d: int, n_genes: int, *, dropout: float = 0.0) -> None:
        super().__init__(*mlp3(d, d, n_genes, dropout=dropout))
