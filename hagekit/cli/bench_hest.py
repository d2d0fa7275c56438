"""``hagekit bench hest``: HEST-Benchmark (expression from morphology) for any registered encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hagekit.cli import _options as opt
from hagekit.cli._common import console, handle_errors, reporting, split_csv
from hagekit.cli.bench_downstream import EncoderOpt, WeightsOpt, weights_map
from hagekit.io.atomic import check_output_dir


@handle_errors
def hest(
    data: Annotated[Path, typer.Option("--data", help="HEST-Bench data folder (<task>/adata, patches, splits, var_50genes.json).")],
    encoder: EncoderOpt = None,
    weights: WeightsOpt = None,
    tasks: Annotated[str | None, typer.Option("--tasks", help="Tasks to run, comma-separated (default: every task folder).")] = None,
    method: Annotated[str, typer.Option("--method", help="ridge (HEST's default), xgboost or random-forest.")] = "ridge",
    no_pca: Annotated[bool, typer.Option("--no-pca", help="Regress on the raw embeddings (no StandardScaler + PCA).")] = False,
    latent_dim: Annotated[int, typer.Option("--latent-dim", help="PCA components (HEST: 256).")] = 256,
    alpha: Annotated[str, typer.Option("--alpha", help="Ridge alpha: hest (100 / (n_features * n_genes), HEST's published rule), nested (inner patient-grouped CV) or a number.")] = "hest",
    reference: Annotated[str | None, typer.Option("--reference", help="Encoder the others are compared with (default: the first --encoder).")] = None,
    allow_leak: Annotated[bool, typer.Option("--allow-leak", help="Run folds whose test samples a ge: encoder was trained on, flagged with † in every table.")] = False,
    show_published: Annotated[bool, typer.Option("--show-published", help="Print HEST's published per-task figures (not recomputed) under the table.")] = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: workspace bench/hest).")] = None,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Embedding cache per (encoder, sample) (default: workspace cache/embeddings).")] = None,
    embed_batch_size: Annotated[int, typer.Option("--embed-batch-size", help="Patches per encoder forward pass.")] = 64,
    num_workers: Annotated[int, typer.Option("--num-workers", help="Data loader workers for embedding.")] = 0,
    shard: Annotated[str | None, typer.Option("--shard", help="K/N: embed only this job's share into --cache-dir (then run once without --shard).")] = None,
    device: opt.Device = "auto",
    seed: Annotated[int, typer.Option("--seed", help="PCA / ridge random_state (HEST: 1).")] = 1,
    workspace: opt.Workspace = None,
    overwrite: opt.Overwrite = False,
) -> None:
    """HEST-Bench: embed each task's stored patches, PCA-256 + ridge per patient fold, Pearson r
    over the 50 genes; tasks x encoders table, paired comparison with --reference, per-gene figure."""
    from hagekit.bench.hest.protocol import ProtocolConfig
    from hagekit.bench.hest.run import HestBenchRequest, run_hest_bench
    from hagekit.distributed import is_main_process, parse_shard
    from hagekit.workspace import Workspace

    encoders = list(encoder or [])
    ws = Workspace.resolve(workspace)
    protocol = ProtocolConfig(method=method, pca=not no_pca, latent_dim=latent_dim, alpha=alpha, seed=seed).validate()
    req = HestBenchRequest(
        data=data, encoders=encoders, out_dir=check_output_dir(out or ws.root / "bench" / "hest", "--out"),
        tasks=split_csv(tasks), cache_dir=cache_dir or ws.root / "cache" / "embeddings",
        weights=weights_map(weights, encoders), protocol=protocol, reference=reference, allow_leak=allow_leak,
        embed_batch_size=embed_batch_size, num_workers=num_workers, device=opt.device_name(device),
        shard=parse_shard(shard), overwrite=overwrite,
    )
    with reporting() as progress:
        res = run_hest_bench(req, progress)
    if res.embedded_only:
        if is_main_process() or req.shard is not None:
            console.print(f"embedded {res.n_embedded} (encoder, sample) item(s) into {req.cache_dir}; "
                          "run again without --shard to evaluate")
        return
    _print_tables(res, show_published)


def _print_tables(res, show_published: bool) -> None:
    from rich.table import Table

    from hagekit.bench.hest.tables import table_rows

    table = Table(title=f"HEST-Bench Pearson r (mean ± std over folds), {res.config['protocol']['method']}",
                  title_justify="left")
    for col in ("task", *res.encoders):
        table.add_column(col, justify="left" if col == "task" else "right")
    for row in table_rows(res):
        table.add_row(*row)
    console.print(table)
    for c in _comparison(res):
        console.print(c, soft_wrap=True)
    if show_published:
        from hagekit.bench.hest.published import PUBLISHED_SOURCE, published_rows

        pub = Table(title=f"published, NOT recomputed ({PUBLISHED_SOURCE})", title_justify="left")
        cols = [*res.tasks, "average"]
        for col in ("model", *cols):
            pub.add_column(col, justify="left" if col == "model" else "right")
        for model, row in published_rows(res.tasks).items():
            pub.add_row(model, *("-" if row[c] is None else f"{row[c]:.4f}" for c in cols))
        console.print(pub)
    console.print(f"wrote {res.out_dir}/table.md, table.csv, comparison.csv, per_gene_scatter.png, <task>/<encoder>/")


def _comparison(res) -> list[str]:
    from hagekit.bench.hest.tables import compare_to_reference

    out = []
    for c in compare_to_reference(res):
        p = "n/a" if c["wilcoxon_p"] != c["wilcoxon_p"] else f"{c['wilcoxon_p']:.3g}"
        out.append(f"{c['encoder']} - {c['reference']}: {c['mean_diff']:+.4f} per fold, wins {c['wins']}/{c['n_folds']}, "
                   f"Wilcoxon p {p}{' (leak)' if c['leak'] else ''}")
    return out


@handle_errors
def hest_bench_task(
    out: Annotated[Path, typer.Option("--out", "-o", help="Task folder to write (<bench_data>/<TASK>).")],
    dataset: opt.Dataset = "her2",
    sections: Annotated[str | None, typer.Option("--sections", help="Sections to include, comma-separated (default: every section with an image).")] = None,
    split: Annotated[str, typer.Option("--split", help="patient (one fold per held-out patient, HEST's rule) or section (leaks patient identity).")] = "patient",
    n_genes: Annotated[int, typer.Option("--n-genes", help="Genes chosen by HEST's rule (most variable, log1p, seurat HVG).")] = 50,
    data_root: opt.DataRoot = None,
    workspace: opt.Workspace = None,
    overwrite: opt.Overwrite = False,
) -> None:
    """Write a prepared dataset as a HEST-Bench task folder (adata/, patches/ at 112 um / 224 px,
    splits/, var_50genes.json), for `hagekit bench hest` and HEST's own benchmark."""
    from hagekit.bench.hest.make_task import TaskSpec, make_hest_task
    from hagekit.workspace import Workspace

    root = data_root or Workspace.resolve(workspace).data_root
    spec = TaskSpec(sections=tuple(split_csv(sections) or ()), split=split, n_genes=n_genes)
    with reporting() as progress:
        rep = make_hest_task(root, dataset, check_output_dir(out, "--out"), spec, overwrite=overwrite, progress=progress)
    for i, test in enumerate(rep.folds):
        console.print(f"fold {i}: test {', '.join(test)}", highlight=False)
    console.print(f"wrote {rep.out}: {sum(rep.n_patches.values())} patches of {len(rep.n_patches)} samples, "
                  f"{len(rep.genes)} genes, {len(rep.folds)} folds; run `hagekit bench hest --data {rep.out.parent} "
                  f"--tasks {rep.out.name} --encoder ...`", highlight=False, soft_wrap=True)
