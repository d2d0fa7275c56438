"""``hagekit predict``: expression maps for a section from a trained run (AnnData + Figure 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hagekit.cli import _options as opt
from hagekit.cli._common import console, handle_errors, reporting


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)


@handle_errors
def predict(
    run: opt.Run,
    features: Annotated[Path, typer.Option("--features", help="Feature file of the section (FEATS/<section>.h5).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .h5ad (predicted expression, scanpy-readable).")],
    section: Annotated[Path | None, typer.Option("--section", help="The section's .h5ad: barcodes order, spatial metadata, ground truth.")] = None,
    fold: Annotated[str | None, typer.Option("--fold", help="Use this fold's model(s) (all its trials unless --trial).")] = None,
    trial: Annotated[int | None, typer.Option("--trial", help="Use this trial of --fold.")] = None,
    ensemble: Annotated[bool, typer.Option("--ensemble", help="Average the predictions of every fold and trial.")] = False,
    plot: Annotated[list[str] | None, typer.Option("--plot", help="Draw Figure 2 for these genes (repeat --plot or comma-separate: --plot ERBB2,GNAS).")] = None,
    plot_dir: Annotated[Path | None, typer.Option("--plot-dir", help="Folder for the PNGs (default: beside --out).")] = None,
    device: opt.Device = "auto",
) -> None:
    """Predict a section's panel expression with a run's model(s); optionally draw Figure 2."""
    from hagekit.io.atomic import check_output_dir, check_output_file
    from hagekit.predict import ModelChoice, PlotRequest, predict_section

    check_output_file(out, "--out")
    if plot_dir is not None:
        check_output_dir(plot_dir, "--plot-dir")
    genes = tuple(g for item in plot or [] for g in item.replace(",", " ").split())
    with reporting() as progress:
        res = predict_section(
            run, features, section=section, out=out, models=ModelChoice(fold, trial, ensemble),
            plot=PlotRequest(genes, plot_dir), device=device, progress=progress,
        )
    console.print(f"predicted {res.adata.n_obs} spots x {res.adata.n_vars} genes with {len(res.models)} model(s) -> {out}")
    if res.metrics:
        m = res.metrics
        console.print(
            f"against the section's truth: PCC(all) {m['pcc_all']:.4f}  PCC(HEG) {m['pcc_heg']:.4f}  "
            f"MSE (ln) {m['mse']:.4f}  MAE (ln) {m['mae']:.4f}  ({m['n_constant_genes']} constant genes excluded)"
        )
    for fig in res.figures:
        console.print(f"figure: {fig}")
