"""Slide labels (CLAM's ``slide_id,label,case_id`` CSV, dataset presets) and case-grouped folds."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hagekit.bench.downstream.datasets import SLIDE_DATASETS
from hagekit.errors import ConfigError, DataError, at
from hagekit.io.paths import name_problem
from hagekit.training.splits import trial_seed

__all__ = ["SLIDE_SUFFIXES", "SlideLabels", "read_slide_labels", "make_slide_folds", "strip_slide_suffix"]

logger = logging.getLogger(__name__)


logger = logging.getLogger(__name__)

SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".svslide", ".bif", ".jpg", ".jpeg", ".png", ".dcm")
_STRIP_SUFFIXES = (*SLIDE_SUFFIXES, ".h5", ".pt")


@dataclass
class SlideLabels:
    """Slides to classify: ``slide_ids``, integer ``labels``, ``case_ids`` and ``class_names``."""

    slide_ids: list[str]
    labels: np.ndarray
    case_ids: list[str]
    class_names: list[str]
    path: Path | None = None

    @property
    def n(self) -> int:
        return len(self.slide_ids)

    def subset(self, keep: Sequence[int]) -> SlideLabels:
        keep = list(keep)
        return SlideLabels(
            [self.slide_ids[i] for i in keep], self.labels[keep], [self.case_ids[i] for i in keep], self.class_names, self.path
        )


def strip_slide_suffix(name: str) -> str:
    low = name.lower()
    for suf in _STRIP_SUFFIXES:
        if low.endswith(suf):
            return name[: -len(suf)]
    return name


def read_slide_labels(path: Path | str, *, dataset: str = "csv") -> SlideLabels:
    """Read ``slide_id,label[,case_id]`` (CLAM's convention; extra columns ignored).

    Presets check the label set (``tcga-brca``: IDC/ILC; ``sln-breast``: negative/positive;
    also 0/1 and the spelled-out names). Without ``case_id`` TCGA slides get their 12-character patient barcode and
    other slides count as their own case.
    """
    import pandas as pd

    key = dataset.strip().lower()
    label_set = SLIDE_DATASETS.get(key)
    path = Path(path)
    if not path.is_file():
        raise DataError(at(path, "labels CSV not found"))
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise DataError(at(path, f"cannot read labels CSV ({exc})")) from None
    df.columns = [str(c).strip() for c in df.columns]
    for col in ("slide_id", "label"):
        if col not in df.columns:
            raise DataError(at(path, f"no '{col}' column (need slide_id,label[,case_id]; found: {', '.join(df.columns)})"))
    if df.empty:
        raise DataError(at(path, "no slides listed"))
    slide_ids = [strip_slide_suffix(s.strip()) for s in df["slide_id"]]
    if any(not s for s in slide_ids):
        raise DataError(at(path, "empty slide_id"))
    for s in slide_ids:  # ids name feature, attention and heatmap files
        if (problem := name_problem(s)) is not None:
            raise DataError(at(path, f"slide_id {s!r} {problem}; a slide id names files and must stay inside their folder"))
    dup = sorted({s for s in slide_ids if slide_ids.count(s) > 1})
    if dup:
        raise DataError(at(path, f"duplicate slide_id {', '.join(dup[:5])}"))
    raw = [str(v).strip() for v in df["label"]]
    if any(not v for v in raw):
        raise DataError(at(path, "empty label"))
    classes = label_set.classes
    if classes is None:
        names = sorted(set(raw), key=lambda v: (not v.lstrip("-").isdigit(), int(v) if v.lstrip("-").isdigit() else 0, v))
        labels = [names.index(v) for v in raw]
    else:
        names = list(classes)
        lookup = {c.lower(): i for i, c in enumerate(names)}
        lookup.update({str(i): i for i in range(len(names))})
        lookup.update({a: names.index(c) for a, c in label_set.aliases.items()})
        bad = sorted({v for v in raw if v.lower() not in lookup})
        if bad:
            raise DataError(at(path, f"label(s) {', '.join(bad)} not valid for {key} (choose from {', '.join(names)})"))
        labels = [lookup[v.lower()] for v in raw]
    if len(set(labels)) < 2:
        raise DataError(at(path, f"need at least 2 classes, found only {names[labels[0]]!r}"))
    if "case_id" in df.columns:
        cases = [c.strip() or s for c, s in zip(df["case_id"], slide_ids, strict=True)]
    else:
        cases = [s[:12] if s.upper().startswith("TCGA-") and len(s) >= 12 else s for s in slide_ids]
        logger.info("%s: no case_id column; cases from TCGA barcodes or one case per slide", path)
    return SlideLabels(slide_ids, np.asarray(labels, dtype=np.int64), cases, names, path)



def make_slide_folds(
    labels: np.ndarray, cases: Sequence[str], *, n_folds: int, val_fraction: float, seed: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Case-grouped, label-stratified K folds, each ``(train, val, test)`` slide indices.

    The validation part is a case-grouped split of the training part (``val_fraction``).
    """
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold

    y = np.asarray(labels)
    g = np.asarray(list(cases), dtype=object)
    n_cases = len(set(g.tolist()))
    if n_cases < n_folds:
        raise ConfigError(f"--folds: {n_folds} folds need at least {n_folds} cases (patients), found {n_cases}; lower --folds")
    largest = int(np.unique(y, return_counts=True)[1].max()) if y.size else 0
    if largest < n_folds:
        raise ConfigError(f"--folds: {n_folds} folds need at least {n_folds} slides in one class, the largest class has "
                          f"{largest}; lower --folds or add slides")
    n_inner = max(2, int(round(1.0 / val_fraction)))
    out = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        outer = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed % (2**32))
        for k, (tr, te) in enumerate(outer.split(np.zeros(y.size), y, g)):
            tr_cases = len(set(g[tr].tolist()))
            if tr_cases < 2:
                raise ConfigError(f"fold {k}: {tr_cases} training case(s) leave none for validation; add cases or lower --folds")
            # small sets: fewer inner splits (a larger validation share) rather than no run at all
            n_split = min(n_inner, tr_cases, int(np.unique(y[tr], return_counts=True)[1].max()))
            if n_split < 2:
                raise ConfigError(f"fold {k}: the training part has one slide per class, none left for validation; "
                                  "at least 2 slides of one class are needed: add slides or lower --folds")
            inner = StratifiedGroupKFold(n_splits=n_split, shuffle=True, random_state=trial_seed(seed, "val", k))
            itr, iva = next(inner.split(np.zeros(tr.size), y[tr], g[tr]))
            out.append((np.sort(tr[itr]), np.sort(tr[iva]), np.sort(te)))
    return out
