"""``hagekit bench tune``: re-derive HAGE's training recipe on your own data by nested validation."""

from __future__ import annotations

from typing import Annotated

import typer

from hagekit.cli import _defaults as dflt
from hagekit.cli import _options as opt
from hagekit.cli._common import console, err_console, handle_errors, reporting


@handle_errors
def tune(
    space: Annotated[str | None, typer.Option("--space", help="Search space 'lr=1e-4,1e-3;min_steps=0,150' (default: lr, min_steps, cyclip_reduction, batch_size, centroids, dropout, weight_decay; see README).")] = None,
    metric: Annotated[str, typer.Option("--metric", help="Score to maximise on the inner sections: mean (of PCC(all) and PCC(HEG)), pcc_all or pcc_heg.")] = "mean",
    min_gain: Annotated[float | None, typer.Option("--min-gain", min=0.0, help=f"Smallest score gain that moves a setting from its current value (default {dflt.module_constant('hagekit.bench.expression.tune', 'MIN_GAIN')}, about the seed noise on HER2ST).")] = None,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="4:1 train/validation splits (and seeds) per inner fold; more = less noisy, slower.")] = 1,
    method: Annotated[str, typer.Option("--method", help="What to tune: any registered method (default hage), in the search space it declares unless --space is given. HAGE's choice is written as [hage], another method's as [baselines.<method>].")] = dflt.module_constant("hagekit.bench.expression.tune", "DEFAULT_METHOD"),
    config: opt.Config = None,
    out: Annotated[str | None, typer.Option("--out", "-o", help="Output folder (default: workspace runs/<dataset>/bench-tune).")] = None,
    dataset: opt.Dataset = "her2",
    data_root: opt.DataRoot = None,
    genes: opt.Panel = None,
    gene_embeddings: opt.GeneEmbeddings = None,
    features: opt.Features = None,
    encoder: opt.FeatureEncoder = "builtin",
    split: opt.Split = None,
    folds: opt.Folds = None,
    seed: opt.SeedOrConfig = None,
    allow_leak: opt.AllowLeak = False,
    no_per_fold_embeddings: opt.NoPerFoldEmbeddings = False,
    device: opt.Device = "auto",
    workspace: opt.Workspace = None,
) -> None:
    """Choose HAGE's settings by nested validation (never a test section); writes chosen.toml."""
    from hagekit.bench.expression.tune import (
        MIN_GAIN,
        Search,
        bench_tune,
        collapse_cosines,
        parse_space,
        tune_folder,
    )
    from hagekit.study import StudyInputs
    from hagekit.workspace import Workspace

    ws = Workspace.resolve(workspace)
    inputs = StudyInputs.from_workspace(ws, dataset, data_root=data_root, features_dir=features, encoder=encoder,
                                        genes_path=genes, embeddings_path=gene_embeddings)
    search = Search(space=parse_space(space, method), metric=metric, repeats=repeats,
                    min_gain=MIN_GAIN if min_gain is None else min_gain)
    with reporting() as progress:
        result, toml_path, warnings = bench_tune(
            inputs, out or ws.run_dir(dataset, tune_folder(method)), method=method, search=search,
            config_file=config, device=device, progress=progress,
            overrides={"split": split, "folds": folds, "seed": seed,
                       **opt.leak_overrides(allow_leak, no_per_fold_embeddings)},
        )
    for w in warnings:
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False)
    for row in result.trials:
        console.print(f"[{row['stage']}] score {row['score']:.4f}  PCC(all) {row['pcc_all']:.4f}  "
                      f"PCC(HEG) {row['pcc_heg']:.4f}  {row['fit_seconds']:.1f} s/fit" + collapse_cosines(row, "  "),
                      highlight=False)
    console.print(f"chosen settings: {toml_path}; use them with `hagekit train --config {toml_path}`")
