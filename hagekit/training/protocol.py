"""The cross-validation protocol every method runs through: identical folds, trials,
train/validation splits, targets and metrics, so that comparisons are honest.

For each fold (a held-out section or patient) and trial, the training sections' spots are
split 4:1 into train/validation (seeded by seed, fold, trial), a fresh estimator is fitted,
and every test section is evaluated with :mod:`hagekit.metrics`. With ``out_dir`` the run
folder (:class:`hagekit.io.run_folder.RunFolder`) is written and finished trials are skipped
on rerun.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hagekit.distributed import DistContext, barrier, gather_to_all, my_tasks
from hagekit.errors import DataError, HagekitError, TrainingError, at
from hagekit.io.run_folder import RunFolder
from hagekit.metrics import METRIC_NAMES, evaluate_section, summarize
from hagekit.progress import Reporter, reporter_or_null
from hagekit.training.dataset import STDataset
from hagekit.training.splits import Fold, make_folds, train_val_split, trial_seed

__all__ = ["FoldContext", "Estimator", "ProtocolSettings", "ProtocolResult", "run_protocol", "summarize_rows"]

log = logging.getLogger(__name__)

ROW_KEYS = (
    "method", "fold", "trial", "section", "patient", *METRIC_NAMES,
    "n_spots", "n_genes", "n_constant_genes", "n_constant_pred",
    "n_train", "n_val", "fit_seconds", "predict_seconds",
)


@dataclass(frozen=True)
class FoldContext:
    """What a factory needs to build one estimator for one fold and trial."""

    fold: str
    trial: int
    seed: int
    genes: tuple[str, ...]
    train_sections: tuple[str, ...]
    test_sections: tuple[str, ...]
    out_dir: Path | None = None


class Estimator(Protocol):
    """sklearn-like regressor from features (N, D) to targets (N, G)."""

    def fit(self, X: np.ndarray, Y: np.ndarray, **kwargs: Any) -> Estimator: ...

    def predict(self, X: np.ndarray, **kwargs: Any) -> np.ndarray: ...


@dataclass(frozen=True)
class ProtocolSettings:
    """How :func:`run_protocol` runs: the folds and trials, and the run folder (if any) it keeps.

    ``split``: ``section`` or ``patient`` folds (``folds``: only these, else all); ``trials``
    seeded repeats with a ``val_fraction`` train/validation split of the training spots;
    ``method``: the name rows and the run folder record; ``config``: the method's settings
    recorded in config.json; ``save_models``: keep each trial's model; ``overwrite``: redo a
    run folder recorded with other settings instead of refusing it."""

    split: str = "section"
    folds: Sequence[str] | None = None
    trials: int = 5
    seed: int = 0
    val_fraction: float = 0.2
    method: str = "hage"
    out_dir: Path | str | None = None
    config: Mapping[str, Any] | None = None
    save_models: bool = True
    overwrite: bool = False


@dataclass
class ProtocolResult:
    """Rows (one per test section x trial), their summary, and per-gene PCCs."""

    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    per_gene: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    out_dir: Path | None = None


def call_accepting(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` with only the keyword arguments its signature accepts."""
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return fn(*args, **kwargs)
    return fn(*args, **{k: v for k, v in kwargs.items() if k in params})


def summarize_rows(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Overall mean ± std (over section x trial rows), the paper-style mean ± std over
    trials of the per-trial mean across sections, and per-section means."""
    overall = summarize(rows)
    by_trial: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        by_trial.setdefault((str(r.get("method", "")), int(r["trial"])), []).append(r)
    trial_means = [
        {m: float(np.nanmean([float(x[m]) for x in rs])) for m in METRIC_NAMES}
        for rs in by_trial.values()
    ]
    by_section: dict[str, list[dict]] = {}
    for r in rows:
        by_section.setdefault(str(r["section"]), []).append(r)
    per_section = {
        s: {m: float(np.nanmean([float(x[m]) for x in rs])) for m in METRIC_NAMES}
        for s, rs in by_section.items()
    }
    return {
        "overall": overall,
        "across_trials": summarize(trial_means),
        "per_section": per_section,
        "n_rows": len(rows),
        "n_constant_genes_max": max((int(r.get("n_constant_genes", 0)) for r in rows), default=0),
    }


def _protocol_record(data: STDataset, settings: ProtocolSettings) -> dict[str, Any]:
    """The ``protocol`` part of config.json: the settings and inputs that identify the run."""
    return {
        "dataset": data.dataset,
        "method": settings.method,
        "split": settings.split,
        "trials": settings.trials,
        "seed": settings.seed,
        "val_fraction": settings.val_fraction,
        "target": data.target,
        "n_genes": len(data.genes),
        "sections": list(data.sections),
        "features": {k: v for k, v in data.feature_attrs.items()},
        "inputs": data.inputs_digest(),
    }


def run_protocol(
    data: STDataset,
    factory: Callable[[FoldContext], Estimator],
    settings: ProtocolSettings | None = None,
    *,
    dist: DistContext | None = None,
    progress: Reporter | None = None,
    estimator_type: type | None = None,
) -> ProtocolResult:
    """Run ``factory``'s estimators over every fold x trial and evaluate the test sections.

    ``settings``: folds, trials, seeds and the run folder (:class:`ProtocolSettings`; default:
    five trials over section folds, no run folder). With ``dist`` (torchrun ranks,
    :func:`hagekit.distributed.init_distributed`) the fold x trial tasks are dealt over the
    ranks; every rank writes its own trial folders, the rows are gathered, and rank 0 writes
    the tables. Every rank returns the full result. ``estimator_type`` (the class ``factory``
    builds) lets a rerun check the saved models of finished trials with its ``load`` alone;
    without it an estimator is built per finished trial just to learn its class (its inputs,
    e.g. per-fold gene embeddings, can be costly).
    """
    s = settings if settings is not None else ProtocolSettings()
    if s.trials < 1:
        from hagekit.errors import ConfigError

        raise ConfigError(f"--trials: must be >= 1, got {s.trials}")
    trials, seed, val_fraction, method = s.trials, s.seed, s.val_fraction, s.method
    fold_list = make_folds(data.patients(), split=s.split, folds=s.folds)
    record = _protocol_record(data, s)
    folder = RunFolder(Path(s.out_dir)) if s.out_dir is not None else None
    dctx = dist if dist is not None else DistContext()
    for fold in fold_list:  # every split is valid (--val-fraction, spots) before the run folder is touched
        _split_records(fold, trials, seed, val_fraction, data)
    if folder is not None and dctx.is_main:
        folder.start({"protocol": record, "config": dict(s.config or {})}, data.genes, overwrite=s.overwrite)
    barrier(dctx)  # the run folder is checked (and cleared with --overwrite) before any rank trains
    mine = set(my_tasks(len(fold_list) * trials, dctx))
    rep = reporter_or_null(progress)
    for fold in fold_list:
        if s.split == "section" and fold.same_patient_in_train:
            log.info("fold %s: training includes sections of the same patient (%s); "
                     "use --split patient for a leak-free estimate",
                     fold.name, ", ".join(fold.same_patient_in_train))
    rows_of: dict[int, list[dict[str, Any]]] = {}
    per_gene: dict[str, dict[str, list[float]]] = {}
    splits_record: list[dict[str, Any]] = []
    outer = rep.task(f"{method}: folds x trials", total=len(mine))
    job = _TrialJob(data, factory, method, seed, val_fraction, folder, s.save_models, estimator_type, progress, rep,
                    outer, rows_of, per_gene)
    waiting: list[tuple[int, Fold, int]] = []  # trials another process holds the lock of
    for f_i, fold in enumerate(fold_list):
        if not any(f_i * trials + t in mine for t in range(trials)):
            splits_record.extend(_split_records(fold, trials, seed, val_fraction, data))
            continue
        stacked = data.stack(fold.train_sections)
        for trial in range(trials):
            tr, va = train_val_split(len(stacked[0]), seed=seed, fold=fold.name, trial=trial,
                                     val_fraction=val_fraction)
            splits_record.append({**fold.as_dict(), "trial": trial, "seed": trial_seed(seed, fold.name, trial),
                                  "n_train": int(len(tr)), "n_val": int(len(va))})
            task_id = f_i * trials + trial
            if task_id in mine and not job.run(task_id, fold, trial, stacked, wait=False):
                waiting.append((task_id, fold, trial))
    for task_id, fold, trial in waiting:  # trained by another process meanwhile: wait, then read (or take over)
        rep.message(f"{method} {fold.name} trial {trial}: another process is training it; waiting")
        job.run(task_id, fold, trial, data.stack(fold.train_sections), wait=True)
    outer.close()
    for part_rows, part_genes in gather_to_all((rows_of, per_gene), dctx):
        rows_of.update(part_rows)
        per_gene.update(part_genes)
    rows = [r for t in sorted(rows_of) for r in rows_of[t]]
    summary = summarize_rows(rows)
    if folder is not None and dctx.is_main:
        _write_tables(folder, rows, summary, splits_record, record)
    return ProtocolResult(rows, summary, per_gene, folder.path if folder is not None else None)


@dataclass
class _TrialJob:
    """One fold x trial of :func:`run_protocol`: reuse its saved result or train, evaluate and
    save it, under the trial's lock file (``<fold>/.trial<k>.lock``), so that processes sharing
    a run folder train each trial exactly once."""

    data: STDataset
    factory: Callable[[FoldContext], Estimator]
    method: str
    seed: int
    val_fraction: float
    folder: RunFolder | None
    save_models: bool
    estimator_type: type | None
    progress: Reporter | None
    rep: Any
    outer: Any
    rows_of: dict[int, list[dict[str, Any]]]
    per_gene: dict[str, dict[str, list[float]]]

    def run(self, task_id: int, fold: Fold, trial: int, stacked: tuple, *, wait: bool) -> bool:
        """Do the trial; False (nothing done) when another process holds its lock and not ``wait``."""
        if self.folder is None:
            self._do(task_id, fold, trial, stacked)
            return True
        from hagekit.io.locks import ItemLock

        delay = 0.2
        while True:
            lock = self.folder.try_lock_trial(fold.name, trial)
            if isinstance(lock, ItemLock):
                break
            if not wait:
                return False
            time.sleep(delay)
            delay = min(2.0, delay * 1.5)
        try:
            self._do(task_id, fold, trial, stacked)
        finally:
            lock.release()
        return True

    def _do(self, task_id: int, fold: Fold, trial: int, stacked: tuple) -> None:
        X_all, Y_all, S_all, sec_idx = stacked
        data, method = self.data, self.method
        tseed = trial_seed(self.seed, fold.name, trial)
        tr, va = train_val_split(len(X_all), seed=self.seed, fold=fold.name, trial=trial,
                                 val_fraction=self.val_fraction)
        tdir = self.folder.trial_dir(fold.name, trial) if self.folder is not None else None
        ctx = FoldContext(fold.name, trial, tseed, tuple(data.genes), fold.train_sections, fold.test_sections, tdir)
        saved = _saved_trial(self.folder, ctx, self.factory, n_features=X_all.shape[1], check_model=self.save_models,
                             estimator_type=self.estimator_type)
        if saved is not None:
            self.rows_of[task_id] = saved["rows"]
            self.per_gene.update({f"{fold.name}/{trial}/{k}": v for k, v in saved.get("per_gene_pcc", {}).items()})
            self.rep.message(f"{method} {fold.name} trial {trial}: done earlier, skipped")
            self.outer.advance(1)
            return
        est = self.factory(ctx)
        t0 = time.perf_counter()
        try:
            call_accepting(est.fit, X_all[tr], Y_all[tr], X_val=X_all[va], Y_val=Y_all[va],
                  spatial=S_all[tr], spatial_val=S_all[va], groups=sec_idx[tr],
                  groups_val=sec_idx[va], progress=self.progress)
        except TrainingError as exc:
            raise TrainingError(f"{method} fold {fold.name} trial {trial}: {exc}; nothing saved for this trial") from None
        fit_s = time.perf_counter() - t0
        trial_rows: list[dict[str, Any]] = []
        trial_genes: dict[str, list[float]] = {}
        for sec in fold.test_sections:
            sd = data.sections[sec]
            X_t, _, S_t, _ = data.stack([sec])
            t1 = time.perf_counter()
            pred = np.asarray(call_accepting(est.predict, X_t, spatial=S_t), dtype=np.float32)
            pred_s = time.perf_counter() - t1
            if pred.shape != sd.targets.shape:
                raise RuntimeError(f"{method} predicted {pred.shape}, expected {sd.targets.shape}")
            if not np.isfinite(pred).all():
                raise TrainingError(f"{method} fold {fold.name} trial {trial}: predictions for {sec} are not "
                                    "finite (training diverged; lower --lr or check the inputs); nothing saved for this trial")
            m, r = evaluate_section(sd.targets, pred, return_per_gene=True)
            row = {"method": method, "fold": fold.name, "trial": trial, "section": sec,
                   "patient": sd.patient, **m.as_dict(), "n_train": int(len(tr)),
                   "n_val": int(len(va)), "fit_seconds": fit_s, "predict_seconds": pred_s}
            trial_rows.append({k: row[k] for k in ROW_KEYS})
            trial_genes[sec] = [None if not np.isfinite(v) else float(v) for v in r]
        self.rows_of[task_id] = trial_rows
        self.per_gene.update({f"{fold.name}/{trial}/{k}": v for k, v in trial_genes.items()})
        if self.folder is not None:
            self.folder.write_trial(fold.name, trial, {"rows": trial_rows, "per_gene_pcc": trial_genes},
                                    est.save if self.save_models and hasattr(est, "save") else None)
        last = trial_rows[-1]
        self.outer.advance(1, status=f"{fold.name}/{trial} pcc {last['pcc_all']:.3f}")
        log.info("%s fold %s trial %d: PCC(all) %s", method, fold.name, trial,
                 ", ".join(f"{r['section']}={r['pcc_all']:.3f}" for r in trial_rows))


def _split_records(fold: Fold, trials: int, seed: int, val_fraction: float, data: STDataset) -> list[dict[str, Any]]:
    """The splits.json records of a fold this rank does not train (same numbers as its owner's)."""
    n = sum(len(data.sections[s].targets) for s in fold.train_sections)
    out = []
    for trial in range(trials):
        tr, va = train_val_split(n, seed=seed, fold=fold.name, trial=trial, val_fraction=val_fraction)
        out.append({**fold.as_dict(), "trial": trial, "seed": trial_seed(seed, fold.name, trial),
                    "n_train": int(len(tr)), "n_val": int(len(va))})
    return out


def _saved_trial(folder: RunFolder | None, ctx: FoldContext, factory: Callable[[FoldContext], Estimator], *,
                 n_features: int, check_model: bool, estimator_type: type | None = None) -> dict[str, Any] | None:
    """A finished trial's saved result, validated; ``None`` (redo it) when absent or damaged.

    Checked: ``metrics.json`` parses and covers this fold's test sections with one PCC per
    panel gene; with models saved, every ``.safetensors`` is structurally whole and, where
    the estimator can ``load`` itself, it loads with this run's feature width.
    """
    tdir = ctx.out_dir
    if folder is None or tdir is None or not (tdir / "metrics.json").exists():
        return None
    try:
        saved = folder.read_trial(ctx.fold, ctx.trial)
        if saved is None:
            return None
        rows = saved.get("rows")
        if not isinstance(rows, list) or sorted(str(r.get("section")) for r in rows) != sorted(ctx.test_sections):
            raise DataError(at(tdir / "metrics.json", f"does not cover the test sections {', '.join(ctx.test_sections)}"))
        if any(len(v) != len(ctx.genes) for v in (saved.get("per_gene_pcc") or {}).values()):
            raise DataError(at(tdir / "metrics.json", f"per-gene PCCs are not {len(ctx.genes)} long"))
        if check_model:
            _check_saved_model(ctx, estimator_type or type(factory(ctx)), n_features)
    except (HagekitError, KeyError, TypeError, AttributeError) as exc:
        log.warning("%s: saved trial is damaged (%s); training it again", tdir, exc)
        return None
    return saved


def _check_saved_model(ctx: FoldContext, kind: type, n_features: int) -> None:
    """The trial folder's model, saved by an estimator of class ``kind``, is whole and fits this run."""
    from hagekit.io.tensorfile import safetensors_shapes

    tdir = ctx.out_dir
    assert tdir is not None
    if not callable(getattr(kind, "save", None)):
        return
    if not any(p.name != "metrics.json" for p in tdir.iterdir()):
        raise DataError(at(tdir, "no saved model"))
    for path in sorted(tdir.glob("*.safetensors")):
        safetensors_shapes(path)
    load = getattr(kind, "load", None)
    if callable(load):
        loaded = load(tdir)
        # context methods see [x, neighbour mean]: the run's width is that of one spot's features
        width = getattr(loaded, "n_spot_features_", getattr(loaded, "n_features_in_", n_features))
        if int(width) != int(n_features):
            raise DataError(at(tdir, f"model takes {width} features, the run's features have {n_features}"))


def _write_tables(folder: RunFolder, rows: list[dict[str, Any]], summary: dict[str, Any],
                  splits_record: list[dict[str, Any]], record: dict[str, Any]) -> None:
    """metrics.csv, splits.json and summary.json of a finished run."""
    folder.write_tables(
        rows, ROW_KEYS,
        splits={"split": record["split"], "seed": record["seed"], "val_fraction": record["val_fraction"],
                "trials": splits_record},
        summary={"method": record["method"], "dataset": record["dataset"], "split": record["split"], **summary},
    )
