"""Statistics of the expression benchmarks: the Table-1-like summary and per-section means of
metric rows, and the paired comparison (wins per section, Wilcoxon signed-rank p) of a
reference method against each other method."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hagekit.metrics import METRIC_NAMES

__all__ = ["build_tables", "paired_comparison"]


def _finite(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray([float(v) for v in values], dtype=np.float64)
    return arr[np.isfinite(arr)]


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = _finite(values)
    if not len(arr):
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std())


def build_tables(rows: Sequence[Mapping[str, Any]], methods: Sequence[str],
                 floor: str | None = "mean") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The Table-1-like summary (one row per method) and per-section means over trials.

    Mean ± std are over section x trial rows; ``mse_vs_floor`` is each method's mean MSE
    divided by the ``floor`` method's (per-gene training mean); seconds are per fit and per
    predicted section.
    """
    by_method: dict[str, list[Mapping[str, Any]]] = {m: [] for m in methods}
    for r in rows:
        by_method.setdefault(str(r["method"]), []).append(r)
    floor_mse = None
    if floor and by_method.get(floor):
        floor_mse = _mean_std([r["mse"] for r in by_method[floor]])[0]
    table = []
    for m in methods:
        rs = by_method.get(m, [])
        entry: dict[str, Any] = {"method": m, "n_rows": len(rs)}
        for metric in METRIC_NAMES:
            mu, sd = _mean_std([r[metric] for r in rs])
            entry[f"{metric}_mean"], entry[f"{metric}_std"] = mu, sd
        entry["mse_vs_floor"] = (entry["mse_mean"] / floor_mse) if floor_mse else float("nan")
        fits = {(r["fold"], r["trial"]): float(r["fit_seconds"]) for r in rs}
        entry["fit_seconds"] = float(np.mean(list(fits.values()))) if fits else float("nan")
        entry["predict_seconds"] = _mean_std([r["predict_seconds"] for r in rs])[0]
        entry["n_constant_genes_max"] = max((int(r.get("n_constant_genes", 0)) for r in rs), default=0)
        table.append(entry)
    per_section = []
    sections = list(dict.fromkeys(str(r["section"]) for r in rows))
    for m in methods:
        for s in sections:
            rs = [r for r in by_method.get(m, []) if str(r["section"]) == s]
            if not rs:
                continue
            entry = {"method": m, "section": s, "n_trials": len(rs)}
            for metric in METRIC_NAMES:
                mu, sd = _mean_std([r[metric] for r in rs])
                entry[metric], entry[f"{metric}_std"] = mu, sd
            per_section.append(entry)
    return table, per_section


def paired_comparison(per_section: Sequence[Mapping[str, Any]], reference: str,
                      methods: Sequence[str], metric: str = "pcc_all",
                      tie_tol: float = 1e-4) -> list[dict[str, Any]]:
    """``reference`` vs each method on per-section means: wins/losses/ties and Wilcoxon p.

    Differences within ``tie_tol`` are ties (and dropped by the test, Wilcoxon's zero rule),
    so numerical noise is not counted as a win. The two-sided Wilcoxon signed-rank test pairs
    sections; with n sections its smallest p is 2 / 2**n (0.0625 for five sections).
    """
    from scipy.stats import wilcoxon

    def values(m: str) -> dict[str, float]:
        return {str(e["section"]): float(e[metric]) for e in per_section if e["method"] == m}

    ref = values(reference)
    higher_is_better = metric.startswith("pcc")
    out = []
    for m in methods:
        if m == reference:
            continue
        other = values(m)
        common = [s for s in ref if s in other and math.isfinite(ref[s]) and math.isfinite(other[s])]
        diff = np.array([ref[s] - other[s] for s in common])
        if not higher_is_better:
            diff = -diff
        diff = np.where(np.abs(diff) <= tie_tol, 0.0, diff)
        wins = int((diff > 0).sum())
        losses = int((diff < 0).sum())
        if len(diff) == 0:
            p = float("nan")
        elif np.all(diff == 0):
            p = 1.0
        else:
            p = float(wilcoxon(diff, zero_method="wilcox", alternative="two-sided").pvalue)
        out.append({
            "reference": reference, "method": m, "metric": metric, "n_sections": len(common),
            "wins": wins, "losses": losses, "ties": len(common) - wins - losses,
            "mean_diff": float(np.mean([ref[s] - other[s] for s in common])) if common else float("nan"),
            "wilcoxon_p": p,
        })
    return out
