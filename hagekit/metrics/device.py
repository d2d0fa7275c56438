"""On-device metrics (torchmetrics) for training and evaluation loops, one definition each.

:class:`GenePearson` is ``torchmetrics.PearsonCorrCoef(num_outputs=G)`` with the conventions of
:func:`hagekit.metrics.pearson_per_gene` on top: accumulated in float64 on the tensors'
device, a gene whose truth is constant gives NaN (excluded from the mean), a gene whose
prediction is constant gives 0. :func:`mean_gene_pcc` is the validation score HAGE and the
baselines stop on; :func:`classification_metrics` is the accuracy / AUROC / recall set for
linear probes and AB-MIL. Importing this module imports torch and torchmetrics.
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import AUROC, Accuracy, Recall
from torchmetrics.regression import PearsonCorrCoef
from torchmetrics.regression.pearson import _final_aggregation

from hagekit.metrics import CONSTANT_EPS

__all__ = ["GenePearson", "gene_pcc", "mean_gene_pcc", "classification_metrics"]


class GenePearson(PearsonCorrCoef):
    """Per-gene Pearson r over spots, streamed batch by batch: ``update(pred, truth)``, ``compute() -> (G,)``.

    ``compute_with_masks()`` also returns the constant-truth and constant-prediction masks.
    """

    def __init__(self, num_outputs: int, **kwargs: Any) -> None:
        # Each rank owns whole (fold, trial) tasks: never merge other ranks' validation data
        # (torchmetrics would all-gather on every compute() whenever a process group exists).
        kwargs.setdefault("sync_on_compute", False)
        super().__init__(num_outputs=num_outputs, **kwargs)
        self.add_state("abs_max_x", default=torch.zeros(num_outputs), dist_reduce_fx="max")
        self.add_state("abs_max_y", default=torch.zeros(num_outputs), dist_reduce_fx="max")
        self.set_dtype(torch.float64)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        preds, target = preds.detach().to(torch.float64), target.detach().to(torch.float64)
        super().update(preds, target)
        self.abs_max_x = torch.maximum(self.abs_max_x, preds.abs().amax(dim=0))
        self.abs_max_y = torch.maximum(self.abs_max_y, target.abs().amax(dim=0))

    def compute_with_masks(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(r, truth_constant, prediction_constant)`` as :func:`hagekit.metrics.pearson_per_gene`."""
        var_x, var_y, cov, n = self.var_x, self.var_y, self.corr_xy, self.n_total
        if self.mean_x.ndim > 1:  # states gathered from several processes
            _, _, _, _, var_x, var_y, cov, n = _final_aggregation(
                self.mean_x, self.mean_y, self.max_abs_dev_x, self.max_abs_dev_y, var_x, var_y, cov, n
            )
        # var_* are sums of squared deviations, cov the sum of co-deviations (not divided by n).
        pn, tn = var_x.clamp_min(0).sqrt(), var_y.clamp_min(0).sqrt()
        root_n = n.clamp_min(1).sqrt()
        true_const = tn <= CONSTANT_EPS * self.abs_max_y.clamp_min(1.0) * root_n
        pred_const = pn <= CONSTANT_EPS * self.abs_max_x.clamp_min(1.0) * root_n
        r = (cov / (tn * pn)).clamp(-1.0, 1.0)
        r = torch.where(pred_const, torch.zeros_like(r), r)
        r = torch.where(true_const, torch.full_like(r, float("nan")), r)
        return r, true_const, pred_const & ~true_const

    def compute(self) -> torch.Tensor:
        return self.compute_with_masks()[0]


def gene_pcc(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-gene r (G,) of one (N, G) pair, on their device (constant truth -> NaN)."""
    metric = GenePearson(int(truth.shape[1])).to(truth.device)
    metric.update(pred, truth)
    return metric.compute()


def mean_gene_pcc(pred: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean r over genes whose truth varies (NaN when none does): the validation score."""
    r = gene_pcc(pred, truth)
    finite = torch.isfinite(r)
    return float(r[finite].mean()) if bool(finite.any()) else float("nan")


def classification_metrics(num_classes: int, *, prefix: str = "") -> MetricCollection:
    """Accuracy (micro), AUROC and recall (macro over classes); binary when ``num_classes`` is 2.

    ``update(probs, labels)`` with probabilities (N, C) (binary: (N,) positive-class
    probabilities) and integer labels (N,); ``compute()`` gives floats keyed ``accuracy``,
    ``auroc``, ``recall`` (with ``prefix``).
    """
    local = {"sync_on_compute": False}  # each rank owns whole tasks (see GenePearson)
    if num_classes == 2:
        metrics = {"accuracy": Accuracy(task="binary", **local), "auroc": AUROC(task="binary", **local),
                   "recall": Recall(task="binary", **local)}
    else:
        kw = {"task": "multiclass", "num_classes": int(num_classes), **local}
        metrics = {"accuracy": Accuracy(**kw, average="micro"), "auroc": AUROC(**kw, average="macro"),
                   "recall": Recall(**kw, average="macro")}
    return MetricCollection(metrics, prefix=prefix or None)
