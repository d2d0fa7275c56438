"""HAGE on the shared training loop: Adam + StepLR or warmup schedule, early stopping on validation PCC.

HAGE supplies only its step (the loss of eq. 3 on a batch of spots; the fixed hierarchy labels
are attached to the model, which looks them up by the batch's indices), the centroid-bank
refresh at each epoch start (``centroids`` "memory"/"epoch") and its validation score (mean per-gene PCC on the validation spots,
:func:`hagekit.metrics.device.mean_gene_pcc` on the device); :func:`hagekit.learn.loop.train_loop`
does the batching, budget, early stopping, progress and history. Training data live on the
device as tensors. A last batch of one spot is merged into the previous batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hagekit.learn.loop import LoopConfig, LoopHooks, LoopResult, predict_in_batches, train_loop
from hagekit.learn.torch_regressor import Batchable
from hagekit.progress import Reporter

if TYPE_CHECKING:
    import torch

    from hagekit.hage.model import HAGEConfig, HAGEModel

__all__ = ["fit_model", "predict_batches", "loop_config", "HAGEData"]


@dataclass
class HAGEData(Batchable):
    """What HAGE trains on: spots ``x`` (N, D) and ``y`` (N, G) on the device, validation
    ``x_val`` (tensor) and ``y_val`` (tensor or array), the fixed hierarchy ``labels`` (N,)
    with ``n_clusters`` sub-clusters, the feature statistics the model standardises with, and the
    spots the after-fit steps use."""

    labels: Any = None
    n_clusters: int = 0
    mean: Any = None
    std: Any = None
    check: tuple[np.ndarray, np.ndarray] | None = None
    """(X, Y) arrays the calibration and the collapse check use after the fit (validation spots when there are 2+)."""


def predict_batches(model: HAGEModel, x: torch.Tensor, *, batch_size: int = 4096) -> np.ndarray:
    """Predict (N, G) in evaluation mode, batch by batch, one ``.cpu()`` at the end."""
    was_training = model.training
    model.eval()
    if x.shape[0] == 0:
        return np.zeros((0, model.n_genes), dtype=np.float32)
    out = predict_in_batches(model, x, batch_size=batch_size).float().cpu().numpy()
    model.train(was_training)
    return out


def loop_config(config: HAGEConfig, *, seed: int = 0, description: str = "train",
                precision: str | None = "fp32") -> LoopConfig:
    """The loop settings a :class:`HAGEConfig` implies (epochs, min steps, batch, patience on val PCC)."""
    return LoopConfig(
        epochs=config.epochs,
        min_steps=config.min_steps,
        scheduler_interval="epoch" if config.schedule == "step" else "step",
        batch_size=config.batch_size,
        min_batch=2,
        merge_tail=True,
        monitor="val_pcc",
        mode="max",
        patience=config.patience,
        seed=seed,
        precision=precision,
        description=description,
    )


def fit_model(
    model: HAGEModel,
    data: HAGEData,
    *,
    config: HAGEConfig,
    seed: int = 0,
    progress: Reporter | None = None,
    description: str = "train",
    precision: str | None = "fp32",
) -> LoopResult:
    """Train ``model`` in place on ``data`` (tensors already on its device); the best weights are loaded.

    ``data.labels`` (N,) are the fixed hierarchy sub-cluster ids (attached to the model, which looks
    them up by the batch's indices); the LR schedule is the paper's StepLR per epoch
    (``schedule="step"``) or warmup + cosine/constant per step over the planned budget; ``data.y_val``
    (tensor or array) is compared with the predictions on ``data.x_val`` after every epoch.
    """
    import torch

    from hagekit.learn.loop import planned_steps, warmup_schedule
    from hagekit.metrics.device import mean_gene_pcc

    loop_cfg = loop_config(config, seed=seed, description=description, precision=precision)
    x, y, x_val, y_val = data.x, data.y, data.x_val, data.y_val
    n = int(x.shape[0])
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if config.schedule == "step":  # the paper: StepLR per epoch
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=config.step_size, gamma=config.gamma)
    else:  # linear warmup, then cosine or constant, per optimiser step over the planned budget
        sched = warmup_schedule(opt, warmup_steps=config.warmup_steps, total_steps=planned_steps(n, loop_cfg),
                                decay=config.schedule)
    if data.labels is not None and getattr(model, "hier_labels", None) is None:
        model.attach_hierarchy(data.labels, data.n_clusters)

    def step(idx: torch.Tensor) -> dict[str, torch.Tensor]:
        return model.losses(x[idx], y[idx], index=idx)

    validate = None
    if x_val is not None and y_val is not None and len(y_val):
        yv = torch.as_tensor(y_val, device=x_val.device)

        def validate() -> dict[str, float]:
            return {"val_pcc": mean_gene_pcc(predict_in_batches(model, x_val), yv)}

    hooks = LoopHooks(scheduler=sched, on_epoch_start=lambda epoch: model.start_epoch(x, y))  # whole-cluster centroid bank
    return train_loop(model, opt, step, n=n, validate=validate, hooks=hooks, progress=progress, config=loop_cfg)
