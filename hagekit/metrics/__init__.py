"""Evaluation metrics, defined once and used by HAGE, every baseline and every report.

PCC(all): mean over genes of the Pearson correlation across one test section's spots.
PCC(HEG): the same over the ``n_heg`` (50) genes with the highest mean true expression in
that section. MSE, MAE: over all spots and genes. Genes whose truth is constant in the
section have no PCC: they are excluded and counted (``n_constant_genes``). A gene whose
*prediction* is constant has no information about the truth: it scores 0 (counted in
``n_constant_pred``), so a model cannot raise its mean by predicting constants.

These numpy functions score final predictions; :mod:`hagekit.metrics.device` holds the same
definitions in torchmetrics for training and evaluation loops on the device.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "SectionMetrics",
    "pearson_per_gene",
    "evaluate_section",
    "summarize",
    "METRIC_NAMES",
    "CONSTANT_EPS",
]

METRIC_NAMES = ("pcc_all", "pcc_heg", "mse", "mae")
#: A column is constant when its root sum of squared deviations is below this x max(|value|, 1) x sqrt(N).
CONSTANT_EPS = 1e-12


def pearson_per_gene(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pearson r per gene (column) across spots, vectorised.

    Returns ``(r, true_constant, pred_constant)``: ``r`` is NaN where the truth is constant
    and 0 where only the prediction is constant.
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape or t.ndim != 2:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} must be equal (N, G) arrays")
    tc = t - t.mean(axis=0)
    pc = p - p.mean(axis=0)
    tn = np.sqrt((tc**2).sum(axis=0))
    pn = np.sqrt((pc**2).sum(axis=0))
    scale_t = np.maximum(np.abs(t).max(axis=0), 1.0)
    scale_p = np.maximum(np.abs(p).max(axis=0), 1.0)
    true_const = tn <= CONSTANT_EPS * scale_t * np.sqrt(len(t))
    pred_const = pn <= CONSTANT_EPS * scale_p * np.sqrt(len(p))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (tc * pc).sum(axis=0) / (tn * pn)
    r = np.where(pred_const, 0.0, r)
    r = np.where(true_const, np.nan, r)
    return np.clip(r, -1.0, 1.0), true_const, pred_const & ~true_const


@dataclass(frozen=True)
class SectionMetrics:
    """Metrics of one test section (or one group of spots)."""

    pcc_all: float
    pcc_heg: float
    mse: float
    mae: float
    n_spots: int
    n_genes: int
    n_constant_genes: int
    n_constant_pred: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def evaluate_section(
    y_true: np.ndarray, y_pred: np.ndarray, *, n_heg: int = 50, return_per_gene: bool = False
):
    """Compute :class:`SectionMetrics` for one section; optionally also the per-gene r."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    r, true_const, pred_const = pearson_per_gene(t, p)
    valid = ~true_const
    pcc_all = float(np.mean(r[valid])) if valid.any() else float("nan")
    means = np.where(valid, t.mean(axis=0), -np.inf)
    k = min(n_heg, int(valid.sum()))
    heg = np.argsort(-means, kind="stable")[:k]
    pcc_heg = float(np.mean(r[heg])) if k else float("nan")
    diff = t - p
    metrics = SectionMetrics(
        pcc_all=pcc_all,
        pcc_heg=pcc_heg,
        mse=float(np.mean(diff**2)),
        mae=float(np.mean(np.abs(diff))),
        n_spots=int(t.shape[0]),
        n_genes=int(t.shape[1]),
        n_constant_genes=int(true_const.sum()),
        n_constant_pred=int(pred_const.sum()),
    )
    return (metrics, r) if return_per_gene else metrics


def summarize(
    rows: Iterable[Mapping[str, float]], names: Sequence[str] = METRIC_NAMES
) -> dict[str, dict[str, float]]:
    """Mean, standard deviation (ddof=0) and count of each metric over rows (NaN ignored)."""
    rows = list(rows)
    out: dict[str, dict[str, float]] = {}
    for name in names:
        vals = np.array([float(r[name]) for r in rows if name in r], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        out[name] = {
            "mean": float(vals.mean()) if len(vals) else float("nan"),
            "std": float(vals.std()) if len(vals) else float("nan"),
            "n": int(len(vals)),
        }
    return out
