"""Gated attention MIL (Ilse et al. 2018) as a plain ``nn.Module``, and one-bag prediction."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["GatedAttentionMIL", "predict_bag", "bag_tensor"]


class GatedAttentionMIL(nn.Module):
    """Ilse et al.'s gated attention MIL: ``a = w^T (tanh(V h) * sigmoid(U h))``, softmax over tiles.

    ``forward(x (N, D))`` gives ``(logits (C,), attention (N,))``.
    """

    def __init__(self, in_dim: int, n_classes: int, *, hidden_dim: int = 256, attention_dim: int = 128,
                 dropout: float = 0.25) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout))
        self.attn_v = nn.Sequential(nn.Linear(hidden_dim, attention_dim), nn.Tanh())
        self.attn_u = nn.Sequential(nn.Linear(hidden_dim, attention_dim), nn.Sigmoid())
        self.attn_w = nn.Linear(attention_dim, 1)
        self.classifier = nn.Linear(hidden_dim, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.embed(x)
        a = self.attn_w(self.attn_v(h) * self.attn_u(h)).squeeze(-1)
        a = torch.softmax(a, dim=0)
        return self.classifier(a @ h), a


def bag_tensor(features: np.ndarray, device: Any, rng: np.random.Generator | None = None,
               max_instances: int | None = None) -> torch.Tensor:
    """A bag as a float32 tensor on ``device``; with ``rng``, at most ``max_instances`` random tiles."""
    if rng is not None and max_instances is not None and features.shape[0] > max_instances:
        features = features[np.sort(rng.choice(features.shape[0], size=max_instances, replace=False))]
    return torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).to(device)


def predict_bag(model: Any, features: np.ndarray, *, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (C,) and attention scores (N,) of one bag."""
    model.eval()
    with torch.inference_mode():
        logits, attn = model(bag_tensor(features, torch.device(device)))
        proba = torch.softmax(logits, dim=-1)
    return proba.cpu().numpy().astype(np.float64), attn.cpu().numpy().astype(np.float64)
