"""``hagekit report RUN``: summary table, per-gene PCC CSV and histogram of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hagekit.cli._common import console, handle_errors


def register(app: typer.Typer) -> None:
    app.command("report")(report)


@handle_errors
def report(
    run: Annotated[Path, typer.Argument(help="Run folder written by `hagekit train`.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Report folder (default: RUN/report).")] = None,
    top: Annotated[int, typer.Option("--top", help="Best-predicted genes to list.")] = 10,
    log_base: Annotated[str, typer.Option("--log-base", help="Log base of MSE/MAE: e (our targets) or 10 (as mclSTExp/scprep publish).")] = "e",
) -> None:
    """Print a run's summary and write per_gene_pcc.csv, summary.md and pcc_histogram.png."""
    from rich.table import Table

    from hagekit.cli.train import metrics_table
    from hagekit.io.atomic import check_output_dir
    from hagekit.report import report_run

    rep = report_run(run, out=check_output_dir(out, "--out") if out is not None else None, log_base=log_base)
    console.print(metrics_table(rep.summary, f"{rep.summary.get('method', 'hage')}: {run}"))
    import numpy as np

    order = np.argsort(-np.nan_to_num(rep.gene_pcc_mean, nan=-2.0), kind="stable")[: max(top, 0)]
    if len(order):
        table = Table(title=f"top {len(order)} genes by mean PCC", title_justify="left")
        table.add_column("gene")
        table.add_column("PCC mean ± std", justify="right")
        for j in order:
            table.add_row(rep.genes[j], f"{rep.gene_pcc_mean[j]:.4f} ± {rep.gene_pcc_std[j]:.4f}")
        console.print(table)
    for f in rep.files:
        console.print(f"wrote {f}")
