"""``triplex``: TRIPLEX (Chung et al., CVPR 2024) on frozen spot features.

Read from NEXGEM/TRIPLEX (``src/model/TRIPLEX/TRIPLEX.py``, ``module.py``). Three branches
see one spot at three scales and are fused:

- *target*: TRIPLEX fine-tunes a ResNet18 on the spot's patch and keeps its 7 x 7 feature map
  as 49 tokens; here the spot's frozen feature vector, projected, is one target token.
- *neighbour*: TRIPLEX cuts a larger field of view around the spot into a 5 x 5 grid of
  sub-patches, embeds each with a frozen encoder, and runs a transformer whose attention has a
  learned bias per relative grid offset (``attn_bias``), with a mask for empty cells. Here the
  grid cells are the spots themselves: the spot-grid window around the spot (``window``
  cells each side, on the section's integer spot grid: 3 x 3 by default, 5 x 5 with window 2), each cell holding that spot's
  projected frozen features, empty cells masked, the same offset-indexed attention bias.
- *global*: all spots of the section (frozen features) through one transformer block, TRIPLEX's
  APEG positional encoding (a depthwise 3 x 3 convolution over the features scattered on the
  spot grid, sampled back at the spots), then ``depth_global - 1`` blocks and a LayerNorm.
- *fusion*: the spot's global token queries the target tokens and, with the same cross-attention
  weights, the neighbour tokens; the two results are summed and normalised.

Loss (TRIPLEX's ``calculate_loss``): ``MSE(fused, y) + sum_b [(1-a) MSE(out_b, y) + a MSE(fused, out_b)]``
over the three branch heads (TRIPLEX: ``a = 0.3``; ``distill_alpha``, 0.6 here); every output is clamped at 0 (when the targets are
non-negative, as TRIPLEX's are). Ours differs: frozen features instead of a fine-tuned ResNet
(one target token, not 49), one input projection per branch (TRIPLEX's neighbour/global
embeddings already have the model width), head biases start at the gene means, a step is one
section (TRIPLEX: 128 spots, each with its slide's global tokens), early stopping on validation
PCC, Adam without TRIPLEX's ReduceLROnPlateau. Width, lr, window and ``distill_alpha`` are chosen
by nested validation (``bench tune --method triplex``: width 64, lr 3e-3, window 1, a 0.6; depths
1/2/2 for fusion/global/neighbour; TRIPLEX: width 512, depths 1/3/3).
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hagekit.baselines._sections import SectionBaseline, section_grid
from hagekit.errors import ConfigError
from hagekit.learn.estimator import hyperparameters
from hagekit.learn.param_checks import Interval

__all__ = ["TriplexRegressor", "neighbour_slots", "APEG", "triplex_loss"]


def neighbour_slots(grid: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The (2w+1)^2 grid cells around every spot, row-major by offset: ``(slots, present)``,
    both (N, (2w+1)^2); ``slots`` holds the spot index in each cell (the spot itself where the
    cell is empty, then ``present`` is False). The centre cell is always the spot itself."""
    n, w = len(grid), int(window)
    size = grid.max(axis=0) + 1 + 2 * w if n else np.array([1, 1])
    cell = np.full((int(size[1]), int(size[0])), -1, np.int64)
    cell[grid[:, 1] + w, grid[:, 0] + w] = np.arange(n)
    offsets = list(itertools.product(range(-w, w + 1), range(-w, w + 1)))  # (dy, dx)
    slots = np.stack([cell[grid[:, 1] + w + dy, grid[:, 0] + w + dx] for dy, dx in offsets], axis=1)
    slots[:, len(offsets) // 2] = np.arange(n)
    present = slots >= 0
    slots = np.where(present, slots, np.arange(n)[:, None])
    return slots, present


def _offset_bias_index(window: int) -> tuple[np.ndarray, int]:
    """TRIPLEX's attention-bias index: for every pair of cells of the (2w+1)^2 grid, the id of
    their absolute offset ``(|dy|, |dx|)``; returns ``(index (C, C), number of offsets)``."""
    side = 2 * int(window) + 1
    points = list(itertools.product(range(side), range(side)))
    ids: dict[tuple[int, int], int] = {}
    idx = [ids.setdefault((abs(a[0] - b[0]), abs(a[1] - b[1])), len(ids)) for a in points for b in points]
    return np.asarray(idx, np.int64).reshape(len(points), len(points)), len(ids)


class _Attention(nn.Module):
    """Multi-head (cross-)attention; optional per-offset bias (self-attention over the grid) and
    key mask (True = present)."""

    def __init__(self, dim: int, heads: int, dropout: float, window: int | None = None, cross: bool = False) -> None:
        super().__init__()
        self.heads, self.cross = heads, cross
        self.scale = (dim // heads) ** -0.5
        if cross:
            self.to_q = nn.Linear(dim, dim, bias=False)
            self.to_kv = nn.Linear(dim, dim * 2, bias=False)
        else:
            self.to_qkv = nn.Linear(dim, dim * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout))
        self.biases = None
        if window is not None:
            index, n_offsets = _offset_bias_index(window)
            self.biases = nn.Parameter(torch.zeros(heads, n_offsets))
            self.register_buffer("bias_index", torch.from_numpy(index), persistent=False)

    def forward(self, x: torch.Tensor, kv: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        b = x.shape[0]
        if self.cross:
            q, (k, v) = self.to_q(x), self.to_kv(kv).chunk(2, dim=-1)
        else:
            q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, t.shape[1], self.heads, -1).transpose(1, 2) for t in (q, k, v))
        qk = q @ k.transpose(-1, -2) * self.scale
        if self.biases is not None:
            qk = qk + self.biases[:, self.bias_index]
        if mask is not None:
            qk = qk.masked_fill(~mask[:, None, None, :], torch.finfo(qk.dtype).min)
        out = (qk.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, x.shape[1], -1)
        return self.to_out(out)


class _Block(nn.Module):
    """Pre-norm attention + feed-forward, both residual (TRIPLEX's TransformerEncoder/CrossEncoder
    layer; the cross variant normalises queries and keys with the same LayerNorm)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float, window: int | None = None,
                 cross: bool = False) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads, dropout, window, cross)
        self.ff_norm = nn.LayerNorm(dim)
        hidden = max(1, int(dim * mlp_ratio))
        self.ff = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim),
                                nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, kv: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        kv_n = self.norm(kv) if kv is not None else None
        x = self.attn(self.norm(x), kv_n, mask) + x
        return self.ff(self.ff_norm(x)) + x


class APEG(nn.Module):
    """TRIPLEX's positional encoding of the global tokens: scatter the (1, N, d) tokens onto the
    spot grid (cells shared by several spots average them), a depthwise k x k convolution, and
    sample the result back at the spots."""

    def __init__(self, dim: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)

    def forward(self, x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        _, n, c = x.shape
        w, h = int(grid[:, 0].max()) + 1, int(grid[:, 1].max()) + 1
        flat = grid[:, 1] * w + grid[:, 0]
        dense = torch.zeros(c, h * w, device=x.device, dtype=x.dtype).index_add_(1, flat, x[0].T)
        count = torch.zeros(h * w, device=x.device, dtype=x.dtype).index_add_(0, flat, torch.ones(n, device=x.device, dtype=x.dtype))
        dense = (dense / count.clamp_min(1.0)).reshape(1, c, h, w)
        out = self.proj(dense)[0]
        return out[:, grid[:, 1], grid[:, 0]].T[None]


class _Triplex(nn.Module):
    def __init__(self, d_in: int, n_genes: int, p: dict[str, Any]) -> None:
        super().__init__()
        d, heads = p["d_model"], p["heads"]
        self.target_in = nn.Linear(d_in, d)
        self.neighbour_in = nn.Linear(d_in, d)
        self.global_in = nn.Linear(d_in, d)
        self.neighbour = nn.ModuleList([_Block(d, heads, p["mlp_ratio_neighbour"], p["dropout_neighbour"], p["window"])
                                        for _ in range(p["depth_neighbour"])])
        self.neighbour_norm = nn.LayerNorm(d)
        self.global_first = _Block(d, heads, p["mlp_ratio_global"], p["dropout_global"])
        self.apeg = APEG(d, p["kernel_size"])
        self.global_rest = nn.ModuleList([_Block(d, heads, p["mlp_ratio_global"], p["dropout_global"])
                                          for _ in range(p["depth_global"] - 1)])
        self.global_norm = nn.LayerNorm(d)
        self.fusion = nn.ModuleList([_Block(d, heads, p["mlp_ratio_fusion"], p["dropout_fusion"], cross=True)
                                     for _ in range(p["depth_fusion"])])
        self.fusion_norm = nn.LayerNorm(d)
        self.fc, self.fc_target = nn.Linear(d, n_genes), nn.Linear(d, n_genes)
        self.fc_neighbour, self.fc_global = nn.Linear(d, n_genes), nn.Linear(d, n_genes)

    def encode_global(self, x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        g = self.global_first(self.global_in(x)[None])
        g = self.apeg(g, grid)
        for block in self.global_rest:
            g = block(g)
        return self.global_norm(g)[0]

    def fuse(self, g: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        q = g[:, None]
        for block in self.fusion:
            q = block(q, kv, mask)
        return q

    def forward(self, x: torch.Tensor, grid: torch.Tensor, slots: torch.Tensor, present: torch.Tensor,
                rows: torch.Tensor) -> dict[str, torch.Tensor]:
        g = self.encode_global(x, grid)[rows]
        t = self.target_in(x[rows])[:, None]
        nb = self.neighbour_in(x)[slots[rows]]  # project once, then gather the cells
        mask = present[rows]
        for block in self.neighbour:
            nb = block(nb, mask=mask)
        nb = self.neighbour_norm(nb)
        fused = self.fusion_norm((self.fuse(g, t) + self.fuse(g, nb, mask))[:, 0])
        return {"pred": self.fc(fused), "target": self.fc_target(t.mean(1)),
                "neighbour": self.fc_neighbour(nb.mean(1)), "global": self.fc_global(g)}


def triplex_loss(out: dict[str, torch.Tensor], y: torch.Tensor, alpha: float) -> dict[str, torch.Tensor]:
    """TRIPLEX's loss: fused MSE, plus per branch ``(1-alpha)`` supervised MSE and ``alpha``
    distillation MSE between the fused and the branch output (gradients reach both)."""
    fused = out["pred"]
    terms = {"mse": F.mse_loss(fused, y)}
    loss = terms["mse"]
    for name in ("target", "neighbour", "global"):
        sup, dist = F.mse_loss(out[name], y), F.mse_loss(fused, out[name])
        loss = loss + (1 - alpha) * sup + alpha * dist
        terms[f"mse_{name}"] = sup
    return {"loss": loss, **terms}


@hyperparameters(  # lr, d_model, window, distill_alpha: nested `bench tune --method triplex` (docs/context-models.md)
    d_model=64, heads=4, depth_fusion=1, depth_global=2, depth_neighbour=2, mlp_ratio_fusion=4.0,
    mlp_ratio_global=4.0, mlp_ratio_neighbour=1.0, dropout_fusion=0.2, dropout_global=0.1, dropout_neighbour=0.3,
    window=1, kernel_size=3, distill_alpha=0.6, lr=3e-3, weight_decay=1e-4, epochs=100, patience=10, device="auto",
    random_state=0,
)
class TriplexRegressor(SectionBaseline):
    """TRIPLEX's target / neighbour / global branches and fusion on frozen features."""

    method: ClassVar[str] = "triplex"
    param_constraints: ClassVar[dict[str, Any]] = {
        **{f"depth_{b}": Interval(1, integer=True) for b in ("fusion", "global", "neighbour")},
        **{f"mlp_ratio_{b}": Interval(0, low_open=True) for b in ("fusion", "global", "neighbour")},
        **{f"dropout_{b}": Interval(0, 1, high_open=True) for b in ("fusion", "global", "neighbour")},
        "window": Interval(1, integer=True), "kernel_size": Interval(1, integer=True),
        "distill_alpha": Interval(0, 1),
    }

    def _check_params(self) -> None:
        super()._check_params()
        if int(self.depth_global) < 2:
            raise ConfigError(f"triplex depth_global: APEG sits between the first block and the rest; need >= 2, got {self.depth_global}")
        if int(self.window) < 1 or int(self.kernel_size) < 1 or int(self.kernel_size) % 2 == 0:
            raise ConfigError(f"triplex: window must be >= 1 and kernel_size odd, got {self.window} and {self.kernel_size}")
        if not 0.0 <= float(self.distill_alpha) <= 1.0:
            raise ConfigError(f"triplex distill_alpha: must be in [0, 1], got {self.distill_alpha}")

    def _build(self, d_in: int, Y: np.ndarray) -> nn.Module:
        p = {k: v for k, v in self.get_params().items()}
        for k in ("d_model", "heads", "depth_fusion", "depth_global", "depth_neighbour", "window", "kernel_size"):
            p[k] = int(p[k])
        model = _Triplex(d_in, Y.shape[1], p)
        with torch.no_grad():  # heads start from the per-gene mean, so training learns the deviations
            for head in (model.fc, model.fc_target, model.fc_neighbour, model.fc_global):
                head.bias.copy_(torch.from_numpy(Y.mean(axis=0)))
        return model

    def _section_inputs(self, spatial: np.ndarray) -> dict[str, Any]:
        grid = section_grid(spatial)
        slots, present = neighbour_slots(grid, int(self.window))
        return {"grid": torch.from_numpy(grid), "slots": torch.from_numpy(slots), "present": torch.from_numpy(present)}

    def _section_forward(self, model: Any, x: Any, inputs: dict[str, Any], rows: Any) -> dict[str, Any]:
        out = model(x, inputs["grid"], inputs["slots"], inputs["present"], rows)
        if self.nonneg_:
            out = {k: v.clamp_min(0.0) for k, v in out.items()}
        return out

    def _loss_terms(self, out: dict[str, Any], y: Any) -> dict[str, Any]:
        return triplex_loss(out, y, float(self.distill_alpha))
