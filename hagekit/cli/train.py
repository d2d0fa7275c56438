"""``hagekit train``: HAGE under leave-one-section-out (the paper) or leave-one-patient-out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from hagekit.cli import _defaults as dflt
from hagekit.cli import _options as opt
from hagekit.cli._common import console, err_console, handle_errors, reporting


def _h(what: str, field: str, extra: str = "") -> str:
    """``what (default X; --recipe paper: Y)`` with both values read from the configuration."""
    return f"{what} (default {dflt.hage(field):g}; --recipe paper: {dflt.paper_recipe(field):g}{extra})."


def register(app: typer.Typer) -> None:
    app.command("train", no_args_is_help=False)(train)


def metrics_table(summary: dict[str, Any], title: str):
    """A rich table: one row per test section (mean ± std over trials) and the overall mean;
    the MSE/MAE headers and caption state their log base (``summary["log_base"]``, default e)."""
    from rich.table import Table

    from hagekit.report import error_label, error_note

    base = str(summary.get("log_base", "e"))
    table = Table(title=title, title_justify="left", caption=error_note(str(summary.get("target", "log1p_norm")), base),
                  caption_justify="left")
    for col in ("section", "PCC(all)", "PCC(HEG)", error_label("MSE", base), error_label("MAE", base)):
        table.add_column(col, justify="left" if col == "section" else "right")
    for section, vals in summary.get("per_section", {}).items():
        table.add_row(section, *(f"{vals[m]:.4f}" for m in ("pcc_all", "pcc_heg", "mse", "mae")))
    overall = summary.get("overall", {})
    if overall:
        table.add_section()
        table.add_row(
            "[bold]mean ± std[/]",
            *(f"{overall[m]['mean']:.4f} ± {overall[m]['std']:.4f}" for m in ("pcc_all", "pcc_heg", "mse", "mae")),
        )
    return table


@handle_errors
def train(
    dataset: opt.Dataset = "her2",
    data_root: opt.DataRoot = None,
    features: opt.Features = None,
    encoder: opt.FeatureEncoder = "builtin",
    genes: opt.Panel = None,
    gene_embeddings: opt.GeneEmbeddings = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder (default: workspace runs/<dataset>/<name>).")] = None,
    name: Annotated[str, typer.Option("--name", help="Run name under the workspace when --out is not given.")] = "hage",
    config: opt.Config = None,
    recipe: Annotated[str | None, typer.Option("--recipe", help="default (tuned, see README) or paper (the paper's literal settings), or a TOML file; --config and flags override it.")] = None,
    split: opt.Split = None,
    folds: opt.Folds = None,
    trials: opt.Trials = None,
    seed: opt.SeedOrConfig = None,
    val_fraction: Annotated[float | None, typer.Option("--val-fraction", help=f"Validation share of training spots (default {dflt.run('val_fraction')}).")] = None,
    target: Annotated[str | None, typer.Option("--target", help=f"Expression target: log1p_norm, log1p, raw (default {dflt.run('target')}).")] = None,
    d: Annotated[int | None, typer.Option("--d", help=_h("Embedding dimension", "d"))] = None,
    k1: Annotated[int | None, typer.Option("--k1", help=_h("Expression clusters", "k1"))] = None,
    k2: Annotated[int | None, typer.Option("--k2", help=_h("Image sub-clusters per expression cluster", "k2"))] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help=_h("Epochs", "epochs", "; paper: 100 on cSCC"))] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help=_h("Spots per step", "batch_size"))] = None,
    lr: Annotated[float | None, typer.Option("--lr", help=_h("Adam learning rate", "lr"))] = None,
    patience: Annotated[int | None, typer.Option("--patience", help=_h("Early stopping patience in epochs, 0 disables", "patience"))] = None,
    no_ge: Annotated[bool, typer.Option("--no-ge", help="Ablation: plain MLP image encoder instead of GE.")] = False,
    no_hierarchy: Annotated[bool, typer.Option("--no-hierarchy", help="Ablation: no hierarchical (centroid) alignment.")] = False,
    single_level: Annotated[bool, typer.Option("--single-level", help="Ablation: k1*k2 clusters on expression only.")] = False,
    allow_leak: opt.AllowLeak = False,
    no_per_fold_embeddings: opt.NoPerFoldEmbeddings = False,
    device: opt.Device = "auto",
    workspace: opt.Workspace = None,
    overwrite: opt.Overwrite = False,
) -> None:
    """Train HAGE on every fold x trial and write a run folder (models, metrics.csv, summary.json)."""
    from hagekit.study import StudyInputs
    from hagekit.training.run import train_run
    from hagekit.workspace import Workspace

    ws = Workspace.resolve(workspace)
    overrides = {
        "split": split, "folds": folds, "trials": trials, "seed": seed, "val_fraction": val_fraction,
        "target": target, "d": d, "k1": k1, "k2": k2, "epochs": epochs, "batch_size": batch_size,
        "lr": lr, "patience": patience, "recipe": recipe,
        "use_ge": False if no_ge else None,
        "use_hierarchy": False if no_hierarchy else None,
        "single_level": True if single_level else None,
        **opt.leak_overrides(allow_leak, no_per_fold_embeddings),
    }
    run_dir = out or ws.run_dir(dataset, name)
    inputs = StudyInputs.from_workspace(ws, dataset, data_root=data_root, features_dir=features, encoder=encoder,
                                        genes_path=genes, embeddings_path=gene_embeddings)
    with reporting() as progress:
        result = train_run(inputs, run_dir, config_file=config, overrides=overrides, device=device,
                           overwrite=overwrite, progress=progress)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    console.print(metrics_table(result.summary, f"HAGE, {result.settings.split} split: {run_dir}"))
    console.print(f"run folder: {run_dir}")
