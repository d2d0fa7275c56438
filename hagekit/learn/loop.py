"""The one training loop every trained method uses (HAGE, MLP, BLEEP, mclSTExp, probes, AB-MIL).

A method supplies its model, its optimiser, a *step* and (optionally) a *validation*;
:func:`train_loop` does everything else the same way for all of them.

- ``step(idx) -> loss | {"loss": loss, **terms}``: the loss of one mini-batch, given the
  batch's item indices ``idx`` (a 1-D long tensor on the model's device). The loop runs the
  step under autocast, then ``zero_grad`` / ``backward`` / (grad clipping) / ``optimizer.step``.
  Extra terms are averaged per epoch into the history (no host sync per step).
- ``validate() -> {"val_pcc": ..., ...}``: metrics of the current weights, called after
  every epoch in ``eval()`` mode under ``torch.inference_mode()``; ``config.monitor`` names
  the one early stopping watches (``mode`` ``"max"`` or ``"min"``). Use
  :class:`hagekit.metrics.device.GenePearson` for PCC so the loop and the reports agree.
- Batches: one seeded permutation of ``n`` items per epoch (``torch.Generator`` seeded with
  ``config.seed``), cut into ``batch_size`` slices; a last slice smaller than ``min_batch``
  is merged into the previous one (``merge_tail``) or skipped.
- Budget: ``epochs`` epochs, extended until at least ``min_steps`` optimiser steps were
  taken, and cut at ``max_steps``; :func:`planned_steps` says how many steps that is (to
  size a schedule before training).
- Early stopping: the monitored metric must beat the best by more than ``min_delta``; after
  ``patience`` epochs without that (0 = never stop) training stops, never before
  ``min_steps``. The first validation is always the best so far; a NaN score never is. The
  best weights are restored at the end (``restore_best``); without ``validate`` the last
  weights are kept.
- Schedule: any LR scheduler built on the optimiser (``hooks=LoopHooks(scheduler=...)``), stepped once per epoch
  or once per optimiser step (``config.scheduler_interval``); :func:`warmup_schedule` gives
  linear warmup followed by cosine, constant or step decay.
- Device and precision: the model and the data are already on the device chosen by
  :func:`hagekit.device.resolve_device`; ``precision`` ``bf16``/``fp16`` autocasts the step
  on CUDA (fp16 with a gradient scaler) and is fp32 elsewhere (``resolve_precision``).
- Seeding: build the model *and* run the loop inside ``with seeded(seed, device):`` so that
  initialisation and dropout draw from a forked, seeded global RNG (the caller's is untouched).
- Hooks: ``LoopHooks(on_epoch_start=...)`` runs after ``model.train()``, before the epoch's first step
  (e.g. HAGE refreshes its whole-sub-cluster centroid bank there).
- Progress: one bar per fit through the reporter (:mod:`hagekit.progress`), advanced every
  step, its status (epoch, loss, monitored metric, best) refreshed every epoch.
- History: one record per epoch: ``epoch``, ``steps`` (cumulative), the mean of every step
  term (``loss``, ...), ``lr``, ``train_seconds``, the validation metrics, ``seconds``.

Example::

    cfg = LoopConfig(epochs=100, batch_size=256, patience=10, monitor="val_mse", mode="min", seed=0)
    with seeded(0, device):
        model = build().to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        result = train_loop(model, opt, lambda idx: F.mse_loss(model(x[idx]), y[idx]), n=len(x),
                            config=cfg, validate=lambda: {"val_mse": float(F.mse_loss(model(xv), yv))})
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hagekit.errors import ConfigError, check_finite_loss
from hagekit.progress import Reporter, reporter_or_null

if TYPE_CHECKING:
    import torch

__all__ = [
    "LoopConfig",
    "LoopHooks",
    "LoopResult",
    "train_loop",
    "planned_steps",
    "steps_per_epoch",
    "seeded",
    "warmup_schedule",
    "predict_in_batches",
    "StepFn",
    "ValidateFn",
]

log = logging.getLogger(__name__)

StepFn = Callable[["torch.Tensor"], "torch.Tensor | Mapping[str, torch.Tensor]"]
ValidateFn = Callable[[], Mapping[str, float]]

MODES = ("max", "min")
INTERVALS = ("epoch", "step")


@dataclass(frozen=True)
class LoopConfig:
    """How long and how to train; the method's own hyper-parameters live in the method."""

    epochs: int = 1
    """Epochs to run (extended by ``min_steps``, cut by ``max_steps``)."""
    batch_size: int = 256
    """Items per optimiser step (clamped to [``min_batch``, n])."""
    min_steps: int = 0
    """Train at least this many optimiser steps (more epochs on small data)."""
    max_steps: int | None = None
    """Stop after this many optimiser steps (``None``: no cap)."""
    min_batch: int = 1
    """Smallest batch a step may see (contrastive losses need 2)."""
    merge_tail: bool = False
    """A last slice below ``min_batch``: merge it into the previous batch (True) or skip it."""
    monitor: str = "val_pcc"
    """The validation metric early stopping watches (a key of ``validate()``'s result)."""
    mode: str = "max"
    """``max`` (higher is better, e.g. PCC) or ``min`` (e.g. MSE)."""
    min_delta: float = 0.0
    """An improvement must exceed this to count."""
    patience: int = 0
    """Epochs without improvement before stopping; 0 never stops early."""
    restore_best: bool = True
    """Load the best validated weights at the end."""
    seed: int = 0
    """Seeds the per-epoch permutations."""
    precision: str | None = "fp32"
    """Autocast precision on CUDA: fp32, bf16, fp16 (None: the device default); fp32 on CPU."""
    scheduler_interval: str = "epoch"
    """Step the LR scheduler once per ``epoch`` or once per optimiser ``step``."""
    grad_clip: float | None = None
    """Clip the gradients' global L2 norm to this value."""
    description: str = "train"
    """Progress-bar label."""

    def __post_init__(self) -> None:
        if int(self.epochs) < 1 or int(self.batch_size) < 1 or int(self.min_batch) < 1:
            raise ConfigError(
                f"epochs, batch_size and min_batch must be >= 1, got {self.epochs}, {self.batch_size}, {self.min_batch}"
            )
        if int(self.min_steps) < 0 or int(self.patience) < 0:
            raise ConfigError(f"min_steps and patience must be >= 0, got {self.min_steps}, {self.patience}")
        if self.max_steps is not None and int(self.max_steps) < 1:
            raise ConfigError(f"max_steps: must be >= 1 or None, got {self.max_steps}")
        if self.mode not in MODES:
            raise ConfigError(f"mode: {self.mode!r} is not valid (valid: {', '.join(MODES)})")
        if self.scheduler_interval not in INTERVALS:
            raise ConfigError(
                f"scheduler_interval: {self.scheduler_interval!r} is not valid (valid: {', '.join(INTERVALS)})"
            )


@dataclass
class LoopResult:
    """What :func:`train_loop` did: the best epoch and score, the per-epoch history, the budget used."""

    best_epoch: int
    best_score: float
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False
    steps: int = 0
    epochs: int = 0


def _batch_bounds(n: int, config: LoopConfig) -> list[tuple[int, int]]:
    """``(start, stop)`` of each batch of a permutation of ``n`` items."""
    bs = max(int(config.min_batch), min(int(config.batch_size), n))
    bounds = [(s, min(s + bs, n)) for s in range(0, n, bs)]
    if bounds and bounds[-1][1] - bounds[-1][0] < config.min_batch:
        tail = bounds.pop()
        if config.merge_tail and bounds:
            bounds[-1] = (bounds[-1][0], tail[1])
    return bounds


def steps_per_epoch(n: int, config: LoopConfig) -> int:
    """Optimiser steps in one epoch over ``n`` items."""
    return len(_batch_bounds(int(n), config))


def planned_steps(n: int, config: LoopConfig) -> int:
    """Optimiser steps the budget allows if nothing stops early (for sizing an LR schedule)."""
    per = steps_per_epoch(n, config)
    if per == 0:
        return 0
    total = max(int(config.epochs), math.ceil(int(config.min_steps) / per)) * per
    return min(total, int(config.max_steps)) if config.max_steps is not None else total


def _planned_epochs(n: int, config: LoopConfig) -> int:
    per = max(1, steps_per_epoch(n, config))
    return max(1, math.ceil(planned_steps(n, config) / per))


@contextlib.contextmanager
def seeded(seed: int, device: Any = None) -> Iterator[None]:
    """Fork the global torch RNG (CPU, and ``device`` when it is CUDA) and seed it with ``seed``."""
    import torch

    devices = [device] if device is not None and torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed) % (2**63))
        yield


def warmup_schedule(
    optimizer: Any,
    *,
    warmup_steps: int,
    total_steps: int,
    decay: str = "cosine",
    min_factor: float = 0.0,
    step_size: int = 1,
    gamma: float = 0.5,
) -> Any:
    """LR factor: linear warmup over ``warmup_steps``, then ``cosine`` to ``min_factor``,
    ``constant``, or ``step`` (x ``gamma`` every ``step_size``). Counted in scheduler calls,
    so use it with ``scheduler_interval="step"`` for steps or ``"epoch"`` for epochs."""
    import torch

    warmup, total = max(0, int(warmup_steps)), max(1, int(total_steps))
    if decay not in ("cosine", "constant", "step"):
        raise ConfigError(f"decay: {decay!r} is not valid (valid: cosine, constant, step)")

    def factor(t: int) -> float:
        if t < warmup:
            return (t + 1) / (warmup + 1)
        after = t - warmup
        if decay == "constant":
            return 1.0
        if decay == "step":
            return gamma ** (after // max(1, int(step_size)))
        frac = min(1.0, after / max(1, total - warmup))
        return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * frac))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def predict_in_batches(fn: Callable[[Any], Any], x: Any, *, batch_size: int = 4096) -> Any:
    """``fn`` over ``x`` in slices under ``inference_mode``, concatenated (stays on the device)."""
    import torch

    with torch.inference_mode():
        return torch.cat([fn(x[s : s + batch_size]) for s in range(0, x.shape[0], batch_size)])


def _is_better(score: float, best: float | None, config: LoopConfig) -> bool:
    if best is None:
        return True
    if math.isnan(score):
        return False
    if math.isnan(best):
        return True
    if config.mode == "max":
        return score > best + config.min_delta
    return score < best - config.min_delta


def _label(name: str) -> str:
    head, _, tail = name.partition("_")
    return f"{head} {tail.upper()}" if tail else name


@dataclass(frozen=True)
class LoopHooks:
    """What runs around the steps besides the method's own step and validation."""

    scheduler: Any = None
    """An LR scheduler on the optimiser, stepped per epoch or per step (``config.scheduler_interval``)."""
    on_epoch_start: Callable[[int], None] | None = None
    """Called with the epoch number after ``model.train()``, before the epoch's first step."""


@dataclass
class _Tracker:
    """The best validated score so far, its epoch and weights, and epochs since."""

    config: LoopConfig
    best: float | None = None
    best_epoch: int = 0
    since_best: int = 0
    best_state: dict[str, Any] | None = None

    def update(self, model: Any, epoch: int, score: float) -> None:
        if _is_better(score, self.best, self.config):
            self.best, self.best_epoch, self.since_best = score, epoch, 0
            if self.config.restore_best:
                self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.since_best += 1


@dataclass
class _Run:
    """One fit's fixed pieces: the model, its optimiser and step, the device, batches and precision."""

    model: Any
    optimizer: Any
    step: StepFn
    config: LoopConfig
    hooks: LoopHooks
    device: Any
    bounds: list[tuple[int, int]]
    dtype: Any
    scaler: Any
    params: list[Any]
    n: int
    steps: int = 0


def train_loop(
    model: Any,
    optimizer: Any,
    step: StepFn,
    *,
    n: int,
    config: LoopConfig,
    validate: ValidateFn | None = None,
    hooks: LoopHooks | None = None,
    progress: Reporter | None = None,
) -> LoopResult:
    """Train ``model`` in place with ``step`` over ``n`` items; returns a :class:`LoopResult`.

    See the module docstring for the contract of ``step`` and ``validate``; ``hooks`` adds an LR
    scheduler and an epoch-start hook (:class:`LoopHooks`).
    """
    import torch

    n = int(n)
    if n < config.min_batch:
        raise ConfigError(f"{config.description}: {n} training items, need at least {config.min_batch}")
    run = _start(model, optimizer, step, config, hooks or LoopHooks(), n)
    total_steps, n_epochs = planned_steps(n, config), _planned_epochs(n, config)
    gen = torch.Generator().manual_seed(int(config.seed) % (2**63))
    task = reporter_or_null(progress).task(config.description, total=total_steps, status="")
    history: list[dict[str, float]] = []
    tracker, stopped = _Tracker(config), False
    try:
        for epoch in range(1, n_epochs + 1):
            record, t0 = _train_epoch(run, epoch, gen, task)
            if validate is not None:
                record.update(_validate(model, validate, config))
                tracker.update(model, epoch, record[config.monitor])
            else:
                tracker.best_epoch = epoch
            record["seconds"] = time.perf_counter() - t0
            history.append(record)
            status = _status(record, epoch, n_epochs, config, tracker.best, tracker.best_epoch)
            task.update(status=status)
            log.debug("%s: %s", config.description, status)
            out_of_budget = config.max_steps is not None and run.steps >= config.max_steps
            if config.patience and tracker.since_best >= config.patience and run.steps >= config.min_steps:
                stopped = True
                log.info("%s: early stop at epoch %d (best %s %.4f at epoch %d)", config.description, epoch,
                         config.monitor, tracker.best, tracker.best_epoch)
            if stopped or out_of_budget:
                task.update(completed=total_steps)
                break
    finally:
        task.close()
    if tracker.best_state is not None:
        model.load_state_dict(tracker.best_state)
    model.eval()
    best_score = float(tracker.best) if tracker.best is not None else float("nan")
    return LoopResult(tracker.best_epoch, best_score, history, stopped, run.steps, len(history))


def _start(model: Any, optimizer: Any, step: StepFn, config: LoopConfig, hooks: LoopHooks, n: int) -> _Run:
    """The device, batch bounds and precision (autocast dtype, fp16 gradient scaler) of a fit."""
    import torch

    from hagekit.device import resolve_precision

    device = next(iter(model.parameters())).device
    precision = resolve_precision(config.precision, device, default="bf16")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    params = [p for g in optimizer.param_groups for p in g["params"]]
    return _Run(model, optimizer, step, config, hooks, device, _batch_bounds(n, config), dtype, scaler, params, n)


def _train_epoch(run: _Run, epoch: int, gen: Any, task: Any) -> tuple[dict[str, float], float]:
    """One epoch of optimiser steps over a permutation drawn from ``gen``; its history record
    (step terms averaged) and start time."""
    import torch

    config, model = run.config, run.model
    model.train()
    t0 = time.perf_counter()
    if run.hooks.on_epoch_start is not None:
        run.hooks.on_epoch_start(epoch)
    perm = torch.randperm(run.n, generator=gen).to(run.device)
    sums: dict[str, torch.Tensor] = {}
    taken = 0
    for start, stop in run.bounds:
        if config.max_steps is not None and run.steps >= config.max_steps:
            break
        with torch.autocast(run.device.type, dtype=run.dtype) if run.dtype is not None else contextlib.nullcontext():
            out = run.step(perm[start:stop])
        terms = dict(out) if isinstance(out, Mapping) else {"loss": out}
        _optimizer_step(run, terms["loss"])
        run.steps += 1
        taken += 1
        for k, v in terms.items():
            v = v.detach().double()
            sums[k] = sums[k] + v if k in sums else v
        task.advance(1)
    if run.hooks.scheduler is not None and config.scheduler_interval == "epoch":
        run.hooks.scheduler.step()
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    record: dict[str, float] = {"epoch": float(epoch), "steps": float(run.steps)}
    record.update({k: float(v) / max(taken, 1) for k, v in sums.items()})
    check_finite_loss(record.get("loss", 0.0), epoch)
    record["train_seconds"] = time.perf_counter() - t0
    record["lr"] = float(run.optimizer.param_groups[0]["lr"])
    return record, t0


def _optimizer_step(run: _Run, loss: Any) -> None:
    """``zero_grad`` / ``backward`` / (grad clipping) / ``optimizer.step`` (scaled under fp16), then a per-step schedule."""
    import torch

    optimizer, clip = run.optimizer, run.config.grad_clip
    optimizer.zero_grad(set_to_none=True)
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        if clip is not None:
            run.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(run.params, clip)
        run.scaler.step(optimizer)
        run.scaler.update()
    else:
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(run.params, clip)
        optimizer.step()
    if run.hooks.scheduler is not None and run.config.scheduler_interval == "step":
        run.hooks.scheduler.step()


def _validate(model: Any, validate: ValidateFn, config: LoopConfig) -> dict[str, float]:
    """The validation metrics of the current weights (eval mode, inference mode)."""
    import torch

    model.eval()
    with torch.inference_mode():
        metrics = {k: float(v) for k, v in validate().items()}
    if config.monitor not in metrics:
        raise ConfigError(
            f"{config.description}: monitor {config.monitor!r} is not among the validation "
            f"metrics ({', '.join(metrics) or 'none'})"
        )
    return metrics


def _status(record: Mapping[str, float], epoch: int, n_epochs: int, config: LoopConfig,
            best: float | None, best_epoch: int) -> str:
    status = f"ep {epoch}/{n_epochs} loss {record.get('loss', float('nan')):.3f}"
    if config.monitor in record:
        status += f" {_label(config.monitor)} {record[config.monitor]:.3f} (best {best:.3f} @ {best_epoch})"
    return status
