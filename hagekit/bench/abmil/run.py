"""The AB-MIL benchmark end to end: slides -> features (``hagekit extract``), bags (packed
once), K-fold CV per encoder, report, per-slide attention and heatmaps."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hagekit.bench.abmil.bags import (
    PACK_DTYPES,
    BagStore,
    PackedBags,
    check_missing,
    find_feature_files,
    pack_bags,
)
from hagekit.bench.abmil.heatmaps import draw_attention_heatmap, write_predictions
from hagekit.bench.abmil.labels import (
    SLIDE_SUFFIXES,
    SlideLabels,
    make_slide_folds,
    strip_slide_suffix,
)
from hagekit.bench.abmil.training import ABMILConfig, SlidePrediction, cross_validate_abmil
from hagekit.bench.downstream_report import DownstreamResult, EncoderScores, write_downstream_report
from hagekit.errors import ConfigError, DataError, at
from hagekit.io.atomic import visible_files
from hagekit.io.paths import child_path
from hagekit.progress import Reporter
from hagekit.workspace import encoder_slug

__all__ = ["run_abmil", "find_slide_files", "extract_slide_features", "parse_named_paths", "open_bags"]

logger = logging.getLogger(__name__)


def find_slide_files(slides_dir: Path | str, slide_ids: Sequence[str], *, allow_missing: bool = False) -> dict[str, Path]:
    """Map slide ids to slide files in ``slides_dir`` (or one level below) named ``<id>.<ext>``."""
    root = Path(slides_dir)
    if root.is_file():
        root = root.parent
    if not root.is_dir():
        raise DataError(at(root, "slides folder not found"))
    by_stem: dict[str, Path] = {}
    wanted = set(slide_ids)
    # top level first, then subfolders (gdc-client writes <file uuid>/<slide>.svs)
    for p in [*visible_files(root, "*"), *visible_files(root, "*/*")]:
        if p.stem in wanted and p.suffix.lower() in SLIDE_SUFFIXES and p.is_file():
            by_stem.setdefault(p.stem, p)
    found = {s: by_stem[s] for s in slide_ids if s in by_stem}
    missing = [s for s in slide_ids if s not in found]
    check_missing(root, "slide file", missing, len(slide_ids), allow_missing=allow_missing)
    return found


def extract_slide_features(
    slides: Mapping[str, Path],
    encoder: str,
    *,
    features_dir: Path | str,
    weights: Path | None = None,
    random_weights: bool = False,
    mpp: float | None = None,
    target_mpp: float | None = 0.5,
    magnification: float | None = None,
    tile_size: int = 256,
    device: str = "auto",
    num_workers: int | None = None,
    progress: Reporter | None = None,
) -> tuple[Path, dict[str, str]]:
    """Tile and encode ``slides`` with ``hagekit extract`` into ``features_dir``.

    Finished slides made by the same encoder and tiling are reused. Returns the features
    folder and ``{slide id: reason}`` for the slides that failed.
    """
    from hagekit.extract import EncoderSpec, ExtractionSpec, TilingSpec, extract_slides

    out = Path(features_dir)
    summary = extract_slides(
        [slides[s] for s in sorted(slides)],
        encoder=EncoderSpec(encoder, weights=weights, random_weights=random_weights, device=device, num_workers=num_workers),
        spec=ExtractionSpec(out_dir=out, overwrite=False, tiling=TilingSpec(
            mpp=mpp, target_mpp=target_mpp, magnification=magnification, tile_size=tile_size)),
        progress=progress,
    )
    if summary.skipped:
        logger.info("reused cached features of %d slide(s) in %s", len(summary.skipped), out)
    failed = {i.name: i.reason for i in summary.failed}
    if failed:
        logger.warning("feature extraction failed for %d slide(s): %s", len(failed), "; ".join(f"{k}: {v}" for k, v in failed.items()))
    return out, failed



def run_abmil(
    labels: SlideLabels,
    features: Mapping[str, Path],
    *,
    out_dir: Path | str,
    config: ABMILConfig = ABMILConfig(),
    dataset: str = "csv",
    slides: Mapping[str, Path] | None = None,
    heatmaps: Sequence[str] = (),
    allow_missing: bool = False,
    overwrite: bool = False,
    extra_config: Mapping[str, Any] | None = None,
    pack: str | None = "fp32",
    progress: Reporter | None = None,
) -> DownstreamResult:
    """AB-MIL CV for each ``{encoder name: features folder}``; writes report, predictions, attention, heatmaps.

    ``pack`` (``fp32``/``fp16``) packs each folder's bags once into one memory-mapped file
    (:func:`open_bags`); ``None`` reads the h5 files through a 4 GiB LRU instead.
    """
    config.validate()
    if pack not in (None, "none", *PACK_DTYPES):
        raise ConfigError(f"--pack: unknown {pack!r} (valid: {', '.join(PACK_DTYPES)}, none)")
    if not features:
        raise ConfigError("--features/--encoder: give at least one feature source")
    out = Path(out_dir)
    enc_dirs = {name: child_path(out, encoder_slug(name), what="encoder name") for name in features}
    for sid in labels.slide_ids:
        child_path(out, f"{sid}.h5", what="slide_id", source=labels.path)
    if (out / "summary.json").exists() and not overwrite:
        raise ConfigError(at(out, "results already exist; pass --overwrite to replace them"))
    heatmaps = [strip_slide_suffix(h) for h in heatmaps]
    bad = [h for h in heatmaps if h not in labels.slide_ids]
    if bad:
        raise ConfigError(f"--heatmap: {', '.join(bad)} not in the labels CSV")
    if heatmaps and not slides:
        raise ConfigError("--heatmap: needs --slides DIR to find the slide images")
    if heatmaps and slides is not None:
        missing = [h for h in heatmaps if h not in slides]
        if missing:
            raise DataError(f"--heatmap: no slide file for {', '.join(missing)} in --slides")
    stores: dict[str, tuple[SlideLabels, BagStore | PackedBags]] = {}
    for name, fdir in features.items():
        files = find_feature_files(fdir, labels.slide_ids, allow_missing=allow_missing)
        lab = labels.subset([i for i, s in enumerate(labels.slide_ids) if s in files])
        stores[name] = (lab, open_bags(files, fdir, out, pack=pack, progress=progress))
    for lab, _ in stores.values():  # fail on impossible folds before any training
        make_slide_folds(lab.labels, lab.case_ids, n_folds=config.folds, val_fraction=config.val_fraction, seed=config.seed)
    results: list[EncoderScores] = []
    per_encoder: dict[str, tuple[list[SlidePrediction], BagStore | PackedBags]] = {}
    for name, (lab, store) in stores.items():
        scores, preds = cross_validate_abmil(lab, store, config=config, encoder=name, progress=progress)
        store.release()
        scores.info = {"features_dir": str(features[name]), "n_slides": lab.n, "n_cases": len(set(lab.case_ids))}
        results.append(scores)
        per_encoder[name] = (preds, store)
    result = DownstreamResult(
        task="abmil",
        dataset=dataset,
        scores=results,
        config={
            "task": "abmil",
            "dataset": dataset,
            "labels": str(labels.path) if labels.path else None,
            "class_names": labels.class_names,
            "n_slides": labels.n,
            "n_cases": len(set(labels.case_ids)),
            "features": {k: str(v) for k, v in features.items()},
            "abmil": asdict(config),
            "pack": pack or "none",
            **dict(extra_config or {}),
        },
    )
    write_downstream_report(result, out)
    for name, (preds, store) in per_encoder.items():
        enc_dir = enc_dirs[name]
        write_predictions(enc_dir, preds, labels.class_names, store)
        for sid in heatmaps:
            if sid in store.files and slides is not None:
                draw_attention_heatmap(slides[sid], enc_dir / "attention" / f"{sid}.h5",
                                       child_path(enc_dir / "heatmaps", f"{sid}.png", what="slide_id"))
    result.out_dir = out
    return result


def parse_named_paths(values: Sequence[str], option: str) -> dict[str, Path]:
    """``["uni=/a", "/b"]`` -> ``{"uni": /a, "b": /b}`` (name defaults to the folder name)."""
    out: dict[str, Path] = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or re.search(r"[/\\]", name):
            name, path = Path(v).name or v, v
        if name in out:
            raise ConfigError(f"{option}: name {name!r} given twice")
        out[name] = Path(path)
    return out


def open_bags(files: Mapping[str, Path], features_dir: Path | str, out_dir: Path | str, *, pack: str | None = "fp32",
              progress: Reporter | None = None) -> BagStore | PackedBags:
    """The bags of ``files``: packed once into ``<features_dir>/.hagekit-packed/`` (or, when that
    folder is read-only, ``<out_dir>/packed/``), or an LRU over the h5 files when ``pack`` is None."""
    store = BagStore(files)
    store.check()
    if pack is None or pack == "none":
        return store
    for folder in (Path(features_dir) / ".hagekit-packed", Path(out_dir) / "packed"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return pack_bags(files, folder, dtype=pack, progress=progress)
        except PermissionError:
            logger.info("%s: not writable; packing elsewhere", folder)
    raise DataError(at(out_dir, "no writable folder for the packed bags; use --pack none"))
