"""``HAGERegressor``: the HAGE model as a scikit-learn estimator (fit / predict / save / load).

A :class:`~hagekit.learn.torch_regressor.TorchRegressor` with three hooks: before the fit it
standardises the features and builds the fixed hierarchy on the training spots (``_prepare``);
it trains with its own schedule and early stopping on validation PCC on the shared loop
(``_train``: :func:`hagekit.hage.fit.fit_model`), keeping the best weights; after the fit it
calibrates (``_after_fit``). ``clone``, ``get_params(deep=True)`` (with ``config__<field>`` for
every :class:`HAGEConfig` field) and ``GridSearchCV`` work. ``save`` writes ``model.safetensors``
(state dict) + ``estimator.json`` (config, shapes, history); no pickle.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hagekit.errors import ConfigError, DataError, ProvenanceError, at
from hagekit.hage.model import HAGEConfig, collapse_message
from hagekit.learn.context import NeighbourMeanContext
from hagekit.learn.estimator import ESTIMATOR_FILE, MODEL_FILE
from hagekit.learn.torch_regressor import TorchRegressor
from hagekit.progress import Reporter

__all__ = ["HAGERegressor", "calibration", "ESTIMATOR_FORMAT", "MODEL_FILE", "ESTIMATOR_FILE"]

log = logging.getLogger(__name__)

ESTIMATOR_FORMAT = "hagekit.hage/1"


@dataclass(repr=False, eq=False)
class HAGERegressor(NeighbourMeanContext, TorchRegressor):
    """Predict panel expression (N, G) from image features (N, D) with HAGE.

    ``config`` (default: :class:`HAGEConfig` defaults); ``gene_embeddings`` (G, d_g) are the
    panel's embeddings in panel order; ``genes`` (optional) are the panel's symbols, recorded
    for provenance checks at prediction time; ``label`` names the progress bar. ``fit`` reads
    neither ``spatial`` nor ``groups`` (HAGE, like the paper, uses no spatial context), unless
    ``config.context = "mean"``: then GE sees ``[x, neighbour-mean x]`` (:mod:`hagekit.learn.context`).
    """

    method: ClassVar[str] = "hage"

    config: HAGEConfig | None = None
    gene_embeddings: np.ndarray | None = None
    _: KW_ONLY
    random_state: int = 0
    device: str = "auto"
    genes: Sequence[str] | None = None
    label: str = "HAGE"

    # -- parameters ----------------------------------------------------------------------
    def _config(self) -> HAGEConfig:
        return self.config if self.config is not None else HAGEConfig()

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters; with ``deep``, also ``config__<field>`` for every config field."""
        params = super().get_params(deep=False)
        if deep:
            params.update({f"config__{k}": v for k, v in self._config().to_dict().items()})
        return params

    def set_params(self, **params: Any) -> HAGERegressor:
        """Set parameters; ``config__<field>`` replaces that field of ``config`` (validated)."""
        changes = {k.split("__", 1)[1]: params.pop(k) for k in list(params) if k.startswith("config__")}
        super().set_params(**params)
        if changes:
            unknown = sorted(set(changes) - set(HAGEConfig.field_names()))
            if unknown:
                raise ConfigError(f"hage: unknown setting(s) {', '.join(unknown)} (valid: {', '.join(HAGEConfig.field_names())})")
            self.config = self._config().replace(**changes)
        return self

    def _context_radius(self) -> float | None:
        cfg = self._config()
        return None if cfg.context == "none" else float(cfg.context_radius)

    # -- fitting -------------------------------------------------------------------------
    def _check_inputs(self, X: Any, Y: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
        return _check_xy(X, Y, self._check_embeddings().shape[0], what or "training")

    def _prepare(self, X: np.ndarray, Y: np.ndarray, *, val: tuple[np.ndarray, np.ndarray] | None,
                 spatial: np.ndarray | None, groups: np.ndarray | None, device: Any) -> Any:
        """Before the fit: the feature statistics and the fixed hierarchy of the training spots."""
        import torch

        from hagekit.hage.fit import HAGEData
        from hagekit.hage.hierarchy import build_hierarchy

        cfg = self._config()
        mean = X.mean(axis=0) if cfg.standardize_features else np.zeros(X.shape[1], np.float32)
        std = X.std(axis=0) if cfg.standardize_features else np.ones(X.shape[1], np.float32)
        std = np.where(std > 1e-6, std, 1.0).astype(np.float32)
        data = HAGEData(torch.as_tensor(X, device=device), torch.as_tensor(Y, device=device), mean=mean, std=std)
        if val is not None:
            data.x_val, data.y_val = torch.as_tensor(val[0], device=device), val[1]
        if cfg.use_hierarchy:
            hier = build_hierarchy(Y, (X - mean) / std, k1=cfg.k1, k2=cfg.k2, single_level=cfg.single_level,
                                   seed=int(self.random_state))
            data.n_clusters = hier.n_clusters
            self.cluster_sizes_ = hier.sizes()
            data.labels = torch.as_tensor(hier.labels, device=device)
        data.check = (X, Y) if val is None or len(val[0]) < 2 else val
        return data

    def _make_model(self, data: Any, d_in: int, Y: np.ndarray) -> Any:
        import torch

        from hagekit.hage.model import HAGEModel

        model = HAGEModel(self._config(), d_in, torch.as_tensor(self._check_embeddings()))
        model.set_feature_stats(torch.as_tensor(data.mean), torch.as_tensor(data.std))
        return model

    def _train(self, model: Any, data: Any, progress: Reporter | None) -> Any:
        from hagekit.hage.fit import fit_model

        return fit_model(model, data, config=self._config(), seed=int(self.random_state), progress=progress,
                         description=self.label)

    def _after_fit(self, model: Any, data: Any, result: Any) -> None:
        """After the fit: per-gene calibration (``config.calibrate``) and the embedding-collapse check."""
        import torch

        from hagekit.hage.fit import predict_batches

        model.eval()
        xs, ys = data.check
        device = data.x.device
        if self._config().calibrate:
            scale, shift = calibration(predict_batches(model, torch.as_tensor(xs, device=device)), ys)
            model.set_calibration(torch.as_tensor(scale), torch.as_tensor(shift))
        with torch.no_grad():
            self.embedding_cosines_ = model.embedding_cosines(torch.as_tensor(xs[:4096], device=device),
                                                              torch.as_tensor(ys[:4096], device=device))
        warning = collapse_message(**self.embedding_cosines_)
        if warning:
            log.warning("%s: %s", self.label, warning)
        self.n_features_in_ = int(data.x.shape[1])
        self.n_clusters_ = int(data.n_clusters)
        self.best_epoch_ = int(result.best_epoch)
        self.best_val_pcc_ = float(result.best_score)
        self.stopped_early_ = bool(result.stopped_early)

    # -- inference -----------------------------------------------------------------------
    def predict(self, X: np.ndarray, *, spatial: np.ndarray | None = None) -> np.ndarray:
        """Predicted targets (N, G) float32 for features ``X`` (N, D); ``spatial`` (the same spots'
        positions, one section) is used only with ``config.context``."""
        import torch

        from hagekit.hage.fit import predict_batches

        model = self._fitted()
        X = np.asarray(self._context_input(X, spatial), dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ProvenanceError(
                f"features have shape {X.shape}; this model expects (N, {self.n_features_in_}) "
                "features from the encoder it was trained on"
            )
        if not np.all(np.isfinite(X)):
            raise DataError("features contain NaN or Inf")
        device = next(model.parameters()).device
        return predict_batches(model, torch.as_tensor(X, device=device)).astype(np.float32)

    def embed(self, X: np.ndarray, *, spatial: np.ndarray | None = None) -> np.ndarray:
        """Gene-informed image embeddings z^i (N, d) for features ``X`` (N, D) (positions: as :meth:`predict`)."""
        import torch

        model = self._fitted()
        device = next(model.parameters()).device
        x = torch.as_tensor(np.asarray(self._context_input(X, spatial), dtype=np.float32), device=device)
        with torch.inference_mode():
            return np.concatenate(
                [model.encode_image(x[s : s + 4096]).cpu().numpy() for s in range(0, len(x), 4096)]
                or [np.zeros((0, self._config().d), np.float32)]
            )

    # -- persistence ---------------------------------------------------------------------
    def save(self, directory: Path | str) -> Path:
        """Write ``model.safetensors`` and ``estimator.json`` into ``directory`` (atomically each)."""
        from hagekit.io.atomic import atomic_path, write_json
        from hagekit.io.tensorfile import save_safetensors

        model = self._fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        with atomic_path(directory / MODEL_FILE) as tmp:
            save_safetensors(state, tmp, metadata={"format": ESTIMATOR_FORMAT})
        write_json(directory / ESTIMATOR_FILE, self.describe())
        return directory

    def describe(self) -> dict[str, Any]:
        """What ``estimator.json`` holds: format, config, shapes, genes, seed, training history."""
        self._fitted()
        return {
            "format": ESTIMATOR_FORMAT,
            "method": "hage",
            "class": type(self).__name__,
            "config": self._config().to_dict(),
            "n_features_in": self.n_features_in_,
            "n_genes": int(np.asarray(self.gene_embeddings).shape[0]),
            "d_gene": int(np.asarray(self.gene_embeddings).shape[1]),
            "genes": list(self.genes) if self.genes is not None else None,
            "seed": self.random_state,
            "n_clusters": self.n_clusters_,
            "best_epoch": self.best_epoch_,
            "best_val_pcc": self.best_val_pcc_,
            "stopped_early": self.stopped_early_,
            "embedding_cosines": getattr(self, "embedding_cosines_", None),
            "history": self.history_,
        }

    @classmethod
    def load(cls, directory: Path | str, *, device: str = "auto") -> HAGERegressor:
        """Rebuild a fitted estimator from a directory written by :meth:`save` (on ``device``; auto: CUDA when present)."""
        import torch

        from hagekit.hage.model import HAGEModel
        from hagekit.io.jsonfile import read_json_object
        from hagekit.io.tensorfile import load_safetensors

        directory = Path(directory)
        meta_path, weights_path = directory / ESTIMATOR_FILE, directory / MODEL_FILE
        hint = "not found; is this a trained HAGE model folder (<run>/<fold>/trial<k>)?"
        meta = read_json_object(meta_path, missing=hint)
        if not weights_path.is_file():
            raise DataError(at(weights_path, hint))
        if meta.get("format") != ESTIMATOR_FORMAT:
            raise DataError(at(meta_path, f"format {meta.get('format')!r} is not {ESTIMATOR_FORMAT!r}"))
        try:
            config = HAGEConfig.from_dict(meta["config"], source=str(meta_path))
            n_features = int(meta["n_features_in"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(at(meta_path, f"incomplete estimator description ({type(exc).__name__}: {exc})")) from None
        try:
            state = load_safetensors(weights_path)
        except Exception as exc:  # safetensors raises several types on corrupt files
            raise DataError(at(weights_path, f"unreadable safetensors file ({exc})")) from None
        if "gene_embeddings" not in state:
            raise DataError(at(weights_path, "no gene_embeddings tensor; not a HAGE model"))
        emb = state["gene_embeddings"].numpy()
        est = cls(config, emb, random_state=int(meta.get("seed", 0)), device=device, genes=meta.get("genes"))
        model = HAGEModel(config, n_features, torch.as_tensor(emb))
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # tensors of other shapes than estimator.json describes
            first = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc).splitlines()[0])
            raise DataError(at(weights_path, f"weights do not match {ESTIMATOR_FILE} ({first})")) from None
        if missing or unexpected:
            raise DataError(
                at(weights_path, f"weights do not match the config (missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
            )
        model.to(_resolve_device(device)).eval()
        est.model_ = model
        est.n_features_in_ = n_features
        est.n_clusters_ = int(meta.get("n_clusters", 0))
        est.history_ = list(meta.get("history", []))
        est.best_epoch_ = int(meta.get("best_epoch", 0))
        best = meta.get("best_val_pcc")
        est.best_val_pcc_ = float(best) if best is not None else float("nan")
        est.stopped_early_ = bool(meta.get("stopped_early", False))
        if meta.get("embedding_cosines"):
            est.embedding_cosines_ = {k: float(v) for k, v in meta["embedding_cosines"].items()}
        return est

    # -- helpers -------------------------------------------------------------------------
    def _fitted(self):
        model = getattr(self, "model_", None)
        if model is None:
            raise ConfigError("HAGERegressor is not fitted yet; call fit() or load() first")
        return model

    def _check_embeddings(self) -> np.ndarray:
        emb = np.asarray(self.gene_embeddings, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] == 0:
            raise ConfigError(f"gene embeddings must be a non-empty (G, d_g) array, got shape {emb.shape}")
        if not np.all(np.isfinite(emb)):
            raise DataError("gene embeddings contain NaN or Inf")
        if self.genes is not None and len(self.genes) != emb.shape[0]:
            raise ConfigError(f"{len(self.genes)} gene names for {emb.shape[0]} gene embeddings")
        return emb


def calibration(raw: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene least-squares ``target ~ a * raw + b`` with ``a > 0`` (keeps each gene's PCC).

    Genes the model anti-correlates (or predicts constant) get a tiny slope, i.e. close to
    the mean of ``target``, which minimises their squared error.
    """
    raw = np.asarray(raw, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    rc, yc = raw - raw.mean(axis=0), y - y.mean(axis=0)
    var = (rc**2).mean(axis=0)
    cov = (rc * yc).mean(axis=0)
    y_sd = np.sqrt((yc**2).mean(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(var > 1e-12, cov / var, 0.0)
        floor = np.where(var > 1e-12, 1e-6 * y_sd / np.sqrt(var), 1e-6)
    a = np.maximum(a, np.maximum(floor, 1e-12))
    b = y.mean(axis=0) - a * raw.mean(axis=0)
    return a.astype(np.float32), b.astype(np.float32)


def _check_xy(X: Any, Y: Any, n_genes: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    X = np.ascontiguousarray(X, dtype=np.float32)
    Y = np.ascontiguousarray(Y, dtype=np.float32)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise DataError(f"{what} features {X.shape} and targets {Y.shape} must be (N, D) and (N, G)")
    if Y.shape[1] != n_genes:
        raise ProvenanceError(f"{what} targets have {Y.shape[1]} genes but {n_genes} gene embeddings were given")
    if X.shape[0] < 2:
        raise DataError(f"{what} set needs at least 2 spots, got {X.shape[0]}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(Y))):
        raise DataError(f"{what} features or targets contain NaN or Inf")
    return X, Y


def _resolve_device(device: str):
    from hagekit.device import resolve_device

    return resolve_device(device)
