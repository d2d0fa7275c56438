"""Pieces every baseline shares: input checks, standardisation, devices, seeding, retrieval.

Kept here once so that the baselines differ only in what makes them different methods.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hagekit.errors import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = [
    "check_fit_inputs",
    "check_predict_input",
    "Standardizer",
    "resolve_device",
    "seed_everything",
    "retrieve_expression",
    "save_arrays",
    "n_cpus",
]


def n_cpus() -> int:
    """CPU cores this process may use (affinity-aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def check_fit_inputs(name: str, X: Any, Y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``X`` (N, D) and ``Y`` (N, G): 2-D, same N, finite; return float32 copies."""
    X = np.asarray(X, dtype=np.float32)
    Y = np.asarray(Y, dtype=np.float32)
    if X.ndim != 2 or Y.ndim != 2:
        raise DataError(f"{name}: X and Y must be 2-D (spots x features, spots x genes), got {X.shape} and {Y.shape}")
    if X.shape[0] != Y.shape[0]:
        raise DataError(f"{name}: X has {X.shape[0]} spots but Y has {Y.shape[0]}")
    if X.shape[0] < 2:
        raise DataError(f"{name}: need at least 2 training spots, got {X.shape[0]}")
    if X.shape[1] == 0:
        raise DataError(f"{name}: features have width 0 (no feature files were given?)")
    if not np.isfinite(X).all() or not np.isfinite(Y).all():
        raise DataError(f"{name}: X or Y contains NaN or infinite values")
    return X, Y


def check_predict_input(name: str, X: Any, n_features: int | None) -> np.ndarray:
    """Validate a prediction input against the fitted feature width."""
    if n_features is None:
        raise ConfigError(f"{name}: predict() called before fit()")
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != n_features:
        raise DataError(f"{name}: expected features of shape (N, {n_features}), got {X.shape}")
    return X


class Standardizer:
    """Column-wise z-scoring fitted on training data; constant columns keep scale 1."""

    def __init__(self) -> None:
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None

    def fit(self, X: np.ndarray) -> Standardizer:
        X = np.asarray(X, dtype=np.float64)
        self.mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        self.scale_ = np.where(std > 1e-8, std, 1.0)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        assert self.mean_ is not None and self.scale_ is not None
        return ((np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_).astype(np.float32)

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        return self.fit(X).transform(X)


def resolve_device(device: str | None) -> str:
    """The device name through :func:`hagekit.device.resolve_device` (``auto`` -> cuda when present)."""
    from hagekit.device import resolve_device as _resolve

    return str(_resolve(device))


def seed_everything(seed: int) -> Any:
    """Seed numpy/torch for reproducible fits; returns a ``torch.Generator`` for shuffling."""
    import torch

    torch.manual_seed(int(seed) % (2**63))
    gen = torch.Generator()
    gen.manual_seed(int(seed) % (2**63))
    return gen


WEIGHTINGS = ("average", "bleep_exp", "inverse_l1_sq")


def retrieve_expression(
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
    ``inverse_l1_sq`` (mclSTExp: ``1 / L1^2`` normalised). Tensors stay on their device.
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
    return torch.cat(out).cpu().numpy().astype(np.float32)


def save_arrays(out_dir: Path | str, params: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``params.json`` and ``model.safetensors`` (numpy arrays) into ``out_dir``."""
    from safetensors.numpy import save_file

    from hagekit.io.atomic import atomic_path, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "params.json", dict(params))
    with atomic_path(out / "model.safetensors") as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
    return out


def params_of(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The constructor parameters of an estimator, JSON-friendly."""
    out = {"class": type(obj).__name__}
    for n in names:
        val = getattr(obj, n)
        out[n] = list(val) if isinstance(val, tuple) else val
    return json.loads(json.dumps(out, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
