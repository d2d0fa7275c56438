"""``bench hest`` outputs: per task x encoder results JSON + per-gene CSV, the tasks x encoders
table (mean ± std over folds, average over tasks), paired per-fold comparison against the
reference encoder (wins, Wilcoxon p) and the per-gene scatter against the reference.

Folds flagged as leaking (``--allow-leak``) carry ``†`` in every table cell they enter.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hagekit.io.atomic import write_json, write_text
from hagekit.workspace import encoder_slug

if TYPE_CHECKING:
    from hagekit.bench.hest.run import EncoderResult, HestBenchResult

__all__ = ["result_record", "per_gene_rows", "table_rows", "compare_to_reference", "table_markdown",
           "write_hest_outputs", "LEAK_MARK"]

LEAK_MARK = "†"


def result_record(r: EncoderResult) -> dict[str, Any]:
    """HEST's ``results_kfold.json`` keys (pearson_mean/std, mean_per_split, pearson_corrs) plus folds."""
    per_gene = np.stack([f.pearson for f in r.folds], axis=1)  # (G, folds)
    return {
        "task": r.task, "encoder": r.encoder,
        "pearson_mean": r.mean, "pearson_std": r.std, "mean_per_split": r.fold_means.tolist(),
        "folds": [{"fold": i, "n_train": f.n_train, "n_test": f.n_test, "pearson_mean": f.mean,
                   "n_nan_genes": f.n_nan, "alpha": f.alpha, "leak": r.leaks.get(i, [])} for i, f in enumerate(r.folds)],
        "pearson_corrs": [{"name": g, "pearson_corrs": per_gene[j].tolist(), "mean": float(np.nanmean(per_gene[j])),
                           "std": float(np.nanstd(per_gene[j]))} for j, g in enumerate(r.genes)],
        "leaking_folds": sorted(r.leaks),
    }


def per_gene_rows(r: EncoderResult) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of ``per_gene.csv``: gene, r per fold, mean, std."""
    per_gene = np.stack([f.pearson for f in r.folds], axis=1)
    header = ["gene", *[f"fold_{i}" for i in range(len(r.folds))], "mean", "std"]
    rows = [[g, *[f"{v:.6f}" for v in per_gene[j]], f"{np.nanmean(per_gene[j]):.6f}", f"{np.nanstd(per_gene[j]):.6f}"]
            for j, g in enumerate(r.genes)]
    return header, rows


def _cell(r: EncoderResult | None) -> str:
    if r is None:
        return "-"
    return f"{r.mean:.4f} ± {r.std:.4f}{LEAK_MARK if r.leaks else ''}"


def table_rows(res: HestBenchResult) -> list[list[str]]:
    """Rows task, one cell per encoder; the last row is the average over tasks."""
    by = {(r.task, r.encoder): r for r in res.results}
    rows = [[t, *[_cell(by.get((t, e))) for e in res.encoders]] for t in res.tasks]
    avg = ["average"]
    for e in res.encoders:
        vals = [by[(t, e)].mean for t in res.tasks if (t, e) in by]
        leak = any(by[(t, e)].leaks for t in res.tasks if (t, e) in by)
        avg.append(f"{np.mean(vals):.4f}{LEAK_MARK if leak else ''}" if vals else "-")
    return [*rows, avg]


def compare_to_reference(res: HestBenchResult) -> list[dict[str, Any]]:
    """Each encoder minus the reference, paired per (task, fold): mean difference, wins, Wilcoxon p."""
    from hagekit.bench.expression.statistics import paired_comparison

    entries = [{"section": f"{r.task}/fold{i}", "method": r.encoder, "pcc_all": float(v)}
               for r in res.results for i, v in enumerate(r.fold_means)]
    leaky = {r.encoder for r in res.results if r.leaks}
    out = []
    for c in paired_comparison(entries, str(res.reference), res.encoders):
        out.append({"encoder": c["method"], "reference": c["reference"], "n_folds": c["n_sections"],
                    "mean_diff": -c["mean_diff"], "wins": c["losses"], "losses": c["wins"], "ties": c["ties"],
                    "wilcoxon_p": c["wilcoxon_p"], "leak": c["method"] in leaky or c["reference"] in leaky})
    return out


def table_markdown(res: HestBenchResult, published: dict[str, dict[str, float | None]] | None = None) -> str:
    """The tasks x encoders table (Pearson r, mean ± std over folds), published rows appended if given."""
    head = ["task", *res.encoders]
    rows = table_rows(res)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if any(r.leaks for r in res.results):
        lines.append(f"\n{LEAK_MARK} at least one fold's test samples were seen in training by this encoder (--allow-leak).")
    if published:
        from hagekit.bench.hest.published import PUBLISHED_SOURCE

        cols = [*res.tasks, "average"]
        lines += ["", f"Published (not recomputed; {PUBLISHED_SOURCE}):", "",
                  "| model | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
        for model, row in published.items():
            lines.append(f"| {model} | " + " | ".join("-" if row.get(c) is None else f"{row[c]:.4f}" for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def short_label(encoder: str) -> str:
    """``ge:/long/path/run:C4:0`` -> ``ge:run:C4:0`` (figure labels; tables keep the full spec)."""
    if not encoder.startswith("ge:"):
        return encoder
    return "ge:" + Path(encoder[3:]).name


def _scatter(res: HestBenchResult, path: Path) -> Path | None:
    """Per-gene mean r of each encoder (y) against the reference (x), one colour per task."""
    others = [e for e in res.encoders if e != res.reference]
    if not others:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {(r.task, r.encoder): r for r in res.results}
    fig, axes = plt.subplots(1, len(others), figsize=(4.2 * len(others), 4.2), squeeze=False)
    for ax, enc in zip(axes[0], others, strict=True):
        for t in res.tasks:
            ref, r = by.get((t, str(res.reference))), by.get((t, enc))
            if ref is None or r is None:
                continue
            x = np.nanmean(np.stack([f.pearson for f in ref.folds], 1), 1)
            y = np.nanmean(np.stack([f.pearson for f in r.folds], 1), 1)
            ax.scatter(x, y, s=12, alpha=0.7, label=t)
        lim = ax.get_xlim() + ax.get_ylim()
        lo, hi = min(lim), max(lim)
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--")
        ref_label, label = short_label(str(res.reference)), short_label(enc)
        ax.set_xlabel(f"{ref_label} (per-gene r)")
        ax.set_ylabel(f"{label} (per-gene r)")
        ax.set_title(f"{label} vs {ref_label}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    from hagekit.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


def write_hest_outputs(res: HestBenchResult, out: Path) -> None:
    """Write every output file (atomically, each): per task/encoder, tables, comparison, figure, summary."""
    for r in res.results:
        d = out / r.task / encoder_slug(r.encoder)
        d.mkdir(parents=True, exist_ok=True)
        write_json(d / "results.json", result_record(r))
        write_text(d / "per_gene.csv", _csv(*per_gene_rows(r)))
    write_text(out / "table.csv", _csv(["task", *res.encoders], table_rows(res)))
    write_text(out / "table.md", table_markdown(res))
    comp = compare_to_reference(res)
    cols = ["encoder", "reference", "n_folds", "mean_diff", "wins", "losses", "ties", "wilcoxon_p", "leak"]
    write_text(out / "comparison.csv", _csv(cols, [[c[k] for k in cols] for c in comp]))
    _scatter(res, out / "per_gene_scatter.png")
    write_json(out / "config.json", res.config)
    write_json(out / "summary.json", {
        "reference": res.reference, "encoders": res.encoders, "tasks": res.tasks,
        "results": {f"{r.task}/{r.encoder}": {"mean": r.mean, "std": r.std, "mean_per_split": r.fold_means.tolist(),
                                               "leaking_folds": sorted(r.leaks)} for r in res.results},
        "average": {e: float(np.mean([r.mean for r in res.results if r.encoder == e])) for e in res.encoders},
        "comparison": comp,
    })
