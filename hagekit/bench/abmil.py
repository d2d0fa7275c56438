"""Slide classification by attention MIL (Ilse et al. 2018, gated attention) on frozen tile features.

A bag is one slide's tile features (a hagekit, CLAM or TRIDENT h5: ``features`` (N, D) or
(1, N, D) + ``coords``); labels come from a CLAM-style CSV ``slide_id,label,case_id``.
K-fold cross-validation grouped by case (patient), stratified by label; inside each
training part a case-grouped validation split drives early stopping (best validation
loss is kept). Accuracy, AUC and macro Recall per fold, mean ± std; each slide's attention
scores (from the fold where it was a test slide) are saved with the tile coordinates and
can be drawn over the slide thumbnail.
"""

from __future__ import annotations

import copy
import csv
import io
import logging
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hagekit.bench.downstream_report import (
    DownstreamResult,
    EncoderScores,
    classification_metrics,
    write_downstream_report,
)
from hagekit.errors import ConfigError, DataError, ProvenanceError, at
from hagekit.io.atomic import atomic_path, visible_files, write_text
from hagekit.progress import Reporter, reporter_or_null
from hagekit.training.splits import trial_seed
from hagekit.workspace import encoder_slug

__all__ = [
    "ABMIL_DATASETS",
    "ABMILConfig",
    "SlideLabels",
    "GatedAttentionMIL",
    "read_slide_labels",
    "find_feature_files",
    "BagStore",
    "make_slide_folds",
    "train_abmil",
    "predict_bag",
    "cross_validate_abmil",
    "run_abmil",
    "find_slide_files",
    "extract_slide_features",
    "read_attention",
    "draw_attention_heatmap",
]

logger = logging.getLogger(__name__)

#: Dataset presets: class names in label order, and other spellings accepted for each.
ABMIL_DATASETS: dict[str, dict[str, Any]] = {
    "tcga-brca": {
        "classes": ("IDC", "ILC"),
        "aliases": {  # also GDC primary_diagnosis and TCGA clinical histological_type spellings
            "infiltrating ductal carcinoma": "IDC", "infiltrating duct carcinoma": "IDC",
            "infiltrating duct carcinoma, nos": "IDC", "infiltrating lobular carcinoma": "ILC",
            "lobular carcinoma": "ILC", "lobular carcinoma, nos": "ILC",
        },
    },
    "sln-breast": {
        "classes": ("negative", "positive"),
        "aliases": {"neg": "negative", "normal": "negative", "pos": "positive", "tumor": "positive",
                    "metastasis": "positive", "metastatic": "positive"},
    },
    "csv": {"classes": None, "aliases": {}},
}
SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".svslide", ".bif", ".jpg", ".jpeg", ".png", ".dcm")
_STRIP_SUFFIXES = (*SLIDE_SUFFIXES, ".h5", ".pt")


@dataclass(frozen=True)
class ABMILConfig:
    """AB-MIL training and CV settings (Adam, per-bag steps, early stopping on val loss)."""

    folds: int = 5
    val_fraction: float = 0.2
    max_epochs: int = 50
    patience: int = 10
    min_epochs: int = 10
    lr: float = 2e-4
    weight_decay: float = 1e-5
    hidden_dim: int = 256
    attention_dim: int = 128
    dropout: float = 0.25
    balanced: bool = True
    max_instances: int | None = None
    seed: int = 0
    device: str = "cpu"

    def validate(self) -> ABMILConfig:
        if self.folds < 2:
            raise ConfigError(f"--folds: must be >= 2, got {self.folds}")
        if not 0.0 < self.val_fraction < 0.5:
            raise ConfigError(f"--val-fraction: must be in (0, 0.5), got {self.val_fraction}")
        if self.max_epochs < 1:
            raise ConfigError(f"--epochs: must be >= 1, got {self.max_epochs}")
        if self.min_epochs < 0:
            raise ConfigError(f"--min-epochs: must be >= 0, got {self.min_epochs}")
        if self.patience < 1:
            raise ConfigError(f"--patience: must be >= 1, got {self.patience}")
        if self.lr <= 0:
            raise ConfigError(f"--lr: must be > 0, got {self.lr}")
        if self.max_instances is not None and self.max_instances < 1:
            raise ConfigError(f"--max-instances: must be >= 1, got {self.max_instances}")
        return self


# Labels ------------------------------------------------------------------------------------


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


def _strip_slide_suffix(name: str) -> str:
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
    if key not in ABMIL_DATASETS:
        raise ConfigError(f"--dataset: unknown slide dataset {dataset!r} (choose from {', '.join(ABMIL_DATASETS)})")
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
    slide_ids = [_strip_slide_suffix(s.strip()) for s in df["slide_id"]]
    if any(not s for s in slide_ids):
        raise DataError(at(path, "empty slide_id"))
    dup = sorted({s for s in slide_ids if slide_ids.count(s) > 1})
    if dup:
        raise DataError(at(path, f"duplicate slide_id {', '.join(dup[:5])}"))
    raw = [str(v).strip() for v in df["label"]]
    if any(not v for v in raw):
        raise DataError(at(path, "empty label"))
    classes = ABMIL_DATASETS[key]["classes"]
    if classes is None:
        names = sorted(set(raw), key=lambda v: (not v.lstrip("-").isdigit(), int(v) if v.lstrip("-").isdigit() else 0, v))
        labels = [names.index(v) for v in raw]
    else:
        names = list(classes)
        lookup = {c.lower(): i for i, c in enumerate(names)}
        lookup.update({str(i): i for i in range(len(names))})
        lookup.update({a: names.index(c) for a, c in ABMIL_DATASETS[key]["aliases"].items()})
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


# Feature files and bags --------------------------------------------------------------------


def find_feature_files(
    features_dir: Path | str, slide_ids: Sequence[str], *, allow_missing: bool = False
) -> dict[str, Path]:
    """Map slide ids to ``<dir>/<id>.h5`` or ``<dir>/h5_files/<id>.h5`` (CLAM); TRIDENT folders work as-is."""
    root = Path(features_dir)
    if not root.is_dir():
        raise DataError(at(root, "features folder not found"))
    found: dict[str, Path] = {}
    missing = []
    for sid in slide_ids:
        for cand in (root / f"{sid}.h5", root / "h5_files" / f"{sid}.h5"):
            if cand.is_file():
                found[sid] = cand
                break
        else:
            missing.append(sid)
    if missing:
        msg = f"no feature file for {len(missing)} of {len(slide_ids)} slides (e.g. {', '.join(missing[:3])})"
        if not allow_missing:
            raise DataError(at(root, msg + "; pass --allow-missing to drop them"))
        logger.warning("%s: %s; dropping them", root, msg)
    return found


class BagStore:
    """Reads bags (features, coords) from h5 files, keeping up to ``max_bytes`` in memory (LRU)."""

    def __init__(self, files: Mapping[str, Path], *, max_bytes: int = 4 * 2**30) -> None:
        self.files = dict(files)
        self.max_bytes = max_bytes
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._bytes = 0
        self.attrs: dict[str, dict[str, Any]] = {}

    def get(self, slide_id: str) -> tuple[np.ndarray, np.ndarray]:
        """``(features (N, D) float32, coords (N, 2))`` of one slide."""
        from hagekit.io.h5 import read_features

        if slide_id in self._cache:
            self._cache.move_to_end(slide_id)
            return self._cache[slide_id]
        ff = read_features(self.files[slide_id])
        if ff.n == 0:
            raise DataError(at(self.files[slide_id], "bag has no tiles"))
        self.attrs[slide_id] = {**ff.attrs, **{f"coords.{k}": v for k, v in ff.coords_attrs.items()}}
        item = (ff.features, np.asarray(ff.coords))
        size = item[0].nbytes + item[1].nbytes
        if size <= self.max_bytes:
            self._cache[slide_id] = item
            self._bytes += size
            while self._bytes > self.max_bytes and self._cache:
                _, old = self._cache.popitem(last=False)
                self._bytes -= old[0].nbytes + old[1].nbytes
        return item

    def release(self) -> None:
        """Drop the in-memory bags (attributes and file paths stay)."""
        self._cache.clear()
        self._bytes = 0

    def check(self) -> int:
        """Verify every file opens, dims agree and encoders match; return the feature dim."""
        import h5py

        from hagekit.io.h5 import check_same_encoder, read_feature_attrs

        dims: dict[int, str] = {}
        attrs: dict[str, dict[str, Any]] = {}
        for sid, path in self.files.items():
            attrs[str(path)] = read_feature_attrs(path)
            with h5py.File(path, "r") as h5:
                if "features" not in h5 or "coords" not in h5:
                    raise DataError(at(path, f"needs 'features' and 'coords' datasets (found: {', '.join(h5.keys())})"))
                shape = h5["features"].shape
                if len(shape) < 2 or shape[-2] == 0:
                    raise DataError(at(path, f"no tiles in this bag (features shape {shape}); drop the slide from the labels"))
                dims.setdefault(int(shape[-1]), sid)
        if len(dims) > 1:
            (d1, s1), (d2, s2) = list(dims.items())[:2]
            raise ProvenanceError(f"{s1} has {d1}-d features but {s2} has {d2}-d: one encoder per feature folder")
        if attrs:
            check_same_encoder(attrs)
        return next(iter(dims))


# Model -------------------------------------------------------------------------------------


def GatedAttentionMIL(  # noqa: N802 - a factory that reads like the class it builds
    in_dim: int, n_classes: int, *, hidden_dim: int = 256, attention_dim: int = 128, dropout: float = 0.25
) -> Any:
    """Ilse et al.'s gated attention MIL: ``a = w^T (tanh(V h) * sigmoid(U h))``, softmax over tiles.

    Returns a ``torch.nn.Module`` whose ``forward(x (N, D))`` gives ``(logits (C,), attention (N,))``.
    """
    import torch
    from torch import nn

    class _GatedAttentionMIL(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout))
            self.attn_v = nn.Sequential(nn.Linear(hidden_dim, attention_dim), nn.Tanh())
            self.attn_u = nn.Sequential(nn.Linear(hidden_dim, attention_dim), nn.Sigmoid())
            self.attn_w = nn.Linear(attention_dim, 1)
            self.classifier = nn.Linear(hidden_dim, n_classes)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = self.embed(x)
            a = self.attn_w(self.attn_v(h) * self.attn_u(h)).squeeze(-1)
            a = torch.softmax(a, dim=0)
            return self.classifier(a @ h), a

    return _GatedAttentionMIL()


# Splits ------------------------------------------------------------------------------------


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


# Training ----------------------------------------------------------------------------------


@dataclass
class TrainedABMIL:
    """A trained model and its training history (val loss per epoch, best epoch)."""

    model: Any
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)


def _bag_tensor(features: np.ndarray, device: Any, rng: np.random.Generator | None, max_instances: int | None) -> Any:
    import torch

    if rng is not None and max_instances is not None and features.shape[0] > max_instances:
        features = features[np.sort(rng.choice(features.shape[0], size=max_instances, replace=False))]
    return torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).to(device)


def train_abmil(
    store: BagStore,
    train_ids: Sequence[str],
    train_y: np.ndarray,
    val_ids: Sequence[str],
    val_y: np.ndarray,
    *,
    n_classes: int,
    in_dim: int,
    config: ABMILConfig = ABMILConfig(),
    seed: int = 0,
    progress_task: Any = None,
) -> TrainedABMIL:
    """Train gated AB-MIL on bags (one Adam step per bag), early-stopping on validation loss."""
    import torch

    device = torch.device(config.device)
    train_y = np.asarray(train_y, dtype=np.int64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GatedAttentionMIL(
            in_dim, n_classes, hidden_dim=config.hidden_dim, attention_dim=config.attention_dim, dropout=config.dropout
        ).to(device)
        weight = None
        if config.balanced:
            counts = np.bincount(train_y, minlength=n_classes).astype(np.float64)
            w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n_classes, 0.0)
            weight = torch.tensor(w, dtype=torch.float32, device=device)
        loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
        val_loss_fn = torch.nn.CrossEntropyLoss(weight=weight, reduction="sum")
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        rng = np.random.default_rng(seed)
        best_loss, best_epoch, best_state, bad = float("inf"), 0, copy.deepcopy(model.state_dict()), 0
        history = []
        for epoch in range(config.max_epochs):
            model.train()
            total = 0.0
            for i in rng.permutation(len(train_ids)):
                x = _bag_tensor(store.get(train_ids[i])[0], device, rng, config.max_instances)
                logits, _ = model(x)
                loss = loss_fn(logits.unsqueeze(0), torch.tensor([int(train_y[i])], device=device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach())
            model.eval()
            vloss, vweight = 0.0, 0.0
            with torch.inference_mode():
                for sid, yv in zip(val_ids, val_y, strict=True):
                    logits, _ = model(_bag_tensor(store.get(sid)[0], device, None, None))
                    target = torch.tensor([int(yv)], device=device)
                    vloss += float(val_loss_fn(logits.unsqueeze(0), target))
                    vweight += float(weight[int(yv)]) if weight is not None else 1.0
            vloss = vloss / max(vweight, 1e-12)
            history.append({"epoch": epoch, "train_loss": total / max(1, len(train_ids)), "val_loss": vloss})
            if progress_task is not None:
                progress_task.update(status=f"epoch {epoch} val loss {vloss:.3f}")
            if vloss < best_loss - 1e-6:
                best_loss, best_epoch, bad = vloss, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad += 1
                if bad >= config.patience and epoch + 1 >= config.min_epochs:
                    break
        model.load_state_dict(best_state)
        model.eval()
    return TrainedABMIL(model=model, best_epoch=best_epoch, history=history)


def predict_bag(model: Any, features: np.ndarray, *, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (C,) and attention scores (N,) of one bag."""
    import torch

    model.eval()
    with torch.inference_mode():
        logits, attn = model(_bag_tensor(features, torch.device(device), None, None))
        proba = torch.softmax(logits, dim=-1)
    return proba.cpu().numpy().astype(np.float64), attn.cpu().numpy().astype(np.float64)


@dataclass
class SlidePrediction:
    """One test slide's outcome: fold, label, probabilities, attention and coords."""

    slide_id: str
    case_id: str
    fold: int
    label: int
    proba: np.ndarray
    attention: np.ndarray
    coords: np.ndarray


def cross_validate_abmil(
    labels: SlideLabels,
    store: BagStore,
    *,
    config: ABMILConfig = ABMILConfig(),
    encoder: str = "features",
    progress: Reporter | None = None,
) -> tuple[EncoderScores, list[SlidePrediction]]:
    """K-fold AB-MIL over ``labels`` with bags from ``store``; per-fold metrics and test predictions."""
    config.validate()
    in_dim = store.check()
    folds = make_slide_folds(labels.labels, labels.case_ids, n_folds=config.folds, val_fraction=config.val_fraction, seed=config.seed)
    n_classes = len(labels.class_names)
    rows: list[dict[str, Any]] = []
    preds: list[SlidePrediction] = []
    task = reporter_or_null(progress).task(f"AB-MIL {encoder}", total=len(folds))
    try:
        for k, (tr, va, te) in enumerate(folds):
            ids = labels.slide_ids
            trained = train_abmil(
                store, [ids[i] for i in tr], labels.labels[tr], [ids[i] for i in va], labels.labels[va],
                n_classes=n_classes, in_dim=in_dim, config=config, seed=trial_seed(config.seed, "abmil", k), progress_task=task,
            )
            probas = []
            for i in te:
                feats, coords = store.get(ids[i])
                p, a = predict_bag(trained.model, feats, device=config.device)
                probas.append(p)
                preds.append(SlidePrediction(ids[i], labels.case_ids[i], k, int(labels.labels[i]), p, a, coords))
            scores = classification_metrics(labels.labels[te], np.stack(probas))
            rows.append({
                "fold": k, "n_train": int(tr.size), "n_val": int(va.size), "n_test": int(te.size),
                "best_epoch": trained.best_epoch, "epochs_run": len(trained.history), **scores,
            })
            task.advance(1, status=f"fold {k} auc {scores['auc']:.3f}")
    finally:
        task.close()
    return EncoderScores(encoder=encoder, folds=rows), preds


def _patch_size_level0(attrs: Mapping[str, Any], coords: np.ndarray) -> float:
    """Tile side in level-0 px: TRIDENT/CLAM/hagekit attributes, else the coords grid step."""
    for key in ("coords.patch_size_level0", "patch_size_level0", "patch_size_level0_px"):
        if key in attrs and attrs[key] not in ("", None):
            return float(attrs[key])
    if "coords.patch_size" in attrs and attrs["coords.patch_size"] not in ("", None):
        ds = attrs.get("coords.downsample", 1.0)
        ds = float(np.asarray(ds, dtype=float).ravel()[0]) if np.size(ds) else 1.0
        return float(attrs["coords.patch_size"]) * ds
    c = np.asarray(coords, dtype=float)
    steps = []
    for j in range(2):
        u = np.unique(c[:, j])
        if u.size > 1:
            steps.append(float(np.diff(u).min()))
    if steps:
        return min(steps)
    if "patch_size_px" in attrs and attrs["patch_size_px"] not in ("", None):
        return float(attrs["patch_size_px"])
    return 256.0


def _write_predictions(out: Path, preds: Sequence[SlidePrediction], class_names: Sequence[str], store: BagStore) -> None:
    import h5py

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["slide_id", "case_id", "fold", "label", "pred", *[f"prob_{c}" for c in class_names]])
    for p in sorted(preds, key=lambda r: r.slide_id):
        w.writerow([p.slide_id, p.case_id, p.fold, class_names[p.label], class_names[int(p.proba.argmax())], *[f"{v:.6f}" for v in p.proba]])
        attrs = store.attrs.get(p.slide_id, {})
        with atomic_path(out / "attention" / f"{p.slide_id}.h5") as tmp:
            with h5py.File(tmp, "w") as h5:
                h5.create_dataset("attention", data=p.attention.astype(np.float32))
                h5.create_dataset("coords", data=p.coords)
                h5.attrs["slide_id"] = p.slide_id
                h5.attrs["fold"] = p.fold
                h5.attrs["label"] = class_names[p.label]
                h5.attrs["pred"] = class_names[int(p.proba.argmax())]
                h5.attrs["proba"] = p.proba
                h5.attrs["patch_size_level0"] = _patch_size_level0(attrs, p.coords)
                h5.attrs["features_file"] = str(store.files[p.slide_id])
    write_text(out / "predictions.csv", buf.getvalue())


# Slides -> features ------------------------------------------------------------------------


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
    if missing:
        msg = f"no slide file for {len(missing)} of {len(slide_ids)} slides (e.g. {', '.join(missing[:3])})"
        if not allow_missing:
            raise DataError(at(root, msg + "; pass --allow-missing to drop them"))
        logger.warning("%s: %s; dropping them", root, msg)
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
    device: str = "cpu",
    num_workers: int | None = None,
    progress: Reporter | None = None,
) -> tuple[Path, dict[str, str]]:
    """Tile and encode ``slides`` with ``hagekit extract`` into ``features_dir``.

    Finished slides made by the same encoder and tiling are reused. Returns the features
    folder and ``{slide id: reason}`` for the slides that failed.
    """
    from hagekit.extract import extract_slides

    out = Path(features_dir)
    summary = extract_slides(
        [slides[s] for s in sorted(slides)], encoder=encoder, out_dir=out, mpp=mpp, target_mpp=target_mpp,
        magnification=magnification, tile_size=tile_size, weights=weights, random_weights=random_weights,
        device=device, num_workers=num_workers, overwrite=False, progress=progress,
    )
    if summary.skipped:
        logger.info("reused cached features of %d slide(s) in %s", len(summary.skipped), out)
    failed = {i.name: i.reason for i in summary.failed}
    if failed:
        logger.warning("feature extraction failed for %d slide(s): %s", len(failed), "; ".join(f"{k}: {v}" for k, v in failed.items()))
    return out, failed


# Attention heatmaps ------------------------------------------------------------------------


def read_attention(path: Path | str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(attention (N,), coords (N, 2), attrs)`` from a saved attention file."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(at(path, "attention file not found"))
    with h5py.File(path, "r") as h5:
        return np.asarray(h5["attention"][:]), np.asarray(h5["coords"][:]), dict(h5.attrs.items())


def _slide_thumbnail(slide_path: Path, max_size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """An RGB thumbnail (h, w, 3) and the level-0 size (W, H), read with :mod:`hagekit.slides`."""
    from hagekit.slides import open_slide

    with open_slide(slide_path) as slide:
        thumb, _ = slide.thumbnail(max_size)
        w0, h0 = slide.dimensions
    return np.asarray(thumb)[..., :3], (int(w0), int(h0))


def draw_attention_heatmap(
    slide_path: Path | str,
    attention_path: Path | str,
    out_path: Path | str,
    *,
    max_size: int = 1600,
    alpha: float = 0.5,
    cmap: str = "jet",
) -> Path:
    """Draw a slide's attention (percentile-ranked, one square per tile) over its thumbnail (PNG)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from scipy.stats import rankdata

    slide_path = Path(slide_path)
    att, coords, attrs = read_attention(attention_path)
    thumb, (w0, h0) = _slide_thumbnail(slide_path, max_size)
    th, tw = thumb.shape[:2]
    sx, sy = tw / w0, th / h0
    size0 = float(attrs.get("patch_size_level0", 256.0))
    score = (rankdata(att) / max(1, att.size)) if att.size else att
    heat = np.zeros((th, tw), dtype=np.float32)
    mask = np.zeros((th, tw), dtype=bool)
    for (x, y), v in zip(np.asarray(coords, dtype=float), score, strict=True):
        x0, y0 = int(np.floor(x * sx)), int(np.floor(y * sy))
        x1, y1 = int(np.ceil((x + size0) * sx)), int(np.ceil((y + size0) * sy))
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(tw, max(x1, x0 + 1)), min(th, max(y1, y0 + 1))
        heat[y0:y1, x0:x1] = v
        mask[y0:y1, x0:x1] = True
    fig, ax = plt.subplots(figsize=(8, 8 * th / max(tw, 1)), dpi=150)
    ax.imshow(thumb)
    shown = np.ma.masked_where(~mask, heat)
    im = ax.imshow(shown, cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0)
    ax.set_axis_off()
    label = attrs.get("label", "")
    pred = attrs.get("pred", "")
    ax.set_title(f"{slide_path.stem}: attention (label {label}, predicted {pred})", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01, label="attention percentile")
    fig.tight_layout()
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out_path


# The whole benchmark -----------------------------------------------------------------------


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
    progress: Reporter | None = None,
) -> DownstreamResult:
    """AB-MIL CV for each ``{encoder name: features folder}``; writes report, predictions, attention, heatmaps."""
    config.validate()
    if not features:
        raise ConfigError("--features/--encoder: give at least one feature source")
    out = Path(out_dir)
    if (out / "summary.json").exists() and not overwrite:
        raise ConfigError(at(out, "results already exist; pass --overwrite to replace them"))
    heatmaps = [_strip_slide_suffix(h) for h in heatmaps]
    bad = [h for h in heatmaps if h not in labels.slide_ids]
    if bad:
        raise ConfigError(f"--heatmap: {', '.join(bad)} not in the labels CSV")
    if heatmaps and not slides:
        raise ConfigError("--heatmap: needs --slides DIR to find the slide images")
    if heatmaps and slides is not None:
        missing = [h for h in heatmaps if h not in slides]
        if missing:
            raise DataError(f"--heatmap: no slide file for {', '.join(missing)} in --slides")
    stores: dict[str, tuple[SlideLabels, BagStore]] = {}
    for name, fdir in features.items():
        files = find_feature_files(fdir, labels.slide_ids, allow_missing=allow_missing)
        lab = labels.subset([i for i, s in enumerate(labels.slide_ids) if s in files])
        store = BagStore(files)
        store.check()
        stores[name] = (lab, store)
    for lab, _ in stores.values():  # fail on impossible folds before any training
        make_slide_folds(lab.labels, lab.case_ids, n_folds=config.folds, val_fraction=config.val_fraction, seed=config.seed)
    results: list[EncoderScores] = []
    per_encoder: dict[str, tuple[list[SlidePrediction], BagStore]] = {}
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
            **dict(extra_config or {}),
        },
    )
    write_downstream_report(result, out)
    for name, (preds, store) in per_encoder.items():
        enc_dir = out / encoder_slug(name)
        _write_predictions(enc_dir, preds, labels.class_names, store)
        for sid in heatmaps:
            if sid in store.files and slides is not None:
                draw_attention_heatmap(slides[sid], enc_dir / "attention" / f"{sid}.h5", enc_dir / "heatmaps" / f"{sid}.png")
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
