"""Pieces baselines share besides the estimator base (:mod:`hagekit.learn.estimator`):
top-k expression retrieval (standardisation is :mod:`hagekit.learn.standardize`).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from hagekit.device import usable_cpus as n_cpus
from hagekit.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["retrieve_expression", "retrieve", "WEIGHTINGS", "n_cpus"]


WEIGHTINGS = ("average", "bleep_exp", "inverse_l1_sq")


def retrieve_expression(query: Any, keys: Any, values: Any, *, top_k: int, weighting: str = "average",
                        chunk: int = 256) -> np.ndarray:
    """:func:`retrieve` as a float32 numpy array."""
    return retrieve(query, keys, values, top_k=top_k, weighting=weighting, chunk=chunk).cpu().numpy().astype(np.float32)


def retrieve(
    query: Any,
    keys: Any,
    values: Any,
    *,
    top_k: int,
    weighting: str = "average",
    chunk: int = 256,
) -> np.ndarray:
    """Predict expression as a weighted average of the ``top_k`` most similar reference spots.

    Neighbours are chosen by cosine similarity of the embeddings (BLEEP's ``find_matches``).
    ``weighting``: ``average`` (BLEEP's default, plain mean), ``bleep_exp`` (BLEEP's
    ``weighted_average``: ``exp(-(d2 - d2_min + 1))`` on squared Euclidean distances) or
    ``inverse_l1_sq`` (mclSTExp: ``1 / L1^2`` normalised). Returns a tensor on the query's device.
    """
    import torch
    import torch.nn.functional as F

    if weighting not in WEIGHTINGS:
        raise ConfigError(f"weighting: unknown {weighting!r} (choose from {', '.join(WEIGHTINGS)})")
    q = torch.as_tensor(query, dtype=torch.float32)
    k = torch.as_tensor(keys, dtype=torch.float32, device=q.device)
    v = torch.as_tensor(values, dtype=torch.float32, device=q.device)
    top_k = int(max(1, min(top_k, k.shape[0])))
    kn = F.normalize(k, dim=-1)
    out = []
    for start in range(0, q.shape[0], chunk):
        qc = q[start : start + chunk]
        sim = F.normalize(qc, dim=-1) @ kn.T
        idx = sim.topk(top_k, dim=1).indices  # (c, k)
        if weighting == "average":
            w = torch.full(idx.shape, 1.0 / top_k, device=q.device)
        else:
            diff = k[idx] - qc[:, None, :]  # (c, k, d)
            if weighting == "bleep_exp":
                d2 = (diff**2).sum(-1)
                w = torch.exp(-(d2 - d2[:, :1] + 1.0))
            else:
                l1 = diff.abs().sum(-1).clamp_min(1e-12)
                w = 1.0 / l1**2
            w = w / w.sum(dim=1, keepdim=True).clamp_min(1e-30)
        dense = torch.zeros(qc.shape[0], k.shape[0], device=q.device).scatter_(1, idx, w)
        out.append(dense @ v)
    return torch.cat(out)
