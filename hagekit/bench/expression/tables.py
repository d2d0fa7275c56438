"""Tables and reports of the expression benchmarks: a :class:`BenchResult` assembled from metric
rows, rendered as Markdown and CSV, a per-section figure, and the files written for it."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hagekit.bench.expression.statistics import build_tables, paired_comparison

__all__ = ["BenchResult", "assemble", "markdown_report", "plot_per_section", "write_outputs", "features_header"]


@dataclass
class BenchResult:
    """Rows of every method, the tables built from them, and the files written."""

    rows: list[dict[str, Any]]
    table: list[dict[str, Any]]
    per_section: list[dict[str, Any]]
    paired: list[dict[str, Any]]
    reference: str | None
    header: str
    out_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _pm(e: Mapping[str, Any], metric: str, digits: int = 3) -> str:
    mu, sd = e[f"{metric}_mean"], e[f"{metric}_std"]
    if not math.isfinite(mu):
        return "n/a"
    return f"{mu:.{digits}f} ± {sd:.{digits}f}"


def markdown_report(result: BenchResult, title: str) -> str:
    """The tables as Markdown (ready to paste)."""
    lines = [f"# {title}", "", result.header, ""]
    lines += ["| Method | PCC(all) | PCC(HEG) | MSE | MAE | MSE / mean | fit s | predict s | n |",
              "|---|---|---|---|---|---|---|---|---|"]
    for e in result.table:
        lines.append(
            f"| {e['method']} | {_pm(e, 'pcc_all')} | {_pm(e, 'pcc_heg')} | {_pm(e, 'mse')} | {_pm(e, 'mae')} "
            f"| {_fmt(e['mse_vs_floor'])} | {_fmt(e['fit_seconds'], 2)} | {_fmt(e['predict_seconds'], 3)} "
            f"| {e['n_rows']} |"
        )
    sections = list(dict.fromkeys(e["section"] for e in result.per_section))
    methods = [e["method"] for e in result.table]
    for metric, label in (("pcc_all", "PCC(all)"), ("pcc_heg", "PCC(HEG)")):
        lines += ["", f"## {label} per section (mean over trials)", "",
                  "| Section | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
        for s in sections:
            vals = {e["method"]: e[metric] for e in result.per_section if e["section"] == s}
            lines.append(f"| {s} | " + " | ".join(_fmt(vals.get(m)) for m in methods) + " |")
    if result.paired:
        lines += ["", f"## Paired comparison: {result.reference} vs each method (per-section means)", "",
                  "| Method | metric | wins | losses | ties | mean diff | Wilcoxon p |",
                  "|---|---|---|---|---|---|---|"]
        for p in result.paired:
            lines.append(f"| {p['method']} | {p['metric']} | {p['wins']} | {p['losses']} | {p['ties']} "
                         f"| {_fmt(p['mean_diff'], 4)} | {_fmt(p['wilcoxon_p'], 4)} |")
        n = max((p["n_sections"] for p in result.paired), default=0)
        if n:
            lines += ["", f"With {n} sections the smallest possible two-sided Wilcoxon p is {2 / 2**n:.4f}."]
    return "\n".join(lines) + "\n"


def _csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    buf = io.StringIO()
    cols = list(columns or (list(rows[0]) if rows else []))
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k) for k in cols})
    return buf.getvalue()


def plot_per_section(per_section: Sequence[Mapping[str, Any]], methods: Sequence[str], path: Path,
                     title: str) -> Path:
    """Grouped bars of per-section PCC(all) (mean over trials, whiskers = std) per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hagekit.io.atomic import atomic_path

    sections = list(dict.fromkeys(str(e["section"]) for e in per_section))
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(sections) * max(1, len(methods)) * 0.35 + 2), 4.0))
    x = np.arange(len(sections))
    cmap = plt.get_cmap("tab10")
    for i, m in enumerate(methods):
        vals = {str(e["section"]): e for e in per_section if e["method"] == m}
        ys = [vals[s]["pcc_all"] if s in vals else np.nan for s in sections]
        es = [vals[s]["pcc_all_std"] if s in vals else 0.0 for s in sections]
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, ys, width, yerr=es, label=m, color=cmap(i % 10),
               capsize=2, error_kw={"linewidth": 0.8})
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(x)
    ax.set_xticklabels(sections)
    ax.set_ylabel("PCC(all)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncol=min(len(methods), 7), frameon=False, loc="upper center",
              bbox_to_anchor=(0.5, -0.1))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=200, format="png")
    plt.close(fig)
    return path


def assemble(rows: list[dict[str, Any]], methods: Sequence[str], *, reference: str | None,
             header: str, floor: str | None = "mean") -> BenchResult:
    """Tables and paired comparisons from metric rows."""
    table, per_section = build_tables(rows, methods, floor=floor)
    paired: list[dict[str, Any]] = []
    if reference is not None and reference in methods and len(methods) > 1:
        paired = paired_comparison(per_section, reference, methods, "pcc_all")
        paired += paired_comparison(per_section, reference, methods, "pcc_heg")
    return BenchResult(rows, table, per_section, paired, reference, header)


def write_outputs(result: BenchResult, out_dir: Path, *, title: str, settings: Mapping[str, Any]) -> dict[str, Path]:
    """Write results.csv, per_section.csv, table.csv, table.md, paired.csv, summary.json and
    pcc_per_section.png into ``out_dir`` (each file atomically)."""
    from hagekit.distributed import is_main_process
    from hagekit.io.atomic import write_json, write_text
    from hagekit.training.protocol import ROW_KEYS

    if not is_main_process():  # under torchrun rank 0 writes the tables
        return {}
    out_dir.mkdir(parents=True, exist_ok=True)
    methods = [e["method"] for e in result.table]
    files = {
        "results": write_text(out_dir / "results.csv", _csv(result.rows, ROW_KEYS)),
        "per_section": write_text(out_dir / "per_section.csv", _csv(result.per_section)),
        "table": write_text(out_dir / "table.csv", _csv(result.table)),
        "markdown": write_text(out_dir / "table.md", markdown_report(result, title)),
        "paired": write_text(out_dir / "paired.csv", _csv(result.paired, [
            "reference", "method", "metric", "n_sections", "wins", "losses", "ties", "mean_diff", "wilcoxon_p"])),
        "summary": write_json(out_dir / "summary.json", {
            "title": title, "header": result.header, "settings": dict(settings), "reference": result.reference,
            "table": result.table, "paired": result.paired}),
    }
    if result.per_section:
        files["figure"] = plot_per_section(result.per_section, methods, out_dir / "pcc_per_section.png", title)
    result.out_dir = out_dir
    result.files = files
    return files


def features_header(data: Any, settings: Any, n_methods: int) -> str:
    """The sentence that says every method saw the same inputs."""
    enc = data.feature_attrs.get("encoder", "?")
    n_spots = sum(s.n_spots for s in data.sections.values())
    folds = settings.folds or "all"
    return (
        f"All {n_methods} methods use the same frozen `{enc}` features ({data.feature_dim}-d), the same "
        f"{settings.split} split (folds: {folds if isinstance(folds, str) else ', '.join(folds)}; "
        f"{settings.trials} trial(s) of 4:1 train/validation, seed {settings.seed}), the same targets "
        f"(`{data.target}`, {len(data.genes)} genes, {len(data.sections)} sections, {n_spots} spots) and the "
        f"same metrics (`hagekit.metrics`: PCC over genes per section; HEG = top-50 by mean). "
        f"Mean ± std over section x trial rows."
    )
