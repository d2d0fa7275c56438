"""``hagekit report RUN``: a run's summary table, per-gene PCC (CSV) and their histogram.

Reads only the run folder: ``summary.json``, ``metrics.csv``, ``genes.txt`` and the per-gene
PCCs that every ``<fold>/trial<k>/metrics.json`` holds. Writes ``<run>/report/`` by default.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hagekit.errors import DataError, at
from hagekit.io.atomic import visible_files, write_text

__all__ = ["RunReport", "report_run", "per_gene_table", "summary_markdown"]


@dataclass
class RunReport:
    """What :func:`report_run` produced."""

    run: Path
    out_dir: Path
    summary: dict[str, Any]
    genes: list[str]
    gene_pcc_mean: np.ndarray
    gene_pcc_std: np.ndarray
    files: list[Path]


def per_gene_table(run: Path | str) -> tuple[list[str], np.ndarray, list[str]]:
    """Per-gene PCC of every (fold, trial, section) of a run: (genes, (R, G) array, row labels)."""
    from hagekit.io.genelist import read_gene_list

    run = Path(run)
    genes = read_gene_list(run / "genes.txt")
    rows, labels = [], []
    for path in visible_files(run, "*/trial*/metrics.json"):
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(at(path, f"not valid JSON ({exc.msg})")) from None
        for section, values in (saved.get("per_gene_pcc") or {}).items():
            if len(values) != len(genes):
                raise DataError(at(path, f"{len(values)} per-gene PCCs for {len(genes)} genes"))
            rows.append([np.nan if v is None else float(v) for v in values])
            labels.append(f"{path.parent.parent.name}/{path.parent.name}/{section}")
    if not rows:
        raise DataError(at(run, "no finished trials with per-gene PCC (<fold>/trial<k>/metrics.json)"))
    return genes, np.asarray(rows, dtype=np.float64), labels


def summary_markdown(summary: dict[str, Any], title: str = "") -> str:
    """The summary as a Markdown table: per section, then mean ± std over section x trial rows."""
    lines = [f"# {title}", ""] if title else []
    lines += ["| section | PCC(all) | PCC(HEG) | MSE | MAE |", "|---|---:|---:|---:|---:|"]
    for section, v in summary.get("per_section", {}).items():
        lines.append(f"| {section} | {v['pcc_all']:.4f} | {v['pcc_heg']:.4f} | {v['mse']:.4f} | {v['mae']:.4f} |")
    overall = summary.get("overall", {})
    if overall:
        cells = " | ".join(f"{overall[m]['mean']:.4f} ± {overall[m]['std']:.4f}" for m in ("pcc_all", "pcc_heg", "mse", "mae"))
        lines.append(f"| **mean ± std** | {cells} |")
    return "\n".join(lines) + "\n"


def report_run(run: Path | str, *, out: Path | str | None = None) -> RunReport:
    """Write ``summary.md``, ``per_gene_pcc.csv`` and ``pcc_histogram.png`` for a finished run."""
    from hagekit.plots import plot_pcc_histogram

    run = Path(run)
    summary_path = run / "summary.json"
    if not summary_path.is_file():
        raise DataError(at(run, "no summary.json; is this a finished run (`hagekit train`)?"))
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(at(summary_path, f"not valid JSON ({exc.msg})")) from None
    genes, table, labels = per_gene_table(run)
    with np.errstate(invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(table, axis=0)
            std = np.nanstd(table, axis=0)
    n = np.isfinite(table).sum(axis=0)
    out_dir = Path(out) if out is not None else run / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["gene", "pcc_mean", "pcc_std", "n", *labels])
    order = np.argsort(-np.nan_to_num(mean, nan=-2.0), kind="stable")
    for j in order:
        writer.writerow([genes[j], _fmt(mean[j]), _fmt(std[j]), int(n[j]), *(_fmt(v) for v in table[:, j])])
    files = [write_text(out_dir / "per_gene_pcc.csv", buf.getvalue())]
    method = summary.get("method", "hage")
    files.append(write_text(out_dir / "summary.md", summary_markdown(summary, f"{method} on {summary.get('dataset', '?')} ({summary.get('split', '?')} split)")))
    files.append(plot_pcc_histogram(out_dir / "pcc_histogram.png", mean,
                                    title=f"per-gene PCC, mean over {len(labels)} section x trial"))
    return RunReport(run, out_dir, summary, genes, mean, std, files)


def _fmt(v: float) -> str:
    return "" if not np.isfinite(v) else f"{v:.6f}"
