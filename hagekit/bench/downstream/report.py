"""Scores, tables and the Figure 3 bar chart of the downstream tasks (linear probe, AB-MIL).

Both tasks report Accuracy, AUC (binary, or one-vs-rest macro over the classes present in
a test fold) and macro Recall per fold, then mean ± std over folds, per encoder.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hagekit.io.atomic import write_json, write_text

__all__ = [
    "METRICS", "EncoderScores", "DownstreamResult", "classification_metrics", "summarize_folds",
    "write_downstream_report", "plot_downstream_bars", "format_mean_std",
]

logger = logging.getLogger(__name__)

#: Metric keys in report order, and their display names.
METRICS = ("accuracy", "auc", "recall")
METRIC_LABELS = {"accuracy": "Accuracy", "auc": "AUC", "recall": "Recall"}


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Accuracy, AUC and macro recall of class probabilities ``proba`` (N, C) against ``y_true``.

    AUC is the binary ROC AUC for C = 2 and the one-vs-rest macro mean otherwise, over the
    classes that occur in ``y_true`` (a class absent from a fold has no AUC); NaN when
    ``y_true`` holds a single class.
    """
    from sklearn.metrics import recall_score, roc_auc_score

    y_true = np.asarray(y_true, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    pred = proba.argmax(axis=1)
    present = np.unique(y_true)
    acc = float((pred == y_true).mean()) if y_true.size else float("nan")
    recall = float(recall_score(y_true, pred, labels=present, average="macro", zero_division=0))
    auc = float("nan")
    if present.size >= 2:
        if proba.shape[1] == 2:
            auc = float(roc_auc_score(y_true, proba[:, 1]))
        else:
            aucs = [float(roc_auc_score(y_true == c, proba[:, c])) for c in present]
            auc = float(np.mean(aucs))
    return {"accuracy": acc, "auc": auc, "recall": recall}


def summarize_folds(folds: Sequence[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and (population-free, ddof=1 when >1 fold) std of each metric over folds, NaN-aware."""
    mean: dict[str, float] = {}
    std: dict[str, float] = {}
    for m in METRICS:
        vals = np.asarray([f[m] for f in folds if m in f], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        mean[m] = float(vals.mean()) if vals.size else float("nan")
        std[m] = float(vals.std(ddof=1)) if vals.size > 1 else 0.0 if vals.size else float("nan")
    return mean, std


@dataclass
class EncoderScores:
    """One encoder's per-fold metrics and their mean ± std."""

    encoder: str
    folds: list[dict[str, Any]]
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.mean:
            self.mean, self.std = summarize_folds(self.folds)


@dataclass
class DownstreamResult:
    """All encoders' scores on one task and dataset, plus the settings that produced them."""

    task: str
    dataset: str
    scores: list[EncoderScores]
    config: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "dataset": self.dataset,
            "encoders": [
                {"encoder": s.encoder, "mean": s.mean, "std": s.std, "folds": s.folds, **s.info}
                for s in self.scores
            ],
        }


def format_mean_std(mean: float, std: float, digits: int = 3) -> str:
    """``"0.912 ± 0.013"`` (``"n/a"`` for NaN)."""
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow(["" if isinstance(v, float) and not np.isfinite(v) else v for v in r])
    return buf.getvalue()


def write_downstream_report(result: DownstreamResult, out_dir: Path | str) -> dict[str, Path]:
    """Write ``summary.csv`` (mean/std per encoder), ``folds.csv``, ``summary.json``,
    ``config.json`` and the Figure 3 bar chart ``figure3.png`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    header = ["encoder"] + [f"{m}_{k}" for m in METRICS for k in ("mean", "std")] + ["n_folds"]
    rows = [
        [s.encoder] + [s.mean[m] if k == "mean" else s.std[m] for m in METRICS for k in ("mean", "std")] + [len(s.folds)]
        for s in result.scores
    ]
    paths = {"summary_csv": write_text(out / "summary.csv", _csv_text(header, rows))}
    fold_keys: list[str] = []
    for s in result.scores:
        for f in s.folds:
            for k in f:
                if k not in fold_keys:
                    fold_keys.append(k)
    fold_rows = [[s.encoder] + [f.get(k, "") for k in fold_keys] for s in result.scores for f in s.folds]
    paths["folds_csv"] = write_text(out / "folds.csv", _csv_text(["encoder", *fold_keys], fold_rows))
    paths["summary_json"] = write_json(out / "summary.json", result.as_dict())
    paths["config_json"] = write_json(out / "config.json", result.config)
    paths["figure"] = plot_downstream_bars(
        result, out / "figure3.png", title=f"{result.task}: {result.dataset}"
    )
    return paths


def plot_downstream_bars(result: DownstreamResult, path: Path | str, *, title: str | None = None) -> Path:
    """The paper's Figure 3: one group per metric, one bar per encoder, std as error bars."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n_enc = max(1, len(result.scores))
    x = np.arange(len(METRICS))
    width = 0.8 / n_enc
    fig, ax = plt.subplots(figsize=(2.0 + 1.2 * len(METRICS) * max(1.0, n_enc / 2), 3.8), dpi=200)
    cmap = plt.get_cmap("tab10")
    lows = []
    for i, s in enumerate(result.scores):
        means = np.asarray([s.mean[m] for m in METRICS], dtype=float)
        stds = np.nan_to_num(np.asarray([s.std[m] for m in METRICS], dtype=float))
        shown = np.nan_to_num(means)
        # error bars clipped to the metric's range [0, 1]
        yerr = np.stack([np.minimum(stds, shown), np.minimum(stds, np.clip(1.0 - shown, 0.0, None))])
        pos = x - 0.4 + width * (i + 0.5)
        ax.bar(
            pos, shown, width, yerr=yerr, capsize=3, label=s.encoder, color=cmap(i % 10),
            edgecolor="black", linewidth=0.5, error_kw={"elinewidth": 0.8},
        )
        for px, v, top in zip(pos, means, shown + yerr[1], strict=True):
            if np.isfinite(v):
                ax.text(px, top + 0.01, f"{v:.3f}", ha="center", va="bottom", fontsize=6)
        lows += [m - e for m, e in zip(shown, yerr[0], strict=True) if m > 0]
    ax.set_ylim(max(0.0, min(lows, default=0.0) - 0.1), 1.08)
    ax.set_xticks(x, [METRIC_LABELS[m] for m in METRICS])
    ax.set_ylabel("score (mean ± std over folds)")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=min(n_enc, 4))
    ax.spines[["top", "right"]].set_visible(False)
    from hagekit.plots import save_png

    return save_png(fig, path)
