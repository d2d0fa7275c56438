"""``hagekit bench baselines|ablation|grid``: the paper's Tables 1-3 on the user's own data.

Options mirror ``hagekit train``; every method runs on the same features, folds, targets and
metrics. Heavy imports live inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from hagekit.baselines import METHODS
from hagekit.cli import _defaults as dflt
from hagekit.cli import _options as opt
from hagekit.cli._common import console, err_console, handle_errors, reporting, split_csv

OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: workspace runs/<dataset>/bench-<command>).")]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", help="Epochs for every trained method (HAGE, mlp, bleep, mclstexp).")]
JobsOpt = Annotated[int | None, typer.Option("--jobs", "-j", help="Parallel worker processes over (method, fold) tasks (default: one per core).")]


def _study(ws_root: Path | None, dataset: str, data_root: Path | None, features: Path | None,
           encoder: str, genes: Path | None, gene_embeddings: Path | None, out: Path | None,
           default_name: str) -> tuple[Any, Path]:
    """The study's inputs from the workspace and the options, and the output folder."""
    from hagekit.study import StudyInputs
    from hagekit.workspace import Workspace

    ws = Workspace.resolve(ws_root)
    inputs = StudyInputs.from_workspace(ws, dataset, data_root=data_root, features_dir=features, encoder=encoder,
                                        genes_path=genes, embeddings_path=gene_embeddings)
    return inputs, out or ws.run_dir(dataset, default_name)


def _overrides(split: str | None, folds: str | None, trials: int | None, seed: int | None,
               epochs: int | None, allow_leak: bool = False, no_per_fold: bool = False) -> dict[str, Any]:
    return {"split": split, "folds": split_csv(folds), "trials": trials, "seed": seed, "epochs": epochs,
            **opt.leak_overrides(allow_leak, no_per_fold)}


def _int_list(value: str | None, option: str) -> list[int] | None:
    from hagekit.errors import ConfigError

    items = split_csv(value)
    if items is None:
        return None
    try:
        return [int(v) for v in items]
    except ValueError:
        raise ConfigError(f"{option}: expected comma-separated integers, got {value!r}") from None


def _print_result(result: Any, warnings: list[str], title: str) -> None:
    import math

    from rich.table import Table

    for w in warnings:
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False)
    table = Table(title=title, title_justify="left")
    from hagekit.report import error_label

    for col in ("method", "PCC(all)", "PCC(HEG)", error_label("MSE"), error_label("MAE"), "MSE/mean", "fit s", "pred s"):
        table.add_column(col, justify="left" if col == "method" else "right")

    def pm(e: dict, m: str) -> str:
        mu, sd = e[f"{m}_mean"], e[f"{m}_std"]
        return "n/a" if not math.isfinite(mu) else f"{mu:.3f} ± {sd:.3f}"

    def num(v: float, d: int = 3) -> str:
        return "n/a" if not math.isfinite(v) else f"{v:.{d}f}"

    for e in result.table:
        table.add_row(e["method"], pm(e, "pcc_all"), pm(e, "pcc_heg"), pm(e, "mse"), pm(e, "mae"),
                      num(e["mse_vs_floor"]), num(e["fit_seconds"], 2), num(e["predict_seconds"], 3))
    console.print(table)
    console.print(result.header, highlight=False)
    if result.paired:
        paired = Table(title=f"{result.reference} vs each method, per section", title_justify="left")
        for col in ("method", "metric", "wins", "losses", "ties", "mean diff", "Wilcoxon p"):
            paired.add_column(col, justify="left" if col in ("method", "metric") else "right")
        for p in result.paired:
            paired.add_row(p["method"], p["metric"], str(p["wins"]), str(p["losses"]), str(p["ties"]),
                           num(p["mean_diff"], 4), num(p["wilcoxon_p"], 4))
        console.print(paired)
    console.print(f"outputs: {result.out_dir} (table.md, table.csv, per_section.csv, paired.csv, "
                  "results.csv, pcc_per_section.png)")


@handle_errors
def baselines(
    dataset: opt.Dataset = "her2",
    data_root: opt.DataRoot = None,
    features: opt.Features = None,
    encoder: opt.FeatureEncoder = "builtin",
    genes: opt.Panel = None,
    gene_embeddings: opt.GeneEmbeddings = None,
    methods: Annotated[str, typer.Option("--methods", "-m", help=f"Comma-separated, of {METHODS.choices(sep=',')} (mean is always added).")] = METHODS.choices(default_only=True, sep=","),
    reference: Annotated[str | None, typer.Option("--reference", help="Method compared against each other one (default: hage if run).")] = None,
    split: opt.Split = None,
    folds: opt.Folds = None,
    trials: opt.Trials = None,
    epochs: EpochsOpt = None,
    seed: opt.SeedOrConfig = None,
    allow_leak: opt.AllowLeak = False,
    no_per_fold_embeddings: opt.NoPerFoldEmbeddings = False,
    config: opt.Config = None,
    out: OutOpt = None,
    device: opt.Device = "auto",
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Parallel worker processes over (method, fold) tasks (1 keeps timings clean).")] = 1,
    save_models: Annotated[bool, typer.Option("--save-models", help="Also save every fitted model in the run folders.")] = False,
    workspace: opt.Workspace = None,
    overwrite: opt.Overwrite = False,
) -> None:
    """Table 1: every baseline and HAGE on identical features, folds, targets and metrics."""
    from hagekit.bench.expression.compare import Schedule, bench_baselines

    inputs, run_dir = _study(workspace, dataset, data_root, features, encoder, genes, gene_embeddings, out,
                             "bench-baselines")
    with reporting() as progress:
        result, warnings = bench_baselines(
            inputs, run_dir, methods=split_csv(methods), config_file=config,
            overrides=_overrides(split, folds, trials, seed, epochs, allow_leak, no_per_fold_embeddings),
            reference=reference, progress=progress,
            schedule=Schedule(opt.device_name(device), jobs, overwrite=overwrite, save_models=save_models),
        )
    _print_result(result, warnings, f"Baselines: {run_dir}")


@handle_errors
def ablation(
    dataset: opt.Dataset = "her2",
    data_root: opt.DataRoot = None,
    features: opt.Features = None,
    encoder: opt.FeatureEncoder = "builtin",
    genes: opt.Panel = None,
    gene_embeddings: opt.GeneEmbeddings = None,
    variants: Annotated[str | None, typer.Option("--variants", "--methods", help="Comma-separated: full,no_ge,no_hierarchy,no_ge_no_hierarchy,single_level,hage-ctx (default: all but hage-ctx).")] = None,
    split: opt.Split = None,
    folds: opt.Folds = None,
    trials: opt.Trials = None,
    epochs: EpochsOpt = None,
    seed: opt.SeedOrConfig = None,
    allow_leak: opt.AllowLeak = False,
    no_per_fold_embeddings: opt.NoPerFoldEmbeddings = False,
    config: opt.Config = None,
    out: OutOpt = None,
    device: opt.Device = "auto",
    jobs: JobsOpt = None,
    workspace: opt.Workspace = None,
    overwrite: opt.Overwrite = False,
) -> None:
    """Table 2: HAGE without GE, without hierarchical alignment, without both, single-level."""
    from hagekit.bench.expression.ablation import VariantsJob, bench_ablation

    inputs, run_dir = _study(workspace, dataset, data_root, features, encoder, genes, gene_embeddings, out,
                             "bench-ablation")
    with reporting() as progress:
        job = VariantsJob(inputs, run_dir, config_file=config,
                          overrides=_overrides(split, folds, trials, seed, epochs, allow_leak, no_per_fold_embeddings),
                          device=opt.device_name(device), n_jobs=jobs, overwrite=overwrite, progress=progress)
        result, warnings = bench_ablation(job, variants=split_csv(variants))
    _print_result(result, warnings, f"Ablation: {run_dir}")


@handle_errors
def grid(
    dataset: opt.Dataset = "her2",
    data_root: opt.DataRoot = None,
    features: opt.Features = None,
    encoder: opt.FeatureEncoder = "builtin",
    genes: opt.Panel = None,
    gene_embeddings: opt.GeneEmbeddings = None,
    k1: Annotated[str | None, typer.Option("--k1", help=f"Expression cluster counts, comma-separated (default {','.join(map(str, dflt.module_constant('hagekit.bench.expression.ablation', 'DEFAULT_K1')))}).")] = None,
    k2: Annotated[str | None, typer.Option("--k2", help=f"Image sub-cluster counts, comma-separated (default {','.join(map(str, dflt.module_constant('hagekit.bench.expression.ablation', 'DEFAULT_K2')))}).")] = None,
    split: opt.Split = None,
    folds: opt.Folds = None,
    trials: opt.Trials = None,
    epochs: EpochsOpt = None,
    seed: opt.SeedOrConfig = None,
    allow_leak: opt.AllowLeak = False,
    no_per_fold_embeddings: opt.NoPerFoldEmbeddings = False,
    config: opt.Config = None,
    out: OutOpt = None,
    device: opt.Device = "auto",
    jobs: JobsOpt = None,
    workspace: opt.Workspace = None,
    overwrite: opt.Overwrite = False,
) -> None:
    """Table 3: HAGE for every k1 x k2 pair."""
    from hagekit.bench.expression.ablation import VariantsJob, bench_grid

    inputs, run_dir = _study(workspace, dataset, data_root, features, encoder, genes, gene_embeddings, out,
                             "bench-grid")
    with reporting() as progress:
        job = VariantsJob(inputs, run_dir, config_file=config,
                          overrides=_overrides(split, folds, trials, seed, epochs, allow_leak, no_per_fold_embeddings),
                          device=opt.device_name(device), n_jobs=jobs, overwrite=overwrite, progress=progress)
        result, warnings = bench_grid(job, k1=_int_list(k1, "--k1"), k2=_int_list(k2, "--k2"))
    _print_result(result, warnings, f"Grid: {run_dir}")
