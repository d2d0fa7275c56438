"""HAGE model (paper section 2): GE image encoder, expression encoder, predictor and the loss of eq. 3.

:class:`HAGEConfig` holds every hyper-parameter with the paper's defaults; :class:`HAGEModel`
is the ``nn.Module``. Inference is ``y_hat = Pred(GE(x, G))``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hagekit.config import HAGE_SECTIONS, coerce_setting
from hagekit.errors import ConfigError
from hagekit.hage.expression import ExpressionEncoder, ExpressionPredictor
from hagekit.hage.gene_encoder import GeneInformedEncoder, MLPImageEncoder
from hagekit.hage.hierarchy import CENTROID_MODES, CentroidBank, batch_centroids
from hagekit.hage.losses import (
    CYCLIP_REDUCTIONS,
    clip_loss,
    cyclip_loss,
    mean_pairwise_cosine,
    pcc_loss,
)

__all__ = ["HAGEConfig", "GEHead", "HAGEModel", "LOSS_NAMES", "COLLAPSE_COSINE", "collapse_message"]

LOSS_NAMES = ("cyclip", "clip_local", "clip_global", "pcc")
SCHEDULES = ("step", "cosine", "constant")
CONTEXT_MODES = ("none", "mean")
COLLAPSE_COSINE = 0.5
"""Mean pairwise cosine of z^i or z^e above which a run counts as collapsed (all embeddings
pointing one way: the contrastive terms are at chance and the encoder carries little)."""


def collapse_message(zi_cos: float, ze_cos: float, *, threshold: float = COLLAPSE_COSINE) -> str | None:
    """One line when the final embeddings are collapsed (either mean cosine > threshold), else None."""
    if not (zi_cos > threshold or ze_cos > threshold):
        return None
    return (f"embeddings collapsed: mean pairwise cosine z^i {zi_cos:.2f}, z^e {ze_cos:.2f} (> {threshold}); "
            "the alignment terms are inert and an exported encoder would be too "
            "(try the default recipe, a higher --lr or --min-steps)")


@dataclass(frozen=True)
class HAGEConfig:
    """HAGE hyper-parameters. Defaults are the paper's (section 3.2) except where noted; the
    departures (d, lr, schedule, min_steps, cyclip_reduction, ...) make small datasets train
    without collapse and were chosen by nested validation (``hagekit bench tune``; README).
    ``--recipe paper`` (``hagekit/recipes/paper.toml``) restores the paper's literal settings."""

    d: int = 256
    """Embedding dimension of z^i and z^e (paper: 1024; 256 buys ~4x the optimiser steps at the same
    cost per fit, and scored as well by nested validation on HER2ST)."""
    n_heads: int = 4
    """Attention heads in GE (not stated in the paper; 4 heads of 64 at d=256)."""
    k1: int = 30
    """Expression clusters (first level)."""
    k2: int = 2
    """Image sub-clusters per expression cluster (second level)."""
    lambda_cyclip: float = 10.0
    cyclip_reduction: str = "mean"
    """"paper" divides eq. 1's sums over the N x N pairs by N (as written, and as CyCLIP's code);
    "mean" (default) divides by N^2, so the term does not grow with the batch size. With "paper"
    at batch 256 the x10 CyCLIP term outweighs CLIP ~2,500-fold and the embeddings collapse
    (mean cosine 0.99 on HER2ST even after 150 steps)."""
    cyclip_normalize: bool = True
    """Not in the paper: L2-normalise z^i, z^e before CyCLIP (cosines, as CyCLIP's paper and code);
    False: eq. 1's plain inner products."""
    lambda_clip_local: float = 1.0
    lambda_clip_global: float = 1.0
    lambda_pcc: float = 10.0
    temperature: float = 0.07
    """CLIP temperature (fixed, not learned)."""
    lr: float = 1e-3
    """Adam learning rate (paper: 1e-4, which with ~3 steps per epoch on ~600 spots barely moves)."""
    weight_decay: float = 1e-5
    step_size: int = 10
    """StepLR step, in epochs."""
    gamma: float = 0.5
    epochs: int = 15
    """15 on HER2+, 100 on cSCC."""
    min_steps: int = 150
    """Not in the paper (0 restores it): train at least this many optimiser steps (more epochs on small data);
    early stopping never stops before it."""
    schedule: str = "cosine"
    """LR schedule: "step" (the paper's StepLR every ``step_size`` epochs by ``gamma``), or linear
    warmup over ``warmup_steps`` then "cosine" (to 0) or "constant", per optimiser step."""
    warmup_steps: int = 10
    """Linear LR warmup steps (schedules "cosine"/"constant")."""
    patience: int = 5
    """Early stopping patience (epochs without a better validation PCC)."""
    batch_size: int = 128
    """Not stated in the paper; 128 (twice the optimiser steps per epoch of 256) scored higher by
    nested validation on HER2ST once dropout is on (docs/results.md) and still holds ~52 of 60
    equal-sized sub-clusters in an average batch, with 127 negatives per spot."""
    dropout: float = 0.4
    """Not in the paper (which states none): dropout on GE's attention weights and after every hidden
    layer of GE's MLP, the expression encoder and the predictor. ~600 training spots against ~1M parameters overfit
    within ~15 epochs; 0.4 was chosen by nested validation on HER2ST (scores: docs/results.md)."""
    standardize_features: bool = True
    """Z-score image features with training-set statistics (stored in the model)."""
    calibrate: bool = True
    """Not in the paper: the PCC loss is scale-free, so after training a per-gene affine map
    (least squares on the validation spots, slope >= 0) puts predictions on the target scale
    for MSE/MAE. PCC is unchanged by it."""
    use_ge: bool = True
    """False: plain MLP image encoder (Table 2, no GE)."""
    use_hierarchy: bool = True
    """False: no global (centroid) alignment (Table 2, no HA)."""
    single_level: bool = False
    """True: k1*k2 clusters on expression only (Table 2, single-level)."""
    centroids: str = "batch"
    """Which centroids the global CLIP term aligns: "batch" (members in the current batch),
    "memory" or "epoch" (whole sub-clusters, as section 2.3 defines them); see
    :mod:`hagekit.hage.hierarchy`."""
    context: str = "none"
    """Not in the paper: "mean" appends the mean image features of the spot's neighbours (same
    section, within ``context_radius`` spot pitches; never their expression) to its own before GE;
    "none" (default) is HAGE as published; nested validation on HER2ST: docs/context-methods.md."""
    context_radius: float = 1.5
    """Neighbourhood radius in spot pitches (1.5: the 8 surrounding ST spots, the 6 of Visium)."""

    def __post_init__(self) -> None:
        for name in ("d", "n_heads", "k1", "k2", "epochs", "batch_size", "step_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.patience < 0:
            raise ConfigError(f"patience: must be >= 0, got {self.patience}")
        if self.d % self.n_heads:
            raise ConfigError(f"d: {self.d} must be divisible by n_heads={self.n_heads}")
        for name, value in self.to_dict().items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{name}: must be a finite number, got {value}")
        if self.temperature <= 0:
            raise ConfigError(f"temperature: must be > 0, got {self.temperature}")
        if not 0 < self.lr <= 1:
            raise ConfigError(f"lr: must be in (0, 1] (Adam; the paper uses 1e-4), got {self.lr}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout: must be in [0, 1), got {self.dropout}")
        if self.cyclip_reduction not in CYCLIP_REDUCTIONS:
            raise ConfigError(
                f"cyclip_reduction: {self.cyclip_reduction!r} is not valid (valid: {', '.join(CYCLIP_REDUCTIONS)})"
            )
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule: {self.schedule!r} is not valid (valid: {', '.join(SCHEDULES)})")
        if self.min_steps < 0 or self.warmup_steps < 0:
            raise ConfigError(f"min_steps and warmup_steps must be >= 0, got {self.min_steps}, {self.warmup_steps}")
        if self.centroids not in CENTROID_MODES:
            raise ConfigError(f"centroids: {self.centroids!r} is not valid (valid: {', '.join(CENTROID_MODES)})")
        if self.context not in CONTEXT_MODES:
            raise ConfigError(f"context: {self.context!r} is not valid (valid: {', '.join(CONTEXT_MODES)})")
        if self.context_radius <= 0:
            raise ConfigError(f"context_radius: must be > 0 spot pitches, got {self.context_radius}")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size: must be >= 2 (contrastive losses), got {self.batch_size}")

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str = "config") -> HAGEConfig:
        """Build from a mapping, refusing unknown keys and coercing types to the defaults' types."""
        names = cls.field_names()
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ConfigError(f"{source}: unknown HAGE setting(s) {', '.join(unknown)} (valid: {', '.join(names)})")
        return cls().replace(**dict(values), _source=source)

    def replace(self, _source: str = "override", **changes: Any) -> HAGEConfig:
        """A copy with ``changes`` applied (types coerced; ``None`` values ignored)."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        clean: dict[str, Any] = {}
        for key, value in changes.items():
            if value is None:
                continue
            if key not in defaults:
                raise ConfigError(f"{_source}: unknown HAGE setting {key!r} (valid: {', '.join(defaults)})")
            clean[key] = coerce_setting(key, value, type(defaults[key]), _source)
        return dataclasses.replace(self, **clean)

    def to_dict(self) -> dict[str, Any]:
        """The flat settings in field order: what ``config.json`` records (a run's identity)."""
        return dataclasses.asdict(self)

    def sections(self) -> dict[str, dict[str, Any]]:
        """The settings grouped as :data:`hagekit.config.HAGE_SECTIONS` (model, loss, optimiser,
        budget, data), as ``[hage.<section>]`` tables write them."""
        flat = self.to_dict()
        return {name: {k: flat[k] for k in keys} for name, keys in HAGE_SECTIONS.items()}


class GEHead(nn.Module):
    """The image half of HAGE: features (B, d_in) -> standardise -> GE (or the MLP ablation) -> z^i (B, d).

    Buffers hold the panel's gene embeddings (G, d_g) and the feature standardisation (mean, std
    over training spots). :class:`HAGEModel` is this head plus the expression encoder and the
    predictor; the ``ge:`` encoder loads just this half of a trained model (same state-dict keys).
    """

    def __init__(self, config: HAGEConfig, d_in: int, gene_embeddings: torch.Tensor) -> None:
        super().__init__()
        genes = torch.as_tensor(gene_embeddings, dtype=torch.float32)
        if genes.ndim != 2:
            raise ConfigError(f"gene embeddings must be (G, d_g), got shape {tuple(genes.shape)}")
        self.n_genes, self.d_gene = int(genes.shape[0]), int(genes.shape[1])
        self.d_in, self.dim = int(d_in), int(config.d)
        self.register_buffer("gene_embeddings", genes.clone())
        self.register_buffer("x_mean", torch.zeros(d_in))
        self.register_buffer("x_std", torch.ones(d_in))
        if config.use_ge:
            self.image_encoder: nn.Module = GeneInformedEncoder(
                d_in, self.d_gene, config.d, n_heads=config.n_heads, dropout=config.dropout
            )
        else:
            self.image_encoder = MLPImageEncoder(d_in, config.d, dropout=config.dropout)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """Image features (B, d_in) -> z^i (B, d)."""
        x = (x.float() - self.x_mean) / self.x_std
        return self.image_encoder(x, self.gene_embeddings)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.encode_image(features)


class HAGEModel(GEHead):
    """:class:`GEHead` (GE or MLP image encoder) + expression encoder + predictor, with the loss of eq. 3.

    Besides the head's buffers, a per-gene output calibration (scale, shift), so a saved state
    dict is self-contained.
    """

    def __init__(self, config: HAGEConfig, d_in: int, gene_embeddings: torch.Tensor) -> None:
        super().__init__(config, d_in, gene_embeddings)
        self.config = config
        self.register_buffer("out_scale", torch.ones(self.n_genes))
        self.register_buffer("out_shift", torch.zeros(self.n_genes))
        self.expression_encoder = ExpressionEncoder(self.n_genes, config.d, dropout=config.dropout)
        self.predictor = ExpressionPredictor(config.d, self.n_genes, dropout=config.dropout)

    def set_feature_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store the training features' mean and std (D,); std is floored at 1e-6."""
        self.x_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.x_std.copy_(torch.clamp(torch.as_tensor(std, dtype=torch.float32), min=1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted expression ``Pred(GE(x, G))`` (B, G), with the per-gene calibration applied."""
        return self.predictor(self.encode_image(x)) * self.out_scale + self.out_shift

    def set_calibration(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        """Store the per-gene output map ``y = raw * scale + shift`` (G,)."""
        self.out_scale.copy_(torch.as_tensor(scale, dtype=torch.float32))
        self.out_shift.copy_(torch.as_tensor(shift, dtype=torch.float32))

    def embedding_cosines(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Collapse diagnostics on spots (N, D), (N, G): mean pairwise cosine of z^i and z^e."""
        with torch.no_grad():
            return {"zi_cos": float(mean_pairwise_cosine(self.encode_image(x))),
                    "ze_cos": float(mean_pairwise_cosine(self.expression_encoder(y)))}

    def attach_hierarchy(self, labels: torch.Tensor | None, n_clusters: int) -> None:
        """Fix the training spots' sub-cluster ids (N,) for :meth:`losses` (``index`` lookups)
        and, for whole-cluster centroids, create the bank (filled by :meth:`start_epoch`)."""
        self.hier_labels = labels
        self.n_clusters = int(n_clusters) if labels is not None else 0
        use_bank = labels is not None and self.config.centroids != "batch" and self.config.use_hierarchy
        self.centroid_bank = CentroidBank(labels, n_clusters, self.config.centroids) if use_bank else None

    def start_epoch(self, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 4096) -> None:
        """Before each epoch, given all training spots (N, D), (N, G): (re)fill the centroid bank
        ("epoch": every epoch; "memory": once, then each step updates it). No-op otherwise."""
        bank = getattr(self, "centroid_bank", None)
        if bank is None or (bank.mode == "memory" and bank.bank is not None):
            return
        with torch.no_grad():
            parts = [
                (self.encode_image(x[s : s + batch_size]), self.expression_encoder(y[s : s + batch_size]))
                for s in range(0, x.shape[0], batch_size)
            ]
        bank.refresh(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))

    def losses(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        labels: torch.Tensor | None = None,
        n_clusters: int = 0,
        *,
        index: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The weighted loss of eq. 3 and its terms for one batch.

        Sub-cluster ids come from ``labels`` (B,) with ``n_clusters``, or from ``index`` (B,),
        the batch's rows in the training set, after :meth:`attach_hierarchy`; whole-cluster
        centroids (``memory``/``epoch``) need ``index``. Also returns the no-gradient
        diagnostics ``zi_cos``/``ze_cos``: the mean pairwise cosine of the batch's z^i and z^e
        (near 1 = collapsed embeddings, alignment terms inert).
        """
        c = self.config
        z_i = self.encode_image(x)
        z_e = self.expression_encoder(y)
        y_hat = self.predictor(z_i)
        terms = {
            "cyclip": cyclip_loss(z_i, z_e, normalize=c.cyclip_normalize, reduction=c.cyclip_reduction),
            "clip_local": clip_loss(z_i, z_e, temperature=c.temperature),
            "pcc": pcc_loss(y_hat, y),
        }
        bank = getattr(self, "centroid_bank", None)
        if labels is None and index is not None and getattr(self, "hier_labels", None) is not None:
            labels, n_clusters = self.hier_labels[index], self.n_clusters
        terms["clip_global"] = z_i.new_zeros(())
        if c.use_hierarchy and bank is not None:
            if bank.bank is None or index is None:
                raise RuntimeError("whole-cluster centroids need start_epoch() and the batch's index in losses()")
            c_i, c_e = bank.centroids(index, z_i, z_e)
            if self.training:
                bank.update(index, z_i, z_e)
            if len(c_i) > 1:
                terms["clip_global"] = clip_loss(c_i, c_e, temperature=c.temperature)
        elif c.use_hierarchy and labels is not None and n_clusters > 0:
            c_i, present = batch_centroids(z_i, labels, n_clusters)
            c_e, _ = batch_centroids(z_e, labels, n_clusters)
            if len(present) > 1:
                terms["clip_global"] = clip_loss(c_i, c_e, temperature=c.temperature)
        total = (
            c.lambda_cyclip * terms["cyclip"]
            + c.lambda_clip_local * terms["clip_local"]
            + c.lambda_clip_global * terms["clip_global"]
            + c.lambda_pcc * terms["pcc"]
        )
        return {"loss": total, **terms, "zi_cos": mean_pairwise_cosine(z_i), "ze_cos": mean_pairwise_cosine(z_e)}
