"""The template every torch-trained estimator follows (HAGE, MLP, BLEEP, mclSTExp, the section models).

:class:`TorchRegressor` fits in the same steps for all of them: check the parameters, resolve
the device, prepare the data (by default: standardise the features on the training spots and
put them on the device), build the model and train it on the shared loop under one seeded RNG
(:func:`hagekit.learn.loop.seeded`), keep the best weights, then an after-fit hook. A method
supplies its model (``_build``), optimiser (``_optimizer``), loss on a batch (``_loss``) and
validation metrics (``_validate``); HAGE also replaces :meth:`~TorchRegressor._prepare`
(the hierarchy, before the fit), :meth:`~TorchRegressor._train` (its schedule) and
:meth:`~TorchRegressor._after_fit` (the calibration).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from hagekit.learn.estimator import Regressor
from hagekit.progress import Reporter

__all__ = ["TorchRegressor", "Batchable"]


@dataclass
class Batchable:
    """Training tensors on the device: features ``x`` (N, D), targets ``y`` (N, G), optional
    positions ``pos`` (N, 2); validation ``x_val``/``y_val`` when given."""

    x: Any
    y: Any
    pos: Any = None
    x_val: Any = None
    y_val: Any = None

    def __len__(self) -> int:
        """The loop's items: the training spots."""
        return int(self.x.shape[0])

    @property
    def has_val(self) -> bool:
        """Whether validation spots were given (early stopping on them)."""
        return self.x_val is not None


class TorchRegressor(Regressor):
    """Template for loop-trained estimators; parameters ``epochs``, ``batch_size``, ``patience``,
    ``device``, ``random_state`` are expected on every subclass (see the module docstring)."""

    monitor: ClassVar[str] = "val_pcc"
    mode: ClassVar[str] = "max"
    min_delta: ClassVar[float] = 1e-5
    min_batch: ClassVar[int] = 2

    def _fit(self, X: np.ndarray, Y: np.ndarray, *, val: tuple[np.ndarray, np.ndarray] | None,
             spatial: np.ndarray | None, groups: np.ndarray | None, progress: Reporter | None) -> None:
        from hagekit.device import resolve_device
        from hagekit.learn.loop import seeded

        self._check_params()
        dev = resolve_device(self.device)
        self.device_ = str(dev)
        data = self._prepare(X, Y, val=val, spatial=spatial, groups=groups, device=dev)
        with seeded(int(self.random_state), dev):
            model = self._make_model(data, X.shape[1], Y).to(dev)
            result = self._train(model, data, progress)
        self.model_ = model
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self._after_fit(model, data, result)

    # -- the steps, each replaceable -------------------------------------------------------
    def _check_params(self) -> None:
        """Refuse invalid parameters before any work."""

    def _positions(self, spatial: np.ndarray | None, n: int) -> np.ndarray | None:
        """Integer spot positions (N, 2) when the method uses them."""
        return None

    def _prepare(self, X: np.ndarray, Y: np.ndarray, *, val: tuple[np.ndarray, np.ndarray] | None,
                 spatial: np.ndarray | None, groups: np.ndarray | None, device: Any) -> Any:
        """The data the loop iterates over (before the fit): standardised features on ``device``."""
        import torch

        from hagekit.learn.standardize import Standardizer

        pos = self._positions(spatial, X.shape[0])
        self._scaler = Standardizer().fit(X)
        data = Batchable(torch.from_numpy(self._scaler.transform(X)).to(device), torch.from_numpy(Y).to(device))
        if pos is not None:
            data.pos = torch.from_numpy(pos).to(device)
        if val is not None:
            data.x_val = torch.from_numpy(self._scaler.transform(val[0])).to(device)
            data.y_val = torch.from_numpy(val[1]).to(device)
        return data

    def _make_model(self, data: Any, d_in: int, Y: np.ndarray) -> Any:
        """The untrained model (built under the fit's seeded RNG)."""
        return self._build(d_in, Y)

    def _batch_size(self) -> int:
        return int(self.batch_size)

    def _loop_config(self) -> Any:
        """The loop settings the estimator's parameters imply."""
        from hagekit.learn.loop import LoopConfig

        return LoopConfig(
            epochs=int(self.epochs), batch_size=self._batch_size(), min_batch=self.min_batch,
            monitor=self.monitor, mode=self.mode, min_delta=self.min_delta, patience=int(self.patience),
            seed=int(self.random_state), description=f"{self.method} epochs",
        )

    def _train(self, model: Any, data: Any, progress: Reporter | None) -> Any:
        """Train ``model`` in place on the shared loop; returns its :class:`~hagekit.learn.loop.LoopResult`."""
        from hagekit.learn.loop import train_loop

        return train_loop(
            model, self._optimizer(model), lambda idx: self._loss(model, data, idx), n=len(data),
            config=self._loop_config(), validate=(lambda: self._validate(model, data)) if data.has_val else None,
            progress=progress,
        )

    def _after_fit(self, model: Any, data: Any, result: Any) -> None:
        """Keep what prediction needs besides the weights."""

    # -- what a method supplies ------------------------------------------------------------
    def _build(self, d_in: int, Y: np.ndarray) -> Any:
        raise NotImplementedError

    def _optimizer(self, model: Any) -> Any:
        raise NotImplementedError

    def _loss(self, model: Any, data: Any, idx: Any) -> Any:
        raise NotImplementedError

    def _validate(self, model: Any, data: Any) -> dict[str, float]:
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------
    def _features(self, X: np.ndarray) -> Any:
        import torch

        return torch.from_numpy(self._scaler.transform(X)).to(self.device_)

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"model.{k}": v.detach().cpu().numpy() for k, v in self.model_.state_dict().items()}
        arrays["scaler_mean"] = self._scaler.mean_.astype(np.float32)
        arrays["scaler_scale"] = self._scaler.scale_.astype(np.float32)
        return arrays
