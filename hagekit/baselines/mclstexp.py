"""``mclstexp``: mclSTExp (Min et al., 2024) on frozen image features.

Published choices, from ZhicengShi/mclSTExp (``model.py``: ``mclSTExp_Attention``,
``train.py``, ``evel_her2st.py``): each spot is a "word": its expression vector (width = the
panel) plus learned x and y position embeddings (``nn.Embedding`` over array coordinates)
goes through 2 pre-norm self-attention blocks (8 heads x 64, MLP width = panel) *across the
spots of the batch* (the "sentence"), then BLEEP's projection head to 256; the image side is
a projection head on the image features. Loss: symmetric CLIP with identity targets,
temperature 1.0. Adam lr 1e-4, weight decay 1e-3, batch 128, 90 epochs. Inference: the
training spots are encoded in consecutive batches; for each test image embedding, the
top-k (k = 200) cosine-nearest reference spots are averaged with weights ``1 / L1^2``
(normalised), L1 on the unnormalised embeddings. Images are frozen features here, and we
keep the epoch with the best validation retrieval PCC (mclSTExp trains a fixed 90 epochs).
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
from hagekit.baselines.bleep import ProjectionHead, _val_pcc
from hagekit.errors import ConfigError, DataError
from hagekit.progress import Reporter, reporter_or_null

__all__ = ["MclSTExpRegressor", "grid_positions", "clip_loss"]

log = logging.getLogger(__name__)


def grid_positions(spatial: np.ndarray, *, pitch: float | None = None) -> tuple[np.ndarray, float]:
    """Turn spot positions into non-negative integer grid indices for the position embeddings.

    Integer array coordinates (ST/Visium ``array_x/array_y``) are used as they are; pixel
    positions are divided by the spot pitch (median nearest-neighbour distance) and rounded.
    Returns ``(indices (N, 2) int64, pitch)``.
    """
    s = np.asarray(spatial, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != 2 or not np.isfinite(s).all():
        raise DataError(f"mclstexp: spatial must be finite (N, 2) positions, got shape {s.shape}")
    if pitch is None:
        if np.allclose(s, np.round(s)) and s.min() >= 0 and s.max() < 1024:
            pitch = 1.0
        else:
            from scipy.spatial import cKDTree

            if len(s) < 2:
                pitch = 1.0
            else:
                d, _ = cKDTree(s).query(s, k=2)
                nn = d[:, 1][d[:, 1] > 0]
                pitch = float(np.median(nn)) if len(nn) else 1.0
    idx = np.round(s / pitch).astype(np.int64)
    return np.clip(idx, 0, None), float(pitch)


def clip_loss(img: Any, spot: Any, temperature: float = 1.0) -> Any:
    """Symmetric CLIP loss with identity targets (mclSTExp's ``cross_entropy`` on eye)."""
    import torch
    import torch.nn.functional as F

    logits = spot @ img.T / temperature
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2.0


def _spot_encoder(n_genes: int, n_pos: int, heads: int, dim_head: int, layers: int, proj: int, dropout: float) -> Any:
    from torch import nn

    class _Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            inner = heads * dim_head
            self.heads = heads
            self.scale = dim_head**-0.5
            self.norm = nn.LayerNorm(n_genes)
            self.to_qkv = nn.Linear(n_genes, inner * 3, bias=False)
            self.to_out = nn.Linear(inner, n_genes)

        def forward(self, x: Any) -> Any:  # x: (n, G), attention across the n spots
            n = x.shape[0]
            q, k, v = self.to_qkv(self.norm(x)).chunk(3, dim=-1)
            q, k, v = (t.reshape(n, self.heads, -1).transpose(0, 1) for t in (q, k, v))
            attn = (q @ k.transpose(-1, -2) * self.scale).softmax(dim=-1)
            out = (attn @ v).transpose(0, 1).reshape(n, -1)
            return self.to_out(out)

    class _Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = _Attention()
            self.ff_norm = nn.LayerNorm(n_genes)
            self.ff = nn.Sequential(
                nn.Linear(n_genes, n_genes), nn.GELU(), nn.Dropout(dropout),
                nn.Linear(n_genes, n_genes), nn.Dropout(dropout),
            )

        def forward(self, x: Any) -> Any:
            x = self.attn(x) + x
            return self.ff(self.ff_norm(x)) + x

    class _SpotEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.x_embed = nn.Embedding(n_pos, n_genes)
            self.y_embed = nn.Embedding(n_pos, n_genes)
            self.blocks = nn.Sequential(*[_Block() for _ in range(layers)])
            self.projection = ProjectionHead(n_genes, proj, dropout)

        def forward(self, expr: Any, pos: Any) -> Any:
            pos = pos.clamp(0, self.x_embed.num_embeddings - 1)
            h = expr + self.x_embed(pos[:, 0]) + self.y_embed(pos[:, 1])
            return self.projection(self.blocks(h))

    return _SpotEncoder()


class MclSTExpRegressor:
    """Spot transformer (expression + position) vs image head, CLIP; weighted top-k retrieval."""

    _PARAMS = (
        "projection_dim",
        "heads",
        "dim_head",
        "layers",
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
        heads: int = 8,
        dim_head: int = 64,
        layers: int = 2,
        dropout: float = 0.0,
        temperature: float = 1.0,
        lr: float = 1e-4,
        weight_decay: float = 1e-3,
        epochs: int = 90,
        batch_size: int = 128,
        top_k: int = 200,
        weighting: str = "inverse_l1_sq",
        patience: int = 10,
        device: str = "auto",
        random_state: int = 0,
    ) -> None:
        self.projection_dim = projection_dim
        self.heads = heads
        self.dim_head = dim_head
        self.layers = layers
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
    ) -> MclSTExpRegressor:
        import torch
        from torch import nn

        X, Y = check_fit_inputs("mclstexp", X, Y)
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"mclstexp weighting: unknown {self.weighting!r} (choose from {', '.join(WEIGHTINGS)})")
        if spatial is None:
            log.warning("mclstexp: no spot positions given; position embeddings are unused")
            pos = np.zeros((X.shape[0], 2), dtype=np.int64)
            self.pitch_ = 1.0
        else:
            if len(spatial) != X.shape[0]:
                raise DataError(f"mclstexp: spatial has {len(spatial)} rows for {X.shape[0]} spots")
            pos, self.pitch_ = grid_positions(spatial)
        gen = seed_everything(self.random_state)
        dev = resolve_device(self.device)
        self.device_ = dev
        self.n_positions_ = int(pos.max()) + 1
        self._scaler = Standardizer().fit(X)
        Xt = torch.from_numpy(self._scaler.transform(X)).to(dev)
        Yt = torch.from_numpy(Y).to(dev)
        Pt = torch.from_numpy(pos).to(dev)
        has_val = X_val is not None and Y_val is not None and len(X_val) > 0
        if has_val:
            Xv, Yv = check_fit_inputs("mclstexp (validation)", X_val, Y_val)
            Xv_t = torch.from_numpy(self._scaler.transform(Xv)).to(dev)
        G = Y.shape[1]
        model = nn.ModuleDict(
            {
                "image": ProjectionHead(X.shape[1], int(self.projection_dim), float(self.dropout)),
                "spot": _spot_encoder(G, self.n_positions_, int(self.heads), int(self.dim_head),
                                      int(self.layers), int(self.projection_dim), float(self.dropout)),
            }
        ).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=float(self.lr), weight_decay=float(self.weight_decay))
        n = Xt.shape[0]
        bs = max(2, min(int(self.batch_size), n))
        best, best_state, bad = -float("inf"), None, 0
        self.history_: list[float] = []
        task = reporter_or_null(progress).task("mclstexp epochs", total=int(self.epochs))
        for epoch in range(int(self.epochs)):
            model.train()
            perm = torch.randperm(n, generator=gen).to(dev)
            total = 0.0
            for start in range(0, n, bs):
                idx = perm[start : start + bs]
                if len(idx) < 2:
                    continue
                loss = clip_loss(model["image"](Xt[idx]), model["spot"](Yt[idx], Pt[idx]), float(self.temperature))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            if has_val:
                keys = self._encode_reference(model["spot"], Yt, Pt, bs)
                model.eval()
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
                        log.info("mclstexp: early stop at epoch %d (best val pcc %.3f)", epoch + 1, best)
                        break
            else:
                self.history_.append(total / n)
                task.advance(1, status=f"loss {total / n:.3f}")
        task.close()
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        self.model_ = model
        self.keys_ = self._encode_reference(model["spot"], Yt, Pt, bs)
        self.values_ = Yt
        self.n_features_in_ = X.shape[1]
        return self

    @staticmethod
    def _encode_reference(encoder: Any, Y: Any, P: Any, batch: int) -> Any:
        """Embed the reference spots in consecutive batches (as mclSTExp's evaluation does)."""
        import torch

        encoder.eval()
        with torch.inference_mode():
            return torch.cat([encoder(Y[i : i + batch], P[i : i + batch]) for i in range(0, len(Y), batch)])

    def predict(self, X: np.ndarray, *, spatial: np.ndarray | None = None) -> np.ndarray:
        """Retrieve from the training spots by image embedding (positions are not needed)."""
        import torch

        X = check_predict_input("mclstexp", X, getattr(self, "n_features_in_", None))
        head = self.model_["image"]
        with torch.inference_mode():
            xt = torch.from_numpy(self._scaler.transform(X)).to(self.device_)
            q = torch.cat([head(xt[i : i + 4096]) for i in range(0, len(xt), 4096)])
        return retrieve_expression(q, self.keys_, self.values_, top_k=int(self.top_k), weighting=self.weighting)

    def get_params(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in self._PARAMS}

    def save(self, out_dir: Path | str) -> Path:
        """Write ``params.json`` + ``model.safetensors`` (weights, scaler, reference keys/values)."""
        arrays = {f"model.{k}": v.detach().cpu().numpy() for k, v in self.model_.state_dict().items()}
        arrays.update(
            scaler_mean=self._scaler.mean_.astype(np.float32),
            scaler_scale=self._scaler.scale_.astype(np.float32),
            reference_keys=self.keys_.cpu().numpy(),
            reference_values=self.values_.cpu().numpy(),
        )
        params = {**params_of(self, self._PARAMS), "pitch_": self.pitch_, "n_positions_": self.n_positions_}
        return save_arrays(out_dir, params, arrays)
