"""``hagekit report RUN``: a run's summary table, per-gene PCC (CSV) and their histogram.

Reads only the run folder: ``summary.json``, ``metrics.csv``, ``genes.txt`` and the per-gene
PCCs that every ``<fold>/trial<k>/metrics.json`` holds. Writes ``<run>/report/`` by default.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hagekit.errors import DataError, at
from hagekit.io.atomic import write_text
from hagekit.io.jsonfile import read_json_object

__all__ = ["RunReport", "report_run", "per_gene_table", "summary_markdown", "LOG_BASES", "error_label",
           "error_note", "rescale_errors"]

#: Log bases MSE/MAE can be reported in. Targets are natural-log ``log1p``; base 10 is what
#: mclSTExp and others publish (scprep's ``log(base=10)``): log10(1 + x) = ln(1 + x) / ln 10,
#: so MSE scales by 1 / ln(10)^2 and MAE by 1 / ln(10); PCC does not change.
LOG_BASES = ("e", "10")


def _check_base(log_base: str, target: str) -> None:
    from hagekit.errors import ConfigError

    if log_base not in LOG_BASES:
        raise ConfigError(f"--log-base: {log_base!r} is not one of {', '.join(LOG_BASES)}")
    if log_base != "e" and not str(target).startswith("log1p"):
        raise ConfigError(f"--log-base: target {target!r} is not log-transformed; only log1p targets have a base")


def error_label(metric: str, log_base: str = "e") -> str:
    """A table header that states the log base: ``MSE (ln)`` or ``MAE (log10)``."""
    return f"{metric} ({'ln' if log_base == 'e' else 'log' + log_base})"


def error_note(target: str, log_base: str = "e") -> str:
    """One line saying on what scale MSE/MAE are, for every table that shows them."""
    base = "natural log" if log_base == "e" else f"log{log_base} (converted from natural log)"
    return (f"MSE/MAE on the `{target}` target in {base}; published mclSTExp-lineage tables use log10 "
            "(scprep) and a median library-size scale, so compare them with --log-base 10 and mind the scale")


def rescale_errors(summary: dict[str, Any], log_base: str = "e", *, target: str | None = None) -> dict[str, Any]:
    """A copy of a run summary with MSE/MAE in ``log_base`` (PCC untouched)."""
    import copy
    import math

    target = str(target or summary.get("target", "log1p_norm"))
    _check_base(log_base, target)
    out = copy.deepcopy(summary)
    if log_base == "e":
        return out
    k = 1.0 / math.log(float(log_base))
    factor = {"mse": k * k, "mae": k}
    for vals in out.get("per_section", {}).values():
        for m, f in factor.items():
            if m in vals:
                vals[m] = vals[m] * f
    for m, f in factor.items():
        if m in out.get("overall", {}):
            out["overall"][m] = {key: v * f for key, v in out["overall"][m].items()}
    out["log_base"] = log_base
    return out


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
    from hagekit.io.run_folder import RunFolder

    folder = RunFolder(Path(run))
    genes = folder.read_genes()
    rows, labels = [], []
    for (fold, trial), trial_dir in sorted(folder.trials_with("metrics.json").items(), key=lambda kv: kv[1]):
        path = trial_dir / "metrics.json"
        saved = folder.read_trial(fold, trial) or {}
        per_gene = saved.get("per_gene_pcc") or {}
        if not isinstance(per_gene, dict):
            raise DataError(at(path, '"per_gene_pcc" must map each section to a list of PCCs'))
        for section, values in per_gene.items():
            if not isinstance(values, list) or not all(
                    v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
                raise DataError(at(path, f'"per_gene_pcc" of {section} must be a list of numbers (or null)'))
            if len(values) != len(genes):
                raise DataError(at(path, f"{len(values)} per-gene PCCs for {len(genes)} genes"))
            rows.append([np.nan if v is None else float(v) for v in values])
            labels.append(f"{fold}/{trial_dir.name}/{section}")
    if not rows:
        raise DataError(at(run, "no finished trials with per-gene PCC (<fold>/trial<k>/metrics.json)"))
    return genes, np.asarray(rows, dtype=np.float64), labels


def check_summary(summary: dict[str, Any], path: Path | str) -> None:
    """A summary.json as :func:`summary_markdown` reads it, else one line naming the file:
    ``per_section`` {section: {metric: number}}, ``overall`` {metric: {mean, std: number}}."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    metrics = ("pcc_all", "pcc_heg", "mse", "mae")
    per_section, overall = summary.get("per_section", {}), summary.get("overall", {})
    problem = None
    if not isinstance(per_section, dict) or not all(
            isinstance(v, dict) and all(number(v.get(m)) for m in metrics) for v in per_section.values()):
        problem = '"per_section" must map each section to numbers pcc_all, pcc_heg, mse, mae'
    elif not isinstance(overall, dict) or (overall and not all(
            isinstance(overall.get(m), dict) and all(number(x) for x in overall[m].values())
            and number(overall[m].get("mean")) and number(overall[m].get("std")) for m in metrics)):
        problem = '"overall" must map pcc_all, pcc_heg, mse, mae to numbers mean and std'
    elif not isinstance(summary.get("target", ""), str) or not isinstance(summary.get("log_base", "e"), str):
        problem = '"target" and "log_base" must be strings'
    if problem:
        raise DataError(at(path, f"not a run summary of this version: {problem}; rerun `hagekit train` to rewrite it"))


def summary_markdown(summary: dict[str, Any], title: str = "") -> str:
    """The summary as a Markdown table: per section, then mean ± std over section x trial rows;
    headers and a note state the log base of MSE/MAE (``summary["log_base"]``, default e)."""
    base = str(summary.get("log_base", "e"))
    lines = [f"# {title}", ""] if title else []
    lines += [f"| section | PCC(all) | PCC(HEG) | {error_label('MSE', base)} | {error_label('MAE', base)} |",
              "|---|---:|---:|---:|---:|"]
    for section, v in summary.get("per_section", {}).items():
        lines.append(f"| {section} | {v['pcc_all']:.4f} | {v['pcc_heg']:.4f} | {v['mse']:.4f} | {v['mae']:.4f} |")
    overall = summary.get("overall", {})
    if overall:
        cells = " | ".join(f"{overall[m]['mean']:.4f} ± {overall[m]['std']:.4f}" for m in ("pcc_all", "pcc_heg", "mse", "mae"))
        lines.append(f"| **mean ± std** | {cells} |")
    lines += ["", error_note(str(summary.get("target", "log1p_norm")), base)]
    return "\n".join(lines) + "\n"


def report_run(run: Path | str, *, out: Path | str | None = None, log_base: str = "e") -> RunReport:
    """Write ``summary.md``, ``per_gene_pcc.csv`` and ``pcc_histogram.png`` for a finished run
    (MSE/MAE in ``log_base``: ``e``, or ``10`` to compare with published tables)."""
    from hagekit.io.run_folder import RunFolder
    from hagekit.plots import plot_pcc_histogram

    run = Path(run)
    summary_path = RunFolder(run).summary_path
    if not summary_path.is_file():
        raise DataError(at(run, "no summary.json; is this a finished run (`hagekit train`)?"))
    summary = read_json_object(summary_path, what="a run summary")
    check_summary(summary, summary_path)
    summary = rescale_errors(summary, log_base, target=_run_target(run, summary))
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


def _run_target(run: Path, summary: dict[str, Any]) -> str:
    """The run's expression target (summary.json, else the run's ``config.json``, else the default)."""
    if "target" in summary:
        return str(summary["target"])
    from hagekit.io.run_folder import RunFolder

    folder = RunFolder(run)
    if not folder.config_path.is_file():
        return "log1p_norm"
    cfg = folder.read_config()
    protocol = cfg.get("protocol")
    return str((protocol.get("target") if isinstance(protocol, dict) else None) or "log1p_norm")


def _fmt(v: float) -> str:
    return "" if not np.isfinite(v) else f"{v:.6f}"
