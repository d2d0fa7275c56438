"""``hagekit bench linear-probe`` and ``hagekit bench abmil``: downstream value of an encoder.

Both compare encoders side by side (``--encoder`` repeatable) on identical folds and write
a table, CSVs and the paper's Figure 3 bar chart. Heavy imports live inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from hagekit.bench.downstream.datasets import PATCH_DATASETS, SLIDE_DATASETS, choices_help
from hagekit.cli import _options as opt
from hagekit.cli._common import console, handle_errors, reporting, split_csv
from hagekit.io.atomic import check_output_dir

EncoderOpt = Annotated[
    list[str] | None,
    typer.Option("--encoder", "-e", help="Encoder spec (builtin, uni, uni2-h, timm:<name>, ge:<run>); repeat to compare."),
]
WeightsOpt = Annotated[
    list[str] | None,
    typer.Option("--weights", help="Weights file: PATH (one encoder) or ENCODER=PATH; repeatable."),
]


def weights_map(values: list[str] | None, encoders: list[str]) -> dict[str, Path]:
    from hagekit.errors import ConfigError

    out: dict[str, Path] = {}
    for v in values or []:
        name, sep, path = v.partition("=")
        if sep and name in encoders:
            out[name] = Path(path)
        elif len(encoders) == 1:
            out[encoders[0]] = Path(v)
        else:
            raise ConfigError(f"--weights: {v!r} must be ENCODER=PATH with ENCODER among --encoder ({', '.join(encoders)})")
    return out


def _scores_table(result: Any, title: str):
    from rich.table import Table

    from hagekit.bench.downstream.report import METRIC_LABELS, METRICS, format_mean_std

    table = Table(title=title, title_justify="left")
    table.add_column("encoder")
    for m in METRICS:
        table.add_column(METRIC_LABELS[m], justify="right")
    table.add_column("folds", justify="right")
    for s in result.scores:
        table.add_row(s.encoder, *(format_mean_std(s.mean[m], s.std[m]) for m in METRICS), str(len(s.folds)))
    return table


@handle_errors
def linear_probe(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help=f"{choices_help(PATCH_DATASETS)}.")],
    data: Annotated[Path, typer.Option("--data", help="Dataset folder (PCAM h5 files, SkinCancer data.zip contents, or class folders).")],
    encoder: EncoderOpt = None,
    weights: WeightsOpt = None,
    random_weights: Annotated[bool, typer.Option("--random-weights", help="Random encoder weights (speed tests only; never cached).")] = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: workspace bench/linear-probe-<dataset>).")] = None,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Embedding cache (default: workspace cache/embeddings).")] = None,
    splits: Annotated[str | None, typer.Option("--splits", help="PCAM splits (train,valid,test) or SkinCancer sets (Train,Validation,Test) to pool; default all.")] = None,
    group_regex: Annotated[str | None, typer.Option("--group-regex", help="folder: regex on file names whose first group is the slide/patient id.")] = None,
    groups_csv: Annotated[Path | None, typer.Option("--groups-csv", help="folder: CSV with columns file,group.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Use a class-stratified random subset of at most N patches.")] = None,
    folds: Annotated[int, typer.Option("--folds", help="Cross-validation folds (grouped by slide/patient when known).")] = 5,
    epochs: Annotated[int, typer.Option("--epochs", help="Probe training epochs (paper: 10).")] = 10,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate of the probe.")] = 1e-3,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Probe batch size.")] = 128,
    embed_batch_size: Annotated[int, typer.Option("--embed-batch-size", help="Patches per encoder forward pass.")] = 64,
    num_workers: Annotated[int, typer.Option("--num-workers", help="Data loader workers for embedding.")] = 0,
    device: opt.Device = "auto",
    seed: opt.Seed = 0,
    workspace: opt.Workspace = None,
    overwrite: opt.Overwrite = False,
    allow_leak: Annotated[bool, typer.Option("--allow-leak", help="Probe a ge: encoder on a probe set cut from a section it was trained on (flagged).")] = False,
) -> None:
    """Linear probe on frozen embeddings (10 epochs, CE, 5-fold CV): Accuracy, AUC, Recall per encoder."""
    from hagekit.bench.downstream.linear_probe import ProbeConfig, ProbeRunOptions, run_linear_probe
    from hagekit.bench.downstream.patch_datasets import open_patch_dataset
    from hagekit.errors import ConfigError
    from hagekit.workspace import Workspace

    encoders = list(encoder or [])
    if not encoders:
        raise ConfigError("--encoder: give at least one encoder (e.g. --encoder uni --encoder ge:RUN)")
    ws = Workspace.resolve(workspace)
    dev = opt.device_name(device)
    config = ProbeConfig(epochs=epochs, lr=lr, batch_size=batch_size, folds=folds, seed=seed, device=dev).validate()
    wmap = weights_map(weights, encoders)
    ds = open_patch_dataset(dataset, data, splits=split_csv(splits), group_regex=group_regex, groups_csv=groups_csv)
    out_dir = check_output_dir(out or ws.root / "bench" / f"linear-probe-{ds.name}", "--out")
    options = ProbeRunOptions(
        cache_dir=cache_dir or ws.root / "cache" / "embeddings", weights=wmap, random_weights=random_weights,
        limit=limit, embed_batch_size=embed_batch_size, num_workers=num_workers, allow_leak=allow_leak,
    )
    with reporting() as progress:
        result = run_linear_probe(ds, encoders, out_dir=out_dir, config=config, options=options, overwrite=overwrite,
                                  progress=progress)
    grouped = "grouped by slide/patient" if result.config.get("grouped") else "stratified"
    console.print(_scores_table(result, f"linear probe on {ds.name}: {result.config['n_items']} patches, {folds}-fold CV ({grouped})"))
    console.print(f"wrote {out_dir}/summary.csv, folds.csv, figure3.png")


@handle_errors
def abmil(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help=f"{choices_help(SLIDE_DATASETS)}.")],
    labels: Annotated[Path, typer.Option("--labels", help="CSV with slide_id,label,case_id (CLAM's convention).")],
    slides: Annotated[Path | None, typer.Option("--slides", help="Slide folder: tiles + features via hagekit extract (cached); with --features only used for --heatmap.")] = None,
    features: Annotated[list[str] | None, typer.Option("--features", help="Feature folder ([NAME=]DIR; ours, CLAM h5_files or TRIDENT features_*); repeatable.")] = None,
    encoder: EncoderOpt = None,
    weights: WeightsOpt = None,
    random_weights: Annotated[bool, typer.Option("--random-weights", help="Random encoder weights (speed tests only).")] = False,
    features_root: Annotated[Path | None, typer.Option("--features-root", help="Where extracted features go, per encoder (default: workspace features/<dataset>/<encoder>).")] = None,
    mpp: Annotated[float | None, typer.Option("--mpp", help="Microns per pixel of slides that lack it in their metadata.")] = None,
    target_mpp: Annotated[float, typer.Option("--target-mpp", help="Tile resolution in um/px (0.5 = 20x).")] = 0.5,
    magnification: Annotated[float | None, typer.Option("--magnification", help="Tile magnification (e.g. 20); overrides --target-mpp.")] = None,
    tile_size: Annotated[int, typer.Option("--tile-size", help="Tile side in pixels at the target resolution.")] = 256,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: workspace bench/downstream/abmil-<dataset>).")] = None,
    folds: Annotated[int, typer.Option("--folds", help="Cross-validation folds, grouped by case_id.")] = 5,
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="Share of training cases held out for early stopping.")] = 0.2,
    epochs: Annotated[int, typer.Option("--epochs", help="Maximum training epochs.")] = 50,
    patience: Annotated[int, typer.Option("--patience", help="Early stopping patience (epochs without lower validation loss).")] = 10,
    min_epochs: Annotated[int, typer.Option("--min-epochs", help="Epochs before early stopping may stop training.")] = 10,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate.")] = 2e-4,
    max_instances: Annotated[int | None, typer.Option("--max-instances", help="Random tiles per bag per training step (memory cap; default all).")] = None,
    heatmap: Annotated[list[str] | None, typer.Option("--heatmap", help="Slide id whose attention to draw over its thumbnail; repeatable.")] = None,
    pack: Annotated[str, typer.Option("--pack", help="Pack each feature folder's bags once into one memory-mapped file: fp32 (exact), fp16 (half the bytes) or none (read the h5 files).")] = "fp32",
    allow_missing: Annotated[bool, typer.Option("--allow-missing", help="Drop slides without a slide or feature file instead of failing.")] = False,
    device: opt.Device = "auto",
    seed: opt.Seed = 0,
    workspace: opt.Workspace = None,
    overwrite: opt.Overwrite = False,
) -> None:
    """Gated attention MIL (Ilse et al. 2018), K-fold CV by patient: Accuracy, AUC, Recall per encoder."""
    from dataclasses import replace

    from hagekit.bench.downstream.abmil import (
        ABMILConfig,
        AbmilRunOptions,
        FeatureSources,
        SlideExtraction,
        read_slide_labels,
        resolve_sources,
        run_abmil,
    )
    from hagekit.workspace import Workspace

    key = SLIDE_DATASETS.entry(dataset).name
    sources = FeatureSources(slides, tuple(features or []), tuple(encoder or []), features_root=features_root)
    sources.check()
    ws = Workspace.resolve(workspace)
    dev = opt.device_name(device)
    config = ABMILConfig(
        folds=folds, val_fraction=val_fraction, max_epochs=epochs, patience=patience, min_epochs=min_epochs, lr=lr,
        max_instances=max_instances, seed=seed, device=dev,
    ).validate()
    lab = read_slide_labels(labels, dataset=key)
    out_dir = check_output_dir(out or ws.root / "bench" / f"abmil-{key}", "--out")
    extraction = SlideExtraction(mpp=mpp, target_mpp=target_mpp, magnification=magnification, tile_size=tile_size,
                                 random_weights=random_weights, device=dev)
    sources = replace(sources, extraction=extraction,
                      weights=weights_map(weights, list(sources.encoders)) if not features else {})
    with reporting() as progress:
        found = resolve_sources(sources, lab, ws, key, heatmaps=heatmap or [], allow_missing=allow_missing,
                                progress=progress)
        options = AbmilRunOptions(dataset=key, slides=found.slides, heatmaps=heatmap or [], allow_missing=allow_missing,
                                  extra_config=found.record, pack=None if pack == "none" else pack)
        result = run_abmil(lab, found.features, out_dir=out_dir, config=config, options=options, overwrite=overwrite,
                           progress=progress)
    console.print(_scores_table(result, f"AB-MIL on {key}: {lab.n} slides, {len(set(lab.case_ids))} cases, {folds}-fold CV by case"))
    console.print(f"wrote {out_dir}/summary.csv, folds.csv, figure3.png and per-encoder predictions.csv + attention/")
