"""Baselines trained with the shared loop (:mod:`hagekit.training.loop`) on standardised features.

:class:`TrainedBaseline` does what MLP, BLEEP and mclSTExp share: standardise the features
on the training spots, put the data on the device, build the model and optimiser under a
seeded RNG, run the loop (early stopping on the method's validation metric), keep the best
weights, save them with the scaler. A subclass supplies its model (``_build``), optimiser
(``_optimizer``), loss on a batch (``_loss``) and validation metrics (``_validate``).
:class:`RetrievalBaseline` adds BLEEP-style top-k retrieval from the training spots.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from hagekit.baselines._common import WEIGHTINGS, Standardizer, retrieve
from hagekit.errors import ConfigError
from hagekit.progress import Reporter
from hagekit.training.estimator import Regressor

__all__ = ["TrainedBaseline", "RetrievalBaseline", "Batchable"]

log = logging.getLogger(__name__)


@dataclass
class Batchable:
    """Training tensors on the device: features ``x`` (N, D), targets ``y`` (N, G), optional
    positions ``pos`` (N, 2); validation ``x_val``/``y_val`` when given."""

    x: Any
    y: Any
    pos: Any = None
    x_val: Any = None
    y_val: Any = None


class TrainedBaseline(Regressor):
    """Template for loop-trained baselines; parameters ``epochs``, ``batch_size``, ``patience``,
    ``device``, ``random_state`` are expected on every subclass."""

    monitor: ClassVar[str] = "val_pcc"
    mode: ClassVar[str] = "max"
    min_delta: ClassVar[float] = 1e-5
    min_batch: ClassVar[int] = 2

    def _fit(self, X: np.ndarray, Y: np.ndarray, *, val: tuple[np.ndarray, np.ndarray] | None,
             spatial: np.ndarray | None, groups: np.ndarray | None, progress: Reporter | None) -> None:
        import torch

        from hagekit.device import resolve_device
        from hagekit.training.loop import LoopConfig, seeded, train_loop

        self._check_params()
        pos = self._positions(spatial, X.shape[0])
        dev = resolve_device(self.device)
        self.device_ = str(dev)
        self._scaler = Standardizer().fit(X)
        data = Batchable(torch.from_numpy(self._scaler.transform(X)).to(dev), torch.from_numpy(Y).to(dev))
        if pos is not None:
            data.pos = torch.from_numpy(pos).to(dev)
        if val is not None:
            data.x_val = torch.from_numpy(self._scaler.transform(val[0])).to(dev)
            data.y_val = torch.from_numpy(val[1]).to(dev)
        config = LoopConfig(
            epochs=int(self.epochs), batch_size=int(self.batch_size), min_batch=self.min_batch,
            monitor=self.monitor, mode=self.mode, min_delta=self.min_delta, patience=int(self.patience),
            seed=int(self.random_state), description=f"{self.method} epochs",
        )
        with seeded(int(self.random_state), dev):
            model = self._build(X.shape[1], Y).to(dev)
            result = train_loop(
                model, self._optimizer(model), lambda idx: self._loss(model, data, idx), n=X.shape[0],
                config=config, validate=(lambda: self._validate(model, data)) if val is not None else None,
                progress=progress,
            )
        self.model_ = model
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self._after_fit(model, data)

    # -- what a subclass supplies ----------------------------------------------------------
    def _check_params(self) -> None:
        """Refuse invalid parameters before any work."""

    def _positions(self, spatial: np.ndarray | None, n: int) -> np.ndarray | None:
        """Integer spot positions (N, 2) when the method uses them."""
        return None

    def _build(self, d_in: int, Y: np.ndarray) -> Any:
        raise NotImplementedError

    def _optimizer(self, model: Any) -> Any:
        raise NotImplementedError

    def _loss(self, model: Any, data: Batchable, idx: Any) -> Any:
        raise NotImplementedError

    def _validate(self, model: Any, data: Batchable) -> dict[str, float]:
        raise NotImplementedError

    def _after_fit(self, model: Any, data: Batchable) -> None:
        """Keep what prediction needs besides the weights."""

    # -- shared ----------------------------------------------------------------------------
    def _features(self, X: np.ndarray) -> Any:
        import torch

        return torch.from_numpy(self._scaler.transform(X)).to(self.device_)

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"model.{k}": v.detach().cpu().numpy() for k, v in self.model_.state_dict().items()}
        arrays["scaler_mean"] = self._scaler.mean_.astype(np.float32)
        arrays["scaler_scale"] = self._scaler.scale_.astype(np.float32)
        return arrays


class RetrievalBaseline(TrainedBaseline):
    """Image and spot encoders aligned contrastively (``model["image"]``, ``model["spot"]``);
    prediction averages the expression of the ``top_k`` training spots nearest in embedding."""

    def _check_params(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(
                f"{self.method} weighting: unknown {self.weighting!r} (choose from {', '.join(WEIGHTINGS)})"
            )

    def _reference_keys(self, model: Any, data: Batchable) -> Any:
        """Embeddings (N, d) of the training spots, the keys retrieval searches."""
        raise NotImplementedError

    def _retrieve(self, query: Any, keys: Any, values: Any) -> Any:
        return retrieve(query, keys, values, top_k=int(self.top_k), weighting=self.weighting)

    def _validate(self, model: Any, data: Batchable) -> dict[str, float]:
        from hagekit.metrics.device import mean_gene_pcc
        from hagekit.training.loop import predict_in_batches

        keys = self._reference_keys(model, data)
        model.eval()
        pred = self._retrieve(predict_in_batches(model["image"], data.x_val), keys, data.y)
        return {"val_pcc": mean_gene_pcc(pred, data.y_val)}

    def _after_fit(self, model: Any, data: Batchable) -> None:
        self.keys_ = self._reference_keys(model, data)
        self.values_ = data.y

    def _predict(self, X: np.ndarray) -> np.ndarray:
        from hagekit.training.loop import predict_in_batches

        head = self.model_["image"]
        head.eval()
        q = predict_in_batches(head, self._features(X))
        return self._retrieve(q, self.keys_, self.values_).cpu().numpy()

    def _arrays(self) -> dict[str, np.ndarray]:
        return {**super()._arrays(), "reference_keys": self.keys_.cpu().numpy(),
                "reference_values": self.values_.cpu().numpy()}
