"""The gene-informed image encoder (GE, paper section 2.2).

``z^i = MLP(Attn(W_x x, W_g G, W_g G) + W_x x)``: the projected image feature is the single
query token, the projected gene embeddings of the panel are keys and values. The gene-side
projections (``W_g G`` and the attention's K/V projections) do not depend on the spot, so
they are computed once per forward and shared by the whole batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hagekit.errors import ConfigError

__all__ = ["GeneCrossAttention", "GeneInformedEncoder", "MLPImageEncoder"]


class GeneCrossAttention(nn.Module):
    """Multi-head attention of B query vectors over one shared set of G key/value tokens."""

    def __init__(self, d: int, n_heads: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        if d % n_heads:
            raise ConfigError(f"d={d} must be divisible by n_heads={n_heads}")
        self.d, self.n_heads, self.head_dim = d, n_heads, d // n_heads
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)
        self.dropout = dropout

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """``q`` (B, d) queries, ``kv`` (G, d) shared tokens -> (B, d) attended values."""
        b, h, hd = q.shape[0], self.n_heads, self.head_dim
        g = kv.shape[0]
        qh = self.q_proj(q).view(b, h, hd).transpose(0, 1)  # (h, B, hd)
        kh = self.k_proj(kv).view(g, h, hd).transpose(0, 1)  # (h, G, hd): once per forward
        vh = self.v_proj(kv).view(g, h, hd).transpose(0, 1)
        attn = torch.softmax(qh @ kh.transpose(1, 2) / math.sqrt(hd), dim=-1)  # (h, B, G)
        if self.dropout and self.training:
            attn = F.dropout(attn, p=self.dropout)
        out = (attn @ vh).transpose(0, 1).reshape(b, self.d)
        return self.out_proj(out)


def _mlp2(d: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Dropout(dropout), nn.Linear(d, d))


class GeneInformedEncoder(nn.Module):
    """GE: ``W_x``, ``W_g`` projections to ``d``, cross-attention (image query, gene K/V), residual, 2-layer MLP."""

    def __init__(self, d_in: int, d_gene: int, d: int, *, n_heads: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        self.w_x = nn.Linear(d_in, d)
        self.w_g = nn.Linear(d_gene, d)
        self.attn = GeneCrossAttention(d, n_heads, dropout)
        self.mlp = _mlp2(d, dropout)

    def forward(self, x: torch.Tensor, genes: torch.Tensor) -> torch.Tensor:
        """``x`` (B, d_in) image features, ``genes`` (G, d_gene) embeddings -> z^i (B, d)."""
        q = self.w_x(x)
        kv = self.w_g(genes)  # once per forward, shared across the batch
        return self.mlp(self.attn(q, kv) + q)


class MLPImageEncoder(nn.Module):
    """The 'no GE' ablation (Table 2): ``MLP(W_x x)``, the same layers without gene attention."""

    def __init__(self, d_in: int, d: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.w_x = nn.Linear(d_in, d)
        self.mlp = _mlp2(d, dropout)

    def forward(self, x: torch.Tensor, genes: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, d_in) -> (B, d); ``genes`` is not used by this ablation."""
        return self.mlp(self.w_x(x))
