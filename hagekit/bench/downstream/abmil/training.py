"""AB-MIL training on the shared loop (one bag per Adam step, early stopping on validation
loss) and K-fold cross-validation with per-fold test metrics."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from hagekit.bench.downstream.abmil.labels import SlideLabels, make_slide_folds
from hagekit.bench.downstream.report import EncoderScores, classification_metrics
from hagekit.errors import ConfigError
from hagekit.progress import Reporter, reporter_or_null
from hagekit.training.splits import trial_seed

if TYPE_CHECKING:
    from hagekit.bench.downstream.abmil.bags import BagStore, PackedBags

__all__ = ["ABMILConfig", "TrainedABMIL", "SlidePrediction", "LabelledBags", "train_abmil", "cross_validate_abmil"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ABMILConfig:
    """AB-MIL training and CV settings (Adam, per-bag steps, early stopping on val loss)."""

    folds: int = 5
    """Cross-validation folds, grouped by case."""
    val_fraction: float = 0.2
    """Share of each training part's cases held out for early stopping."""
    max_epochs: int = 50
    patience: int = 10
    """Early stopping: epochs without a lower validation loss."""
    min_epochs: int = 10
    lr: float = 2e-4
    """Adam."""
    weight_decay: float = 1e-5
    hidden_dim: int = 256
    """The gated-attention network."""
    attention_dim: int = 128
    dropout: float = 0.25
    balanced: bool = True
    """Class-weighted losses."""
    max_instances: int | None = None
    """Random tiles per bag per training step (None: all)."""
    seed: int = 0
    device: str = "auto"

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




@dataclass
class TrainedABMIL:
    """A trained model and its training history (loss, val loss, val accuracy/AUROC/recall per epoch)."""

    model: Any
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)


def _class_weights(train_y: np.ndarray, n_classes: int, device: Any) -> Any:
    import torch

    counts = np.bincount(train_y, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n_classes, 0.0)
    return torch.tensor(w, dtype=torch.float32, device=device)


@dataclass(frozen=True)
class LabelledBags:
    """Slide ids (bags of a store) and their class labels."""

    ids: Sequence[str]
    y: np.ndarray


def train_abmil(
    store: BagStore | PackedBags,
    train: LabelledBags,
    val: LabelledBags,
    *,
    n_classes: int,
    in_dim: int,
    config: ABMILConfig = ABMILConfig(),
    seed: int = 0,
    progress: Reporter | None = None,
) -> TrainedABMIL:
    """Train gated AB-MIL on bags (one Adam step per bag) with :func:`hagekit.learn.loop.train_loop`,
    early-stopping on class-weighted validation loss; the best epoch's weights are kept.

    Validation accuracy / AUROC / recall are computed on the device with torchmetrics
    (:func:`hagekit.metrics.device.classification_metrics`) and recorded in the history.
    """
    import torch

    from hagekit.bench.downstream.abmil.model import GatedAttentionMIL, bag_tensor
    from hagekit.device import resolve_device
    from hagekit.learn.loop import LoopConfig, seeded, train_loop
    from hagekit.metrics.device import classification_metrics as device_metrics

    device = resolve_device(config.device)
    train_ids, val_ids = train.ids, val.ids
    train_y = np.asarray(train.y, dtype=np.int64)
    y_train = torch.as_tensor(train_y, device=device)
    y_val = torch.as_tensor(np.asarray(val.y, dtype=np.int64), device=device)
    weight = _class_weights(train_y, n_classes, device) if config.balanced else None
    rng = np.random.default_rng(seed)
    loop_cfg = LoopConfig(
        epochs=config.max_epochs, batch_size=1, min_steps=config.min_epochs * len(train_ids),
        max_steps=config.max_epochs * len(train_ids), monitor="val_loss", mode="min", min_delta=1e-6,
        patience=config.patience, seed=seed, precision="fp32", description="AB-MIL",
    )
    with seeded(seed, device):
        model = GatedAttentionMIL(in_dim, n_classes, hidden_dim=config.hidden_dim, attention_dim=config.attention_dim,
                                  dropout=config.dropout).to(device)
        loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
        val_loss_fn = torch.nn.CrossEntropyLoss(weight=weight, reduction="sum")
        metrics = device_metrics(n_classes, prefix="val_").to(device)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)

        def step(idx: torch.Tensor) -> torch.Tensor:
            i = int(idx[0])
            logits, _ = model(bag_tensor(store.get(train_ids[i])[0], device, rng, config.max_instances))
            return loss_fn(logits.unsqueeze(0), y_train[i : i + 1])

        def validate() -> dict[str, float]:
            logits = torch.stack([model(bag_tensor(store.get(sid)[0], device))[0] for sid in val_ids])
            total = val_loss_fn(logits, y_val)
            norm = weight[y_val].sum() if weight is not None else torch.tensor(float(len(val_ids)))
            proba = torch.softmax(logits.float(), dim=-1)
            metrics.reset()
            metrics.update(proba[:, 1] if n_classes == 2 else proba, y_val)
            scores = {k: float(v) for k, v in metrics.compute().items()}
            return {"val_loss": float(total / norm.clamp_min(1e-12)), **scores}

        result = train_loop(model, opt, step, n=len(train_ids), config=loop_cfg, validate=validate, progress=progress)
    history = [{"epoch": int(r["epoch"]) - 1, "train_loss": r["loss"], **{k: v for k, v in r.items() if k.startswith("val_")}}
               for r in result.history]
    return TrainedABMIL(model=model, best_epoch=result.best_epoch - 1, history=history)


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
    store: BagStore | PackedBags,
    *,
    config: ABMILConfig = ABMILConfig(),
    encoder: str = "features",
    progress: Reporter | None = None,
) -> tuple[EncoderScores, list[SlidePrediction]]:
    """K-fold AB-MIL over ``labels`` with bags from ``store``; per-fold metrics and test predictions."""
    from hagekit.bench.downstream.abmil.model import predict_bag

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
                store, LabelledBags([ids[i] for i in tr], labels.labels[tr]),
                LabelledBags([ids[i] for i in va], labels.labels[va]), n_classes=n_classes, in_dim=in_dim, config=config, seed=trial_seed(config.seed, "abmil", k),
                progress=progress,
            )
            probas = []
            for i in te:
                feats, coords = store.get(ids[i])
                p, a = predict_bag(trained.model, feats, device=str(next(trained.model.parameters()).device))
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
