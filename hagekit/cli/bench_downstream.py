"""``hagekit bench linear-probe`` and ``hagekit bench abmil``: downstream value of an encoder.

Both compare encoders side by side (``--encoder`` repeatable) on identical folds and write
a table, CSVs and the paper's Figure 3 bar chart. Heavy imports live inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from hagekit.bench.datasets import PATCH_DATASETS, SLIDE_DATASETS, choices_help
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

    from hagekit.bench.downstream_report import METRIC_LABELS, METRICS, format_mean_std

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
    from hagekit.bench.linear_probe import ProbeConfig, run_linear_probe
    from hagekit.bench.patch_datasets import open_patch_dataset
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
    with reporting() as progress:
        result = run_linear_probe(
            ds, encoders, out_dir=out_dir, cache_dir=cache_dir or ws.root / "cache" / "embeddings",
            weights=wmap, random_weights=random_weights, config=config, limit=limit,
            embed_batch_size=embed_batch_size, num_workers=num_workers, overwrite=overwrite, progress=progress,
            allow_leak=allow_leak,
        )
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
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: workspace bench/abmil-<dataset>).")] = None,
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
    from hagekit.bench.abmil import (
        ABMILConfig,
        extract_slide_features,
        find_slide_files,
        parse_named_paths,
        read_slide_labels,
        run_abmil,
    )
    from hagekit.errors import ConfigError, DataError
    from hagekit.workspace import Workspace, encoder_slug

    key = SLIDE_DATASETS.entry(dataset).name
    encoders = list(encoder or [])
    if features and encoders:
        raise ConfigError("--features and --encoder: give feature folders or encoders to extract with, not both")
    if not features and not slides:
        raise ConfigError("give --slides DIR (with --encoder) or --features DIR")
    if slides and not features and not encoders:
        raise ConfigError("--encoder: give at least one encoder to extract --slides with")
    ws = Workspace.resolve(workspace)
    dev = opt.device_name(device)
    config = ABMILConfig(
        folds=folds, val_fraction=val_fraction, max_epochs=epochs, patience=patience, min_epochs=min_epochs, lr=lr,
        max_instances=max_instances, seed=seed, device=dev,
    ).validate()
    lab = read_slide_labels(labels, dataset=key)
    out_dir = check_output_dir(out or ws.root / "bench" / f"abmil-{key}", "--out")
    extra: dict[str, Any] = {}
    with reporting() as progress:
        slide_files = None
        if slides is not None:
            wanted = lab.slide_ids if not features else [h for h in (heatmap or [])]
            slide_files = find_slide_files(slides, wanted, allow_missing=allow_missing or bool(features))
        if features:
            feat_dirs = parse_named_paths(features, "--features")
        else:
            assert slide_files is not None
            wmap = weights_map(weights, encoders)
            mag = magnification
            feat_dirs = {}
            failed_all: dict[str, dict[str, str]] = {}
            for spec in encoders:
                fdir = (features_root / encoder_slug(spec)) if features_root else ws.features_dir(key, spec)
                fdir, failed = extract_slide_features(
                    slide_files, spec, features_dir=fdir, weights=wmap.get(spec), random_weights=random_weights,
                    mpp=mpp, target_mpp=target_mpp, magnification=mag, tile_size=tile_size, device=dev, progress=progress,
                )
                if failed and not allow_missing:
                    first = next(iter(failed.items()))
                    raise DataError(
                        f"--slides: feature extraction failed for {len(failed)} slide(s) ({first[0]}: {first[1]}); "
                        "fix them or pass --allow-missing"
                    )
                failed_all[spec] = failed
                feat_dirs[spec] = fdir
            extra = {"slides": str(slides), "mpp": mpp, "target_mpp": target_mpp, "magnification": mag, "tile_size": tile_size, "failed": failed_all}
        result = run_abmil(
            lab, feat_dirs, out_dir=out_dir, config=config, dataset=key, slides=slide_files,
            heatmaps=heatmap or [], allow_missing=allow_missing, overwrite=overwrite, extra_config=extra,
            pack=None if pack == "none" else pack, progress=progress,
        )
    console.print(_scores_table(result, f"AB-MIL on {key}: {lab.n} slides, {len(set(lab.case_ids))} cases, {folds}-fold CV by case"))
    console.print(f"wrote {out_dir}/summary.csv, folds.csv, figure3.png and per-encoder predictions.csv + attention/")
