"""Expression targets: what every model in hagekit predicts, defined once.

The default (``"log1p_norm"``, mclSTExp lineage) normalises each spot's counts over the
panel to a total of ``scale`` (1e4) and takes ``log1p``. Alternatives are switchable so that
results can be compared under other conventions.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from hagekit.errors import ConfigError

__all__ = ["TARGETS", "TargetKind", "expression_targets"]

TargetKind = Literal["log1p_norm", "log1p", "raw"]
TARGETS: tuple[str, ...] = ("log1p_norm", "log1p", "raw")


def expression_targets(counts, *, kind: str = "log1p_norm", scale: float = 1e4) -> np.ndarray:
    """Turn panel counts (N spots x G genes, dense or sparse) into float32 targets.

    ``log1p_norm``: counts / spot total over the panel * ``scale``, then log1p; spots with
    no panel counts stay zero. ``log1p``: log1p of raw counts. ``raw``: the counts.
    """
    if kind not in TARGETS:
        raise ConfigError(f"--target: unknown target {kind!r} (choose from {', '.join(TARGETS)})")
    if hasattr(counts, "toarray"):
        counts = counts.toarray()
    y = np.asarray(counts, dtype=np.float64)
    if kind == "raw":
        return y.astype(np.float32)
    if kind == "log1p":
        return np.log1p(y).astype(np.float32)
    totals = y.sum(axis=1, keepdims=True)
    safe = np.where(totals > 0, totals, 1.0)
    return np.log1p(y / safe * scale).astype(np.float32)
