"""Baselines that see a whole section at once (TRIPLEX, HisToGene, Hist2ST on frozen features).

:class:`SectionBaseline` does what the three share. A section's spots are one sequence: the
model reads every spot's (standardised) features and grid position, and predicts all of them.
Training steps run over sections (``groups``), the loss on the section's training spots; its
validation spots stay in the sequence as *context* (features and positions only, never their
expression) and are scored after every epoch (early stopping on validation PCC). When the
caller gives ``groups_val`` (the section of each validation spot) the validation spots join
their sections; without it a seeded ``val_fraction`` of the training spots is held out instead.
At prediction the given spots are one section. Sections larger than ``max_spots`` are cut into
spatially contiguous tiles (row-major blocks of the grid), so a 50,000-spot Visium HD section
never builds a 50,000 x 50,000 attention matrix.

A subclass supplies ``_section_inputs`` (positions -> the tensors its model needs: grid
indices, neighbour slots, adjacency), ``_build``, ``_section_forward`` and ``_loss_terms``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hagekit.errors import ConfigError, DataError
from hagekit.learn.estimator import check_predict_input, read_estimator_meta
from hagekit.learn.param_checks import Interval
from hagekit.learn.standardize import Standardizer
from hagekit.learn.torch_regressor import TorchRegressor

__all__ = ["SectionBaseline", "SectionData", "section_grid", "tiles"]

log = logging.getLogger(__name__)


def section_grid(spatial: np.ndarray) -> np.ndarray:
    """Integer grid indices (N, 2) of one section's spots, shifted so the smallest is 0.

    Integer array coordinates are kept; pixel positions are divided by the spot pitch (the
    median nearest-neighbour distance) and rounded, as :func:`hagekit.baselines.mclstexp.grid_positions`.
    """
    from hagekit.baselines.mclstexp import grid_positions

    s = np.asarray(spatial, dtype=np.float64)
    if len(s) and np.allclose(s, np.round(s)) and np.ptp(s, axis=0).max() < 1024:
        idx = np.round(s).astype(np.int64)
    else:
        idx, _ = grid_positions(s - s.min(axis=0) if len(s) else s)
    return idx - idx.min(axis=0) if len(idx) else idx


def tiles(grid: np.ndarray, max_spots: int) -> list[np.ndarray]:
    """Row indices of spatially contiguous tiles of at most ``max_spots`` spots (one tile when
    the section is small): spots sorted row-major by grid position, cut into equal blocks."""
    n = len(grid)
    if n <= max_spots:
        return [np.arange(n)]
    order = np.lexsort((grid[:, 0], grid[:, 1]))
    n_tiles = -(-n // max_spots)
    return [np.sort(part) for part in np.array_split(order, n_tiles)]


@dataclass
class SectionData:
    """One section (or tile) on the device: rows into the stacked arrays, the model's
    position inputs, and which rows train (``train``) and which validate (``val``)."""

    rows: Any
    inputs: dict[str, Any]
    train: Any = None
    val: Any = None
    val_rows: Any = None  # positions of the validation rows in the validation arrays


@dataclass
class _Stacked:
    """Everything a fit iterates over: the sections and the stacked feature/target tensors."""

    x: Any
    y: Any
    sections: list[SectionData] = field(default_factory=list)
    y_val: Any = None
    trainable: list[int] = field(default_factory=list)  # sections with training spots: the loop's items

    def __len__(self) -> int:
        """The loop's items: the sections with training spots."""
        return len(self.trainable)

    @property
    def has_val(self) -> bool:
        """Whether some spots validate (early stopping on them)."""
        return self.y_val is not None


class SectionBaseline(TorchRegressor):
    """Template for section-sequence baselines (see the module docstring)."""

    monitor: ClassVar[str] = "val_pcc"
    mode: ClassVar[str] = "max"
    min_delta: ClassVar[float] = 1e-5
    min_batch: ClassVar[int] = 1
    max_spots: ClassVar[int] = 4096
    val_fraction: ClassVar[float] = 0.2
    param_constraints: ClassVar[dict[str, Any]] = {  # shared by triplex, histogene, hist2st
        "d_model": Interval(1, integer=True), "heads": Interval(1, integer=True), "n_pos": Interval(1, integer=True),
        "lr": Interval(0, low_open=True), "weight_decay": Interval(0), "epochs": Interval(1, integer=True),
        "patience": Interval(0, integer=True),
    }

    # -- the estimator contract ----------------------------------------------------------------
    def fit(self, X: np.ndarray, Y: np.ndarray, **fit_params: Any) -> SectionBaseline:
        """As every method's ``fit``; ``groups_val=`` (the section of each validation spot) lets the
        validation spots join their sections' context. Positions are expected (see :meth:`_check_spatial`)."""
        self._val_context = (fit_params.get("spatial_val"), fit_params.pop("groups_val", None))
        try:
            return super().fit(X, Y, **fit_params)
        finally:
            del self._val_context

    def predict(self, X: np.ndarray, *, spatial: np.ndarray | None = None) -> np.ndarray:
        """Predicted targets (N, G) for one section's spots ``X`` at positions ``spatial``."""
        X = check_predict_input(self.method, X, getattr(self, "n_features_in_", None))
        S = self._check_spatial(spatial, len(X), "predict")
        return np.asarray(self._predict_section(X, S), dtype=np.float32)

    @classmethod
    def load(cls, directory: Path | str, *, device: str = "auto") -> SectionBaseline:
        """Rebuild a fitted estimator from a folder written by :meth:`save` (on ``device``; auto: CUDA when present)."""
        import torch
        from safetensors.numpy import load_file

        from hagekit.errors import at

        directory = Path(directory)
        meta, meta_path = read_estimator_meta(directory, cls)
        names = set(cls._get_param_names())
        est = cls(**{k: v for k, v in meta.items() if k in names and k != "device"})
        est.device = device
        try:
            arrays = load_file(str(directory / "model.safetensors"))
            est.n_features_in_, est.n_genes_ = int(meta["n_features_in_"]), int(meta["n_genes_"])
            est.nonneg_ = bool(meta["nonneg_"])
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise DataError(at(directory, f"incomplete saved model ({type(exc).__name__}: {exc})")) from None
        est._scaler = Standardizer()
        est._scaler.mean_ = arrays["scaler_mean"].astype(np.float64)
        est._scaler.scale_ = arrays["scaler_scale"].astype(np.float64)
        from hagekit.device import resolve_device

        est.device_ = str(resolve_device(device))
        model = est._build(est.n_features_in_, np.zeros((1, est.n_genes_), np.float32))
        state = {k[len("model."):]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("model.")}
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise DataError(at(directory / "model.safetensors", f"weights do not match {meta_path.name} ({exc})")) from None
        est.model_ = model.to(est.device_).eval()
        return est

    def _fitted_params(self) -> dict[str, Any]:
        return {"n_features_in_": int(self.n_features_in_), "n_genes_": int(self.n_genes_),
                "nonneg_": bool(self.nonneg_), "best_epoch_": int(self.best_epoch_)}

    # -- fitting -------------------------------------------------------------------------------
    def _check_spatial(self, spatial: Any, n: int, what: str) -> np.ndarray:
        """Validated (N, 2) positions; without any (plain scikit-learn use) every spot sits at
        the origin, so the model sees the other spots but no layout and no neighbours."""
        if spatial is None:
            log.warning("%s: %s without spot positions; the section's layout is unknown, so no neighbours are used",
                        self.method, what)
            return np.zeros((n, 2))
        S = np.asarray(spatial, dtype=np.float64)
        if S.shape != (n, 2) or not np.isfinite(S).all():
            raise DataError(f"{self.method}: spatial must be finite (N, 2) positions for {n} spots, got shape {S.shape}")
        return S

    def _prepare(self, X: np.ndarray, Y: np.ndarray, *, val: tuple[np.ndarray, np.ndarray] | None,
                 spatial: np.ndarray | None, groups: np.ndarray | None, device: Any) -> _Stacked:
        """The sections (one loop item each) on ``device``, from checked positions and groups."""
        S = self._check_spatial(spatial, len(X), "fit")
        g = np.zeros(len(X), np.int64) if groups is None else np.asarray(groups)
        if g.shape != (len(X),):
            raise DataError(f"{self.method}: groups has {g.shape} entries for {len(X)} spots")
        self._scaler = Standardizer().fit(X)
        self.n_genes_ = int(Y.shape[1])
        self.nonneg_ = bool((Y >= 0).all())
        return self._stack(X, Y, S, g, val, device)

    def _batch_size(self) -> int:
        return 1  # one section per step

    def _stack(self, X: np.ndarray, Y: np.ndarray, S: np.ndarray, g: np.ndarray,
               val: tuple[np.ndarray, np.ndarray] | None, dev: Any) -> _Stacked:
        """Sections of training (+ validation) spots, as tensors on ``dev``."""
        import torch

        spatial_val, groups_val = getattr(self, "_val_context", (None, None))
        n = len(X)
        is_val = np.zeros(n, bool)
        y_val = None
        if val is not None and spatial_val is not None and groups_val is not None:
            Sv = self._check_spatial(spatial_val, len(val[0]), "validation")
            gv = np.asarray(groups_val)
            if gv.shape != (len(val[0]),):
                raise DataError(f"{self.method}: groups_val has {gv.shape} entries for {len(val[0])} validation spots")
            X, Y = np.concatenate([X, val[0]]), np.concatenate([Y, val[1]])
            S, g = np.concatenate([S, Sv]), np.concatenate([g, gv])
            is_val = np.concatenate([is_val, np.ones(len(gv), bool)])
        elif val is not None or n >= 10:
            # no section for the given validation spots: hold out training spots instead
            if val is not None:
                log.info("%s: validation spots come without groups_val; validating on %.0f%% of the training spots",
                         self.method, 100 * self.val_fraction)
            rng = np.random.default_rng(int(self.random_state))
            is_val[rng.permutation(n)[: max(1, int(round(self.val_fraction * n)))]] = True
        val_pos = np.cumsum(is_val) - 1
        x = torch.from_numpy(self._scaler.transform(X)).to(dev)
        y = torch.from_numpy(np.asarray(Y, np.float32)).to(dev)
        stacked = _Stacked(x, y)
        for sec in np.unique(g):
            members = np.flatnonzero(g == sec)
            grid = section_grid(S[members])
            for part in tiles(grid, self.max_spots):
                rows = members[part]
                inputs = {k: v.to(dev) for k, v in self._section_inputs(S[rows]).items()}
                stacked.sections.append(SectionData(
                    torch.from_numpy(rows).to(dev), inputs, torch.from_numpy(~is_val[rows]).to(dev),
                    torch.from_numpy(is_val[rows]).to(dev), torch.from_numpy(val_pos[rows][is_val[rows]]).to(dev),
                ))
        if is_val.any():
            y_val = y[torch.from_numpy(is_val).to(dev)]
            stacked.y_val = y_val
        stacked.trainable = [i for i, sec in enumerate(stacked.sections) if bool(sec.train.any())]
        if not stacked.trainable:
            raise DataError(f"{self.method}: no section has training spots")
        return stacked

    def _loss(self, model: Any, stacked: _Stacked, idx: Any) -> Any:
        """Mean loss over the sections in ``idx`` (one per step by default)."""
        total = None
        terms: dict[str, Any] = {}
        for i in idx.tolist():
            sec = stacked.sections[stacked.trainable[i]]
            x, y = stacked.x[sec.rows], stacked.y[sec.rows]
            out = self._section_forward(model, x, sec.inputs, sec.train)
            part = self._loss_terms(out, y[sec.train])
            loss = part.pop("loss")
            total = loss if total is None else total + loss
            for k, v in part.items():
                terms[k] = terms.get(k, 0.0) + v.detach()
        k = len(idx)
        return {"loss": total / k, **{name: v / k for name, v in terms.items()}}

    def _validate(self, model: Any, stacked: _Stacked) -> dict[str, float]:
        import torch

        from hagekit.metrics.device import mean_gene_pcc

        pred = torch.zeros_like(stacked.y_val)
        for sec in stacked.sections:
            if not bool(sec.val.any()):
                continue
            out = self._section_forward(model, stacked.x[sec.rows], sec.inputs, sec.val)
            pred[sec.val_rows] = out["pred"]
        return {"val_pcc": mean_gene_pcc(pred, stacked.y_val)}

    def _predict_section(self, X: np.ndarray, S: np.ndarray) -> np.ndarray:
        import torch

        x = self._features(X)
        grid = section_grid(S)
        out = np.zeros((len(X), self.n_genes_), np.float32)
        self.model_.eval()
        with torch.inference_mode():
            for part in tiles(grid, self.max_spots):
                inputs = {k: v.to(self.device_) for k, v in self._section_inputs(S[part]).items()}
                rows = torch.from_numpy(part).to(self.device_)
                every = torch.ones(len(part), dtype=torch.bool, device=self.device_)
                out[part] = self._section_forward(self.model_, x[rows], inputs, every)["pred"].float().cpu().numpy()
        return out

    # -- what a subclass supplies ------------------------------------------------------------------
    def _section_inputs(self, spatial: np.ndarray) -> dict[str, Any]:
        """Tensors (CPU) the model needs from one section's positions alone."""
        raise NotImplementedError

    def _section_forward(self, model: Any, x: Any, inputs: dict[str, Any], rows: Any) -> dict[str, Any]:
        """Outputs for the spots ``rows`` (bool mask) of one section with features ``x``:
        ``{"pred": (n_rows, G), ...}`` plus whatever the loss needs."""
        raise NotImplementedError

    def _loss_terms(self, out: dict[str, Any], y: Any) -> dict[str, Any]:
        """``{"loss": scalar, **logged terms}`` for the outputs of one section's training rows."""
        raise NotImplementedError

    def _check_params(self) -> None:
        for name in ("d_model", "heads", "epochs"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{self.method} {name}: must be >= 1, got {getattr(self, name)}")
        if int(self.d_model) % int(self.heads):
            raise ConfigError(f"{self.method}: d_model ({self.d_model}) must be a multiple of heads ({self.heads})")

    def _optimizer(self, model: Any) -> Any:
        import torch

        return torch.optim.Adam(model.parameters(), lr=float(self.lr), weight_decay=float(self.weight_decay))
