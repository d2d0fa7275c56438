"""``mclstexp``: mclSTExp (Min et al., 2024) on frozen image features.

Published choices, from ZhicengShi/mclSTExp (``model.py``: ``mclSTExp_Attention``,
``train.py``, ``evel_her2st.py``): each spot is a "word": its expression vector (width = the
panel) plus learned x and y position embeddings (``nn.Embedding`` over array coordinates)
goes through 2 pre-norm self-attention blocks (8 heads x 64, MLP width = panel) *across the
spots of the batch* (the "sentence"), then BLEEP's projection head to 256; the image side is
a projection head on the image features. Loss: symmetric CLIP with identity targets,
temperature 1.0. Adam lr 1e-4, weight decay 1e-3, batch 128, 90 epochs. Inference: the
training spots are encoded in consecutive batches; for each test image embedding, the
top-k (k = 200) cosine-nearest reference spots are averaged with weights ``1 / L1^2``
(normalised), L1 on the unnormalised embeddings. Images are frozen features here, and we
keep the epoch with the best validation retrieval PCC (mclSTExp trains a fixed 90 epochs).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hagekit.baselines._trained import RetrievalBaseline
from hagekit.baselines.bleep import ProjectionHead
from hagekit.errors import DataError
from hagekit.learn.estimator import hyperparameters
from hagekit.learn.param_checks import Interval
from hagekit.learn.torch_regressor import Batchable

__all__ = ["MclSTExpRegressor", "SpotEncoder", "grid_positions", "clip_loss"]

log = logging.getLogger(__name__)


def grid_positions(spatial: np.ndarray, *, pitch: float | None = None) -> tuple[np.ndarray, float]:
    """Turn spot positions into non-negative integer grid indices for the position embeddings.

    Integer array coordinates (ST/Visium ``array_x/array_y``) are used as they are; pixel
    positions are divided by the spot pitch (median nearest-neighbour distance) and rounded.
    Returns ``(indices (N, 2) int64, pitch)``.
    """
    s = np.asarray(spatial, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != 2 or not np.isfinite(s).all():
        raise DataError(f"mclstexp: spatial must be finite (N, 2) positions, got shape {s.shape}")
    if pitch is None:
        if np.allclose(s, np.round(s)) and s.min() >= 0 and s.max() < 1024:
            pitch = 1.0
        else:
            from scipy.spatial import cKDTree

            if len(s) < 2:
                pitch = 1.0
            else:
                d, _ = cKDTree(s).query(s, k=2)
                nn = d[:, 1][d[:, 1] > 0]
                pitch = float(np.median(nn)) if len(nn) else 1.0
    idx = np.round(s / pitch).astype(np.int64)
    return np.clip(idx, 0, None), float(pitch)


def clip_loss(img: torch.Tensor, spot: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Symmetric CLIP loss with identity targets (mclSTExp's ``cross_entropy`` on eye)."""
    logits = spot @ img.T / temperature
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2.0


class _Attention(nn.Module):
    """Pre-norm multi-head self-attention across the n spots of a batch (x: (n, G))."""

    def __init__(self, n_genes: int, heads: int, dim_head: int) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.scale = dim_head**-0.5
        self.norm = nn.LayerNorm(n_genes)
        self.to_qkv = nn.Linear(n_genes, inner * 3, bias=False)
        self.to_out = nn.Linear(inner, n_genes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        q, k, v = self.to_qkv(self.norm(x)).chunk(3, dim=-1)
        q, k, v = (t.reshape(n, self.heads, -1).transpose(0, 1) for t in (q, k, v))
        attn = (q @ k.transpose(-1, -2) * self.scale).softmax(dim=-1)
        out = (attn @ v).transpose(0, 1).reshape(n, -1)
        return self.to_out(out)


class _Block(nn.Module):
    """Attention then a pre-norm feed-forward of width G, both residual."""

    def __init__(self, n_genes: int, heads: int, dim_head: int, dropout: float) -> None:
        super().__init__()
        self.attn = _Attention(n_genes, heads, dim_head)
        self.ff_norm = nn.LayerNorm(n_genes)
        self.ff = nn.Sequential(
            nn.Linear(n_genes, n_genes), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(n_genes, n_genes), nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(x) + x
        return self.ff(self.ff_norm(x)) + x


class SpotEncoder(nn.Module):
    """mclSTExp's spot side: expression + x/y position embeddings, attention blocks, projection."""

    def __init__(self, n_genes: int, n_pos: int, heads: int, dim_head: int, layers: int, proj: int,
                 dropout: float) -> None:
        super().__init__()
        self.x_embed = nn.Embedding(n_pos, n_genes)
        self.y_embed = nn.Embedding(n_pos, n_genes)
        self.blocks = nn.Sequential(*[_Block(n_genes, heads, dim_head, dropout) for _ in range(layers)])
        self.projection = ProjectionHead(n_genes, proj, dropout)

    def forward(self, expr: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        pos = pos.clamp(0, self.x_embed.num_embeddings - 1)
        h = expr + self.x_embed(pos[:, 0]) + self.y_embed(pos[:, 1])
        return self.projection(self.blocks(h))


@hyperparameters(
    projection_dim=256, heads=8, dim_head=64, layers=2, dropout=0.0, temperature=1.0, lr=1e-4, weight_decay=1e-3,
    epochs=90, batch_size=128, top_k=200, weighting="inverse_l1_sq", patience=10, device="auto", random_state=0,
)
class MclSTExpRegressor(RetrievalBaseline):
    """Spot transformer (expression + position) vs image head, CLIP; weighted top-k retrieval."""

    method: ClassVar[str] = "mclstexp"
    param_constraints: ClassVar[dict[str, Any]] = {  # besides RetrievalBaseline's
        "heads": Interval(1, integer=True), "dim_head": Interval(1, integer=True), "layers": Interval(0, integer=True),
    }

    def _positions(self, spatial: np.ndarray | None, n: int) -> np.ndarray:
        if spatial is None:
            log.warning("mclstexp: no spot positions given; position embeddings are unused")
            pos, self.pitch_ = np.zeros((n, 2), dtype=np.int64), 1.0
        else:
            if len(spatial) != n:
                raise DataError(f"mclstexp: spatial has {len(spatial)} rows for {n} spots")
            pos, self.pitch_ = grid_positions(spatial)
        self.n_positions_ = int(pos.max()) + 1
        return pos

    def _build(self, d_in: int, Y: Any) -> nn.Module:
        dim, p = int(self.projection_dim), float(self.dropout)
        image = ProjectionHead(d_in, dim, p)  # built first: the seeded initialisation order matters
        spot = SpotEncoder(Y.shape[1], self.n_positions_, int(self.heads), int(self.dim_head), int(self.layers), dim, p)
        return nn.ModuleDict({"image": image, "spot": spot})

    def _optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.Adam(model.parameters(), lr=float(self.lr), weight_decay=float(self.weight_decay))

    def _loss(self, model: nn.Module, data: Batchable, idx: torch.Tensor) -> torch.Tensor:
        spot = model["spot"](data.y[idx], data.pos[idx])
        return clip_loss(model["image"](data.x[idx]), spot, float(self.temperature))

    def _reference_keys(self, model: nn.Module, data: Batchable) -> torch.Tensor:
        """Embed the reference spots in consecutive training-size batches (as mclSTExp's
        evaluation does: attention runs across each batch)."""
        encoder = model["spot"]
        encoder.eval()
        bs = max(2, min(int(self.batch_size), len(data.y)))
        with torch.inference_mode():
            return torch.cat([encoder(data.y[i : i + bs], data.pos[i : i + bs]) for i in range(0, len(data.y), bs)])

    def _fitted_params(self) -> dict[str, Any]:
        return {"pitch_": self.pitch_, "n_positions_": self.n_positions_}
