"""The HAGE epoch loop: seeded shuffling, Adam + StepLR, early stopping on validation PCC.

Training data live on the device as tensors and are batched by slicing a seeded permutation
(no per-spot Python work). The best weights (highest mean validation PCC over genes) are
kept and returned; with no validation set the last epoch's weights are kept.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from hagekit.progress import Reporter, reporter_or_null

if TYPE_CHECKING:
    import torch

    from hagekit.hage.model import HAGEConfig, HAGEModel

__all__ = ["FitResult", "fit_model", "predict_batches", "mean_pcc"]

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    """Outcome of :func:`fit_model`: best weights, when they were reached, per-epoch history."""

    best_state: dict[str, Any]
    best_epoch: int
    best_val_pcc: float
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False


def mean_pcc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean Pearson r over genes (constant-truth genes excluded), as ``hagekit.metrics`` defines it."""
    from hagekit.metrics import pearson_per_gene

    r, _, _ = pearson_per_gene(y_true, y_pred)
    return float(np.nanmean(r)) if np.isfinite(r).any() else float("nan")


def predict_batches(model: HAGEModel, x: torch.Tensor, *, batch_size: int = 4096) -> np.ndarray:
    """Predict (N, G) in evaluation mode, batch by batch, one ``.cpu()`` per batch."""
    import torch

    was_training = model.training
    model.eval()
    outs = []
    with torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            outs.append(model(x[start : start + batch_size]).float().cpu().numpy())
    model.train(was_training)
    n_genes = model.n_genes
    return np.concatenate(outs, axis=0) if outs else np.zeros((0, n_genes), dtype=np.float32)


def fit_model(
    model: HAGEModel,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    config: HAGEConfig,
    labels: torch.Tensor | None = None,
    n_clusters: int = 0,
    x_val: torch.Tensor | None = None,
    y_val: np.ndarray | None = None,
    seed: int = 0,
    progress: Reporter | None = None,
    description: str = "train",
) -> FitResult:
    """Train ``model`` in place on (x, y) tensors already on its device; return the best state.

    ``labels`` (N,) are the fixed hierarchy sub-cluster ids; ``y_val`` is a numpy array
    compared with the predictions on ``x_val`` after every epoch.
    """
    import torch

    n = int(x.shape[0])
    bs = min(config.batch_size, n)
    n_batches = max(1, n // bs) if n % bs < 2 else n // bs + 1
    gen = torch.Generator().manual_seed(int(seed))
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=config.step_size, gamma=config.gamma)
    task = reporter_or_null(progress).task(description, total=config.epochs * n_batches, status="")
    history: list[dict[str, float]] = []
    best_state = _copy_state(model)
    best_pcc, best_epoch, since_best, stopped = -math.inf, 0, 0, False
    try:
        for epoch in range(1, config.epochs + 1):
            model.train()
            t0 = time.perf_counter()
            perm = torch.randperm(n, generator=gen).to(x.device)
            sums: dict[str, float] = {}
            steps = 0
            for b in range(n_batches):
                idx = perm[b * bs : (b + 1) * bs] if b < n_batches - 1 else perm[b * bs :]
                if idx.numel() < 2:
                    continue
                lab = labels[idx] if labels is not None else None
                terms = model.losses(x[idx], y[idx], lab, n_clusters)
                opt.zero_grad(set_to_none=True)
                terms["loss"].backward()
                opt.step()
                steps += 1
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                task.advance(1, status=f"ep {epoch}/{config.epochs} loss {sums['loss'] / steps:.3f}")
            sched.step()
            if x.device.type == "cuda":
                torch.cuda.synchronize(x.device)
            record = {"epoch": float(epoch), **{k: v / max(steps, 1) for k, v in sums.items()}}
            record["train_seconds"] = time.perf_counter() - t0
            record["lr"] = float(opt.param_groups[0]["lr"])
            if x_val is not None and y_val is not None and len(y_val):
                val_pcc = mean_pcc(y_val, predict_batches(model, x_val))
                record["val_pcc"] = val_pcc
                score = val_pcc if math.isfinite(val_pcc) else -math.inf
                if score > best_pcc or best_epoch == 0:
                    best_pcc, best_epoch, since_best = score, epoch, 0
                    best_state = _copy_state(model)
                else:
                    since_best += 1
            else:
                best_epoch, best_state = epoch, _copy_state(model)
            record["seconds"] = time.perf_counter() - t0
            history.append(record)
            status = f"ep {epoch}/{config.epochs} loss {record.get('loss', float('nan')):.3f}"
            if "val_pcc" in record:
                status += f" val PCC {record['val_pcc']:.3f} (best {best_pcc:.3f} @ {best_epoch})"
            task.update(status=status)
            log.debug("%s: %s", description, status)
            if config.patience and since_best >= config.patience:
                stopped = True
                task.update(completed=config.epochs * n_batches)
                log.info("%s: early stop at epoch %d (best val PCC %.4f at epoch %d)", description, epoch, best_pcc, best_epoch)
                break
    finally:
        task.close()
    model.load_state_dict(best_state)
    return FitResult(best_state, best_epoch, float(best_pcc) if best_pcc > -math.inf else float("nan"), history, stopped)


def _copy_state(model: torch.nn.Module) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
