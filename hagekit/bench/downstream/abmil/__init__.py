"""Slide classification by attention MIL (Ilse et al. 2018, gated attention) on frozen tile features.

A bag is one slide's tile features (a hagekit, CLAM or TRIDENT h5: ``features`` (N, D) or
(1, N, D) + ``coords``); labels come from a CLAM-style CSV ``slide_id,label,case_id``.
K-fold cross-validation grouped by case (patient), stratified by label; inside each
training part a case-grouped validation split drives early stopping (best validation
loss is kept). Accuracy, AUC and macro Recall per fold, mean ± std; each slide's attention
scores (from the fold where it was a test slide) are saved with the tile coordinates and
can be drawn over the slide thumbnail.

Modules by concept: :mod:`~hagekit.bench.downstream.abmil.labels` (labels CSV, folds),
:mod:`~hagekit.bench.downstream.abmil.bags` (feature files, LRU store, packed memory-mapped bags),
:mod:`~hagekit.bench.downstream.abmil.model` (the gated-attention ``nn.Module``),
:mod:`~hagekit.bench.downstream.abmil.training` (training on the shared loop, cross-validation),
:mod:`~hagekit.bench.downstream.abmil.heatmaps` (attention files, heatmaps),
:mod:`~hagekit.bench.downstream.abmil.sources` (slides and feature folders, extraction),
:mod:`~hagekit.bench.downstream.abmil.run` (the benchmark end to end). Torch loads with the model module only.
"""

from __future__ import annotations

from hagekit._lazy import lazy_exports
from hagekit.bench.downstream.abmil.bags import (
    PACK_DTYPES,
    BagStore,
    PackedBags,
    find_feature_files,
    pack_bags,
)
from hagekit.bench.downstream.abmil.heatmaps import (
    draw_attention_heatmap,
    patch_size_level0,
    read_attention,
)
from hagekit.bench.downstream.abmil.labels import (
    SlideLabels,
    make_slide_folds,
    read_slide_labels,
)
from hagekit.bench.downstream.abmil.run import AbmilRunOptions, open_bags, run_abmil
from hagekit.bench.downstream.abmil.sources import (
    FeatureSources,
    SlideExtraction,
    extract_slide_features,
    find_slide_files,
    parse_named_paths,
    resolve_sources,
)
from hagekit.bench.downstream.abmil.training import (
    ABMILConfig,
    LabelledBags,
    SlidePrediction,
    TrainedABMIL,
    cross_validate_abmil,
    train_abmil,
)

__all__ = [
    "ABMILConfig",
    "PACK_DTYPES",
    "SlideLabels",
    "SlidePrediction",
    "TrainedABMIL",
    "GatedAttentionMIL",
    "read_slide_labels",
    "find_feature_files",
    "BagStore",
    "PackedBags",
    "pack_bags",
    "open_bags",
    "make_slide_folds",
    "LabelledBags",
    "train_abmil",
    "predict_bag",
    "cross_validate_abmil",
    "AbmilRunOptions",
    "run_abmil",
    "FeatureSources",
    "SlideExtraction",
    "resolve_sources",
    "find_slide_files",
    "extract_slide_features",
    "parse_named_paths",
    "read_attention",
    "draw_attention_heatmap",
    "patch_size_level0",
]


__getattr__, __dir__ = lazy_exports(__name__, {name: "hagekit.bench.downstream.abmil.model" for name in ("GatedAttentionMIL", "predict_bag")})
