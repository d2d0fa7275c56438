"""``mlp``: a 3-layer MLP regressor on frozen features, trained with MSE.

The "simple foundation-model features + MLP" baseline: standardised inputs, two hidden
layers (ReLU, dropout), Adam, early stopping on the validation spots' MSE (best weights kept).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np

from hagekit.baselines._common import (
    Standardizer,
    check_fit_inputs,
    check_predict_input,
    params_of,
    resolve_device,
    save_arrays,
    seed_everything,
)
from hagekit.progress import Reporter, reporter_or_null

__all__ = ["MLPRegressor"]

log = logging.getLogger(__name__)


def _build(d_in: int, hidden: int, d_out: int, dropout: float) -> Any:
    from torch import nn

    return nn.Sequential(
        nn.Linear(d_in, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, d_out),
    )


class MLPRegressor:
    """Linear-ReLU-Linear-ReLU-Linear with MSE loss and validation early stopping."""

    _PARAMS = (
        "hidden",
        "dropout",
        "lr",
        "weight_decay",
        "epochs",
        "batch_size",
        "patience",
        "device",
        "random_state",
    )

    def __init__(
        self,
        *,
        hidden: int = 512,
        dropout: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        epochs: int = 100,
        batch_size: int = 256,
        patience: int = 10,
        device: str = "auto",
        random_state: int = 0,
    ) -> None:
        self.hidden = hidden
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
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
    ) -> MLPRegressor:
        import torch

        X, Y = check_fit_inputs("mlp", X, Y)
        gen = seed_everything(self.random_state)
        dev = resolve_device(self.device)
        self.device_ = dev
        self._scaler = Standardizer().fit(X)
        Xt = torch.from_numpy(self._scaler.transform(X)).to(dev)
        Yt = torch.from_numpy(Y).to(dev)
        has_val = X_val is not None and Y_val is not None and len(X_val) > 0
        if has_val:
            Xv, Yv = check_fit_inputs("mlp (validation)", X_val, Y_val)
            Xv_t = torch.from_numpy(self._scaler.transform(Xv)).to(dev)
            Yv_t = torch.from_numpy(Yv).to(dev)
        model = _build(X.shape[1], int(self.hidden), Y.shape[1], float(self.dropout))
        with torch.no_grad():  # start from the per-gene mean, so training learns the deviations
            model[-1].bias.copy_(torch.from_numpy(Y.mean(axis=0)))
        model = model.to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=float(self.lr), weight_decay=float(self.weight_decay))
        n = Xt.shape[0]
        bs = max(1, min(int(self.batch_size), n))
        best, best_state, bad = float("inf"), None, 0
        history: list[float] = []
        task = reporter_or_null(progress).task("mlp epochs", total=int(self.epochs))
        for epoch in range(int(self.epochs)):
            model.train()
            perm = torch.randperm(n, generator=gen).to(dev)
            total = 0.0
            for start in range(0, n, bs):
                idx = perm[start : start + bs]
                loss = torch.nn.functional.mse_loss(model(Xt[idx]), Yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            if has_val:
                model.eval()
                with torch.inference_mode():
                    val = float(torch.nn.functional.mse_loss(model(Xv_t), Yv_t))
                history.append(val)
                task.advance(1, status=f"val mse {val:.4f}")
                if val < best - 1e-6:
                    best, best_state, bad = val, copy.deepcopy(model.state_dict()), 0
                else:
                    bad += 1
                    if bad >= int(self.patience):
                        log.info("mlp: early stop at epoch %d (best val mse %.4f)", epoch + 1, best)
                        break
            else:
                history.append(total / n)
                task.advance(1, status=f"train mse {total / n:.4f}")
        task.close()
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        self.model_ = model
        self.history_ = history
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray, *, spatial: np.ndarray | None = None) -> np.ndarray:
        import torch

        X = check_predict_input("mlp", X, getattr(self, "n_features_in_", None))
        xt = torch.from_numpy(self._scaler.transform(X)).to(self.device_)
        with torch.inference_mode():
            out = torch.cat([self.model_(xt[i : i + 4096]) for i in range(0, len(xt), 4096)])
        return out.cpu().numpy().astype(np.float32)

    def get_params(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in self._PARAMS}

    def save(self, out_dir: Path | str) -> Path:
        """Write ``params.json`` + ``model.safetensors`` (weights and input scaler)."""
        arrays = {f"model.{k}": v.detach().cpu().numpy() for k, v in self.model_.state_dict().items()}
        arrays["scaler_mean"] = self._scaler.mean_.astype(np.float32)
        arrays["scaler_scale"] = self._scaler.scale_.astype(np.float32)
        return save_arrays(out_dir, params_of(self, self._PARAMS), arrays)
