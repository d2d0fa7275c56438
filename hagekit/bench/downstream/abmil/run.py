"""The AB-MIL benchmark from feature folders: bags (packed once), K-fold CV per encoder, report,
per-slide attention and heatmaps (slides -> features: :mod:`~hagekit.bench.downstream.abmil.sources`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hagekit.bench.downstream.abmil.bags import (
    PACK_DTYPES,
    BagStore,
    PackedBags,
    find_feature_files,
    pack_bags,
)
from hagekit.bench.downstream.abmil.heatmaps import draw_attention_heatmap, write_predictions
from hagekit.bench.downstream.abmil.labels import SlideLabels, make_slide_folds, strip_slide_suffix
from hagekit.bench.downstream.abmil.training import (
    ABMILConfig,
    SlidePrediction,
    cross_validate_abmil,
)
from hagekit.bench.downstream.report import DownstreamResult, EncoderScores, write_downstream_report
from hagekit.errors import ConfigError, DataError, at
from hagekit.io.paths import child_path
from hagekit.progress import Reporter
from hagekit.workspace import encoder_slug

__all__ = ["AbmilRunOptions", "run_abmil", "open_bags"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AbmilRunOptions:
    """What an AB-MIL run needs besides its settings: the dataset name it reports, slide files for
    ``heatmaps``, whether slides without features are dropped, what else ``config.json`` records,
    and how bags are read (``pack``: ``fp32``/``fp16`` packed once, ``None`` the h5 files)."""

    dataset: str = "csv"
    slides: Mapping[str, Path] | None = None
    heatmaps: Sequence[str] = ()
    allow_missing: bool = False
    extra_config: Mapping[str, Any] | None = None
    pack: str | None = "fp32"


def _checked_heatmaps(labels: SlideLabels, options: AbmilRunOptions) -> list[str]:
    """The ``--heatmap`` slide ids (suffix stripped), each labelled and with a slide file."""
    heatmaps = [strip_slide_suffix(h) for h in options.heatmaps]
    bad = [h for h in heatmaps if h not in labels.slide_ids]
    if bad:
        raise ConfigError(f"--heatmap: {', '.join(bad)} not in the labels CSV")
    if heatmaps and not options.slides:
        raise ConfigError("--heatmap: needs --slides DIR to find the slide images")
    if heatmaps and options.slides is not None:
        missing = [h for h in heatmaps if h not in options.slides]
        if missing:
            raise DataError(f"--heatmap: no slide file for {', '.join(missing)} in --slides")
    return heatmaps


def _check_run(labels: SlideLabels, features: Mapping[str, Path], out: Path, options: AbmilRunOptions,
               overwrite: bool) -> dict[str, Path]:
    """Refuse bad options before any work; returns each encoder's output folder."""
    if options.pack not in (None, "none", *PACK_DTYPES):
        raise ConfigError(f"--pack: unknown {options.pack!r} (valid: {', '.join(PACK_DTYPES)}, none)")
    if not features:
        raise ConfigError("--features/--encoder: give at least one feature source")
    enc_dirs = {name: child_path(out, encoder_slug(name), what="encoder name") for name in features}
    for sid in labels.slide_ids:
        child_path(out, f"{sid}.h5", what="slide_id", source=labels.path)
    if (out / "summary.json").exists() and not overwrite:
        raise ConfigError(at(out, "results already exist; pass --overwrite to replace them"))
    return enc_dirs


def _write_encoder_outputs(enc_dir: Path, preds: list[SlidePrediction], store: BagStore | PackedBags,
                           class_names: list[str], heatmaps: tuple[list[str], Mapping[str, Path] | None]) -> None:
    """One encoder's predictions and attention, and the heatmaps of the slides asked for."""
    write_predictions(enc_dir, preds, class_names, store)
    ids, slides = heatmaps
    for sid in ids:
        if sid in store.files and slides is not None:
            draw_attention_heatmap(slides[sid], enc_dir / "attention" / f"{sid}.h5",
                                   child_path(enc_dir / "heatmaps", f"{sid}.png", what="slide_id"))


def _run_config(labels: SlideLabels, features: Mapping[str, Path], config: ABMILConfig,
                options: AbmilRunOptions) -> dict[str, Any]:
    """The ``config.json`` of an AB-MIL run."""
    return {
        "task": "abmil",
        "dataset": options.dataset,
        "labels": str(labels.path) if labels.path else None,
        "class_names": labels.class_names,
        "n_slides": labels.n,
        "n_cases": len(set(labels.case_ids)),
        "features": {k: str(v) for k, v in features.items()},
        "abmil": asdict(config),
        "pack": options.pack or "none",
        **dict(options.extra_config or {}),
    }


def run_abmil(
    labels: SlideLabels,
    features: Mapping[str, Path],
    *,
    out_dir: Path | str,
    overwrite: bool = False,
    config: ABMILConfig = ABMILConfig(),
    options: AbmilRunOptions = AbmilRunOptions(),
    progress: Reporter | None = None,
) -> DownstreamResult:
    """AB-MIL CV for each ``{encoder name: features folder}``; writes report, predictions, attention, heatmaps.

    ``options.pack`` (``fp32``/``fp16``) packs each folder's bags once into one memory-mapped file
    (:func:`open_bags`); ``None`` reads the h5 files through a 4 GiB LRU instead.
    """
    config.validate()
    out = Path(out_dir)
    enc_dirs = _check_run(labels, features, out, options, overwrite)
    heatmaps = _checked_heatmaps(labels, options)
    stores: dict[str, tuple[SlideLabels, BagStore | PackedBags]] = {}
    for name, fdir in features.items():
        files = find_feature_files(fdir, labels.slide_ids, allow_missing=options.allow_missing)
        lab = labels.subset([i for i, s in enumerate(labels.slide_ids) if s in files])
        stores[name] = (lab, open_bags(files, fdir, out, pack=options.pack, progress=progress))
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
    result = DownstreamResult(task="abmil", dataset=options.dataset, scores=results,
                              config=_run_config(labels, features, config, options))
    write_downstream_report(result, out)
    for name, (preds, store) in per_encoder.items():
        _write_encoder_outputs(enc_dirs[name], preds, store, labels.class_names, (heatmaps, options.slides))
    result.out_dir = out
    return result


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
