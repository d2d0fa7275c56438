"""``hagekit demo``: synthetic data -> panel -> gene embeddings -> features -> HAGE -> report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hagekit.cli import _options as opt
from hagekit.cli._common import console, handle_errors, reporting
from hagekit.io.atomic import check_output_dir


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


@handle_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for everything the demo writes.")] = Path("hagekit-demo"),
    seed: opt.Seed = 0,
    overwrite: opt.Overwrite = False,
) -> None:
    """Run the whole pipeline offline on a synthetic dataset (a few minutes on a CPU)."""
    from hagekit.cli.train import metrics_table
    from hagekit.demo import run_demo

    with reporting() as progress:
        res = run_demo(check_output_dir(out, "--out"), seed=seed, overwrite=overwrite, progress=progress)
    console.print(metrics_table({"per_section": res.per_section, "overall": {}}, "HAGE demo, held-out sections"))
    console.print(f"[bold]PCC(all) on held-out synthetic sections: {res.pcc_all:.3f}[/]")
    console.print(f"report: {res.report_dir}  (summary.md, per_gene_pcc.csv, pcc_histogram.png, {res.figure.name})")
    console.print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in res.timings.items())
                  + f"; total {sum(res.timings.values()):.1f} s")
