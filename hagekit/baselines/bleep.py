"""``bleep``: BLEEP (Xie et al., NeurIPS 2023) on frozen image features.

Published choices, from bowang-lab/BLEEP (``config.py``, ``modules.py``, ``models.py``,
``BLEEP_inference.ipynb``): projection heads Linear -> GELU -> Linear -> dropout(0.1) ->
residual -> LayerNorm into 256 dimensions; temperature 1.0; CLIP loss with *soft* targets
``softmax((sim_image + sim_spot) / 2 * temperature)`` built from the within-modality
similarities; AdamW at lr 1e-3, weight decay 1e-3, batch 256 (``BLEEP_main.py``). Inference: cosine top-k
(k = 50) reference spots, prediction = plain average of their expression (the notebook's
``"average"``; ``weighting="bleep_exp"`` is its ``weighted_average``). The image encoder is
frozen here (features from ``hagekit extract``), so only the projection heads train, on
standardised features; BLEEP keeps the epoch with the best validation loss, we keep the one
with the best validation retrieval PCC (the metric reported).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np

from hagekit.baselines._common import (
    WEIGHTINGS,
    Standardizer,
    check_fit_inputs,
    check_predict_input,
    params_of,
    resolve_device,
    retrieve_expression,
    save_arrays,
    seed_everything,
)
from hagekit.errors import ConfigError
from hagekit.progress import Reporter, reporter_or_null

__all__ = ["BLEEPRegressor", "ProjectionHead", "bleep_loss"]

log = logging.getLogger(__name__)


def ProjectionHead(d_in: int, d_out: int = 256, dropout: float = 0.1) -> Any:  # noqa: N802
    """BLEEP's projection head (also used by mclSTExp)."""
    from torch import nn

    class _Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.projection = nn.Linear(d_in, d_out)
            self.gelu = nn.GELU()
            self.fc = nn.Linear(d_out, d_out)
            self.dropout = nn.Dropout(dropout)
            self.layer_norm = nn.LayerNorm(d_out)

        def forward(self, x: Any) -> Any:
            projected = self.projection(x)
            h = self.dropout(self.fc(self.gelu(projected)))
            return self.layer_norm(h + projected)

    return _Head()


def bleep_loss(img: Any, spot: Any, temperature: float = 1.0) -> Any:
    """BLEEP's symmetric CLIP loss with soft targets from within-modality similarities."""
    import torch.nn.functional as F

    logits = spot @ img.T / temperature
    targets = F.softmax((img @ img.T + spot @ spot.T) / 2 * temperature, dim=-1)
    spots_loss = -(targets * F.log_softmax(logits, dim=-1)).sum(1)
    images_loss = -(targets.T * F.log_softmax(logits.T, dim=-1)).sum(1)
    return ((spots_loss + images_loss) / 2.0).mean()


def _val_pcc(pred: np.ndarray, truth: np.ndarray) -> float:
    from hagekit.metrics import pearson_per_gene

    r, _, _ = pearson_per_gene(truth, pred)
    return float(np.nanmean(r)) if np.isfinite(r).any() else 0.0


class BLEEPRegressor:
    """Image/expression projection heads aligned contrastively; top-k retrieval at inference."""

    _PARAMS = (
        "projection_dim",
        "dropout",
        "temperature",
        "lr",
        "weight_decay",
        "epochs",
        "batch_size",
        "top_k",
        "weighting",
        "patience",
        "device",
        "random_state",
    )

    def __init__(
        self,
        *,
        projection_dim: int = 256,
        dropout: float = 0.1,
        temperature: float = 1.0,
        lr: float = 1e-3,
        weight_decay: float = 1e-3,
        epochs: int = 50,
        batch_size: int = 256,
        top_k: int = 50,
        weighting: str = "average",
        patience: int = 5,
        device: str = "auto",
        random_state: int = 0,
    ) -> None:
        self.projection_dim = projection_dim
        self.dropout = dropout
        self.temperature = temperature
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.top_k = top_k
        self.weighting = weighting
        self.patience = patience
        self.device = device
        self.random_state = random_state

    def fit(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        *,
        X_val: np.ndarray | None = None,
        Y_val: np.ndarray | None = None,
        spatial: np.ndarray | None = None,
        spatial_val: np.ndarray | None = None,
        groups: np.ndarray | None = None,
        progress: Reporter | None = None,
    ) -> BLEEPRegressor:
        import torch
        from torch import nn

        X, Y = check_fit_inputs("bleep", X, Y)
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"bleep weighting: unknown {self.weighting!r} (choose from {', '.join(WEIGHTINGS)})")
        gen = seed_everything(self.random_state)
        dev = resolve_device(self.device)
        self.device_ = dev
        self._scaler = Standardizer().fit(X)
        Xt = torch.from_numpy(self._scaler.transform(X)).to(dev)
        Yt = torch.from_numpy(Y).to(dev)
        has_val = X_val is not None and Y_val is not None and len(X_val) > 0
        if has_val:
            Xv, Yv = check_fit_inputs("bleep (validation)", X_val, Y_val)
            Xv_t = torch.from_numpy(self._scaler.transform(Xv)).to(dev)
        model = nn.ModuleDict(
            {
                "image": ProjectionHead(X.shape[1], int(self.projection_dim), float(self.dropout)),
                "spot": ProjectionHead(Y.shape[1], int(self.projection_dim), float(self.dropout)),
            }
        ).to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=float(self.lr), weight_decay=float(self.weight_decay))
        n = Xt.shape[0]
        bs = max(2, min(int(self.batch_size), n))
        best, best_state, bad = -float("inf"), None, 0
        self.history_: list[float] = []
        task = reporter_or_null(progress).task("bleep epochs", total=int(self.epochs))
        for epoch in range(int(self.epochs)):
            model.train()
            perm = torch.randperm(n, generator=gen).to(dev)
            total = 0.0
            for start in range(0, n, bs):
                idx = perm[start : start + bs]
                if len(idx) < 2:
                    continue
                loss = bleep_loss(model["image"](Xt[idx]), model["spot"](Yt[idx]), float(self.temperature))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            if has_val:
                model.eval()
                keys = self._embed(model["spot"], Yt)
                with torch.inference_mode():
                    q = model["image"](Xv_t)
                pred = retrieve_expression(q, keys, Yt, top_k=int(self.top_k), weighting=self.weighting)
                score = _val_pcc(pred, Yv)
                self.history_.append(score)
                task.advance(1, status=f"val pcc {score:.3f}")
                if score > best + 1e-5:
                    best, best_state, bad = score, copy.deepcopy(model.state_dict()), 0
                else:
                    bad += 1
                    if bad >= int(self.patience):
                        log.info("bleep: early stop at epoch %d (best val pcc %.3f)", epoch + 1, best)
                        break
            else:
                self.history_.append(total / n)
                task.advance(1, status=f"loss {total / n:.3f}")
        task.close()
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        self.model_ = model
        self.keys_ = self._embed(model["spot"], Yt)
        self.values_ = Yt
        self.n_features_in_ = X.shape[1]
        return self

    @staticmethod
    def _embed(head: Any, x: Any) -> Any:
        import torch

        head.eval()
        with torch.inference_mode():
            return torch.cat([head(x[i : i + 4096]) for i in range(0, len(x), 4096)])

    def predict(self, X: np.ndarray, *, spatial: np.ndarray | None = None) -> np.ndarray:
        import torch

        X = check_predict_input("bleep", X, getattr(self, "n_features_in_", None))
        q = self._embed(self.model_["image"], torch.from_numpy(self._scaler.transform(X)).to(self.device_))
        return retrieve_expression(q, self.keys_, self.values_, top_k=int(self.top_k), weighting=self.weighting)

    def get_params(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in self._PARAMS}

    def save(self, out_dir: Path | str) -> Path:
        """Write ``params.json`` + ``model.safetensors`` (heads, scaler, reference keys/values)."""
        arrays = {f"model.{k}": v.detach().cpu().numpy() for k, v in self.model_.state_dict().items()}
        arrays.update(
            scaler_mean=self._scaler.mean_.astype(np.float32),
            scaler_scale=self._scaler.scale_.astype(np.float32),
            reference_keys=self.keys_.cpu().numpy(),
            reference_values=self.values_.cpu().numpy(),
        )
        return save_arrays(out_dir, params_of(self, self._PARAMS), arrays)
