"""``bench hest``: every task x fold x encoder of HEST-Bench, from stored patches to tables.

Order of work: read every task (bad folders fail first), build every encoder, refuse folds
whose test samples a ``ge:`` encoder saw (unless ``allow_leak``), embed each sample once per
base encoder (dealt over torchrun ranks or ``--shard K/N``; cached and resumable), then HEST's
protocol per fold (:mod:`hagekit.bench.hest.protocol`) and the tables (:mod:`.tables`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hagekit.bench.hest.embed import EncoderPlan, HestPatches, embed_sample, plan_encoder
from hagekit.bench.hest.protocol import FoldScores, ProtocolConfig, evaluate_fold
from hagekit.bench.hest.tasks import (
    HestSample,
    HestTask,
    list_tasks,
    open_hest_task,
    read_expression,
)
from hagekit.bench.leakage import leak_message, overlap
from hagekit.distributed import Shard
from hagekit.errors import ConfigError, ProvenanceError, at
from hagekit.progress import Reporter, reporter_or_null

__all__ = ["HestBenchRequest", "EncoderResult", "HestBenchResult", "run_hest_bench", "sample_patient"]

log = logging.getLogger(__name__)


@dataclass
class HestBenchRequest:
    """Everything ``bench hest`` needs, resolved once by the CLI."""

    data: Path
    encoders: list[str]
    out_dir: Path | None
    tasks: list[str] | None = None
    cache_dir: Path | None = None
    weights: Mapping[str, Path] = field(default_factory=dict)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    reference: str | None = None
    allow_leak: bool = False
    embed_batch_size: int = 64
    num_workers: int = 0
    device: str = "cpu"
    shard: Shard | None = None
    overwrite: bool = False


@dataclass
class EncoderResult:
    """One task x encoder: per-fold scores and which folds leak."""

    task: str
    encoder: str
    genes: list[str]
    folds: list[FoldScores]
    leaks: dict[int, list[str]] = field(default_factory=dict)

    @property
    def fold_means(self) -> np.ndarray:
        return np.array([f.mean for f in self.folds])

    @property
    def mean(self) -> float:
        return float(np.mean(self.fold_means))

    @property
    def std(self) -> float:
        return float(np.std(self.fold_means))  # population std over folds, as HEST's merge_fold_results


@dataclass
class HestBenchResult:
    """All results; ``embedded_only`` when this process only embedded its shard."""

    results: list[EncoderResult]
    encoders: list[str]
    tasks: list[str]
    reference: str | None
    config: dict[str, Any]
    out_dir: Path | None = None
    embedded_only: bool = False
    n_embedded: int = 0


def sample_patient(sample: HestSample) -> str:
    """The sample's patient (h5ad ``obs['patient']``, first value), else its id."""
    import h5py

    try:
        with h5py.File(sample.expr, "r") as h5:
            col = h5.get("obs/patient")
            if col is None:
                return sample.sample_id
            if isinstance(col, h5py.Group):  # categorical: codes + categories
                cats, codes = col["categories"][:], col["codes"][:1]
                value = cats[int(codes[0])] if codes.size and codes[0] >= 0 else sample.sample_id
            else:
                value = col[0]
    except (OSError, KeyError, IndexError):
        return sample.sample_id
    return value.decode() if isinstance(value, bytes) else str(value)


def _fold_leaks(task: HestTask, plan: EncoderPlan) -> dict[int, list[str]]:
    if not plan.trained:
        return {}
    out, same_patient = {}, []
    for f in task.folds:
        test_p = {sample_patient(s) for s in f.test}
        shared = test_p & {sample_patient(s) for s in f.train}
        # a fold that already trains on its test patient (a --split section task) is judged by section only
        hits = overlap(plan.trained, [s.sample_id for s in f.test], [] if shared else sorted(test_p))
        if shared and test_p & set(plan.trained.get("patients", [])):
            same_patient.append(str(f.index))
        if hits:
            out[f.index] = hits
    if same_patient:
        log.warning("%s on %s: folds %s train on their test patient themselves (section-level folds) and the "
                    "encoder saw that patient too; only sections are checked there", plan.spec, task.name,
                    ", ".join(same_patient))
    return out


def _resolve(req: HestBenchRequest) -> tuple[list[HestTask], list[EncoderPlan], dict[tuple[str, str], dict[int, list[str]]]]:
    if not req.encoders:
        raise ConfigError("--encoder: give at least one encoder (e.g. --encoder builtin --encoder ge:RUN)")
    if len(set(req.encoders)) != len(req.encoders):
        raise ConfigError(f"--encoder: duplicate encoders in {', '.join(req.encoders)}")
    if req.reference is not None and req.reference not in req.encoders:
        raise ConfigError(f"--reference: {req.reference!r} is not among --encoder ({', '.join(req.encoders)})")
    names = req.tasks or list_tasks(req.data)
    tasks = [open_hest_task(req.data / n) for n in names]
    plans = [plan_encoder(spec, weights=req.weights.get(spec), device=req.device) for spec in req.encoders]
    for p in plans:
        if p.head is not None and not p.trained:
            log.warning("%s: the sections it was trained on are not recorded; leakage cannot be checked", p.spec)
    leaks: dict[tuple[str, str], dict[int, list[str]]] = {}
    for task in tasks:
        for plan in plans:
            found = _fold_leaks(task, plan)
            if found and not req.allow_leak:
                i, hits = next(iter(found.items()))
                raise ProvenanceError(leak_message(plan.spec, f"task {task.name} fold {i}", hits))
            if found:
                log.warning("%s on %s: folds %s test samples it was trained on (--allow-leak: flagged)",
                            plan.spec, task.name, ", ".join(map(str, found)))
            leaks[(task.name, plan.spec)] = found
    return tasks, plans, leaks


def _base_key(plan: EncoderPlan) -> tuple[str, str, bool]:
    from hagekit.bench.downstream.linear_probe import base_key

    return base_key(plan.base)


def _embed_all(req: HestBenchRequest, tasks: Sequence[HestTask], plans: Sequence[EncoderPlan],
               progress: Reporter | None) -> tuple[dict[tuple[Any, str], np.ndarray], dict[str, HestPatches], int]:
    """Base features per (base encoder, sample) for this process's share; each base runs once per sample."""
    from hagekit.distributed import barrier, init_distributed, my_tasks

    patches = {f"{t.name}/{s.sample_id}": HestPatches.open(s, t.name) for t in tasks for s in t.samples}
    bases: dict[Any, Any] = {}
    for p in plans:
        bases.setdefault(_base_key(p), p.base)
    items = [(bk, sk) for bk in bases for sk in patches]
    ctx = init_distributed(req.device)
    if req.shard is not None:
        mine = [i for i in range(len(items)) if i % req.shard.count == req.shard.index]
    else:
        mine = my_tasks(len(items), ctx, [patches[sk].n for _, sk in items])
    feats: dict[tuple[Any, str], np.ndarray] = {}
    for i in mine:
        bk, sk = items[i]
        feats[(bk, sk)] = embed_sample(patches[sk], bases[bk], cache_dir=req.cache_dir, batch_size=req.embed_batch_size,
                                       device=req.device, num_workers=req.num_workers, progress=progress)
    if ctx.distributed or req.shard is not None:
        if req.cache_dir is None:
            raise ConfigError("--shard / torchrun: the ranks share embeddings through --cache-dir; give one")
        barrier(ctx)
        if req.shard is not None or not ctx.is_main:
            return {}, patches, len(mine)
        for bk, sk in items:  # rank 0: everything is in the cache now
            if (bk, sk) not in feats:
                feats[(bk, sk)] = embed_sample(patches[sk], bases[bk], cache_dir=req.cache_dir,
                                               batch_size=req.embed_batch_size, device=req.device)
    return feats, patches, len(mine)


def _inner_groups(train: Sequence[HestSample], patient: Mapping[str, str], expr: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per training spot, its patient (``--alpha nested`` groups); its sample when one patient trains."""
    key = patient if len({patient[s.sample_id] for s in train}) > 1 else {s.sample_id: s.sample_id for s in train}
    return np.concatenate([[key[s.sample_id]] * len(expr[s.sample_id]) for s in train])


def _evaluate(req: HestBenchRequest, tasks: Sequence[HestTask], plans: Sequence[EncoderPlan],
              feats: Mapping[tuple[Any, str], np.ndarray], patches: Mapping[str, HestPatches],
              leaks: Mapping[tuple[str, str], dict[int, list[str]]], progress: Reporter | None) -> list[EncoderResult]:
    from hagekit.bench.downstream.linear_probe import apply_head

    results = []
    rep = reporter_or_null(progress)
    for task in tasks:
        expr = {s.sample_id: read_expression(s, task.genes, patches[f"{task.name}/{s.sample_id}"].barcodes,
                                             normalize=req.protocol.normalize) for s in task.samples}
        patient = {s.sample_id: sample_patient(s) for s in task.samples}
        for plan in plans:
            x = {}
            for s in task.samples:
                base = feats[(_base_key(plan), f"{task.name}/{s.sample_id}")]
                x[s.sample_id] = base if plan.head is None else apply_head(plan.head, base, device=req.device)
            job = rep.task(f"HEST {task.name} {plan.spec}", total=len(task.folds))
            scores = []
            try:
                for f in task.folds:
                    groups = _inner_groups(f.train, patient, expr)
                    scores.append(evaluate_fold(
                        np.concatenate([x[s.sample_id] for s in f.train]), np.concatenate([expr[s.sample_id] for s in f.train]),
                        np.concatenate([x[s.sample_id] for s in f.test]), np.concatenate([expr[s.sample_id] for s in f.test]),
                        req.protocol, groups=groups))
                    job.advance(1, status=f"r {scores[-1].mean:.3f}")
            finally:
                job.close()
            results.append(EncoderResult(task.name, plan.spec, list(task.genes), scores, dict(leaks[(task.name, plan.spec)])))
    return results


def run_hest_bench(req: HestBenchRequest, progress: Reporter | None = None) -> HestBenchResult:
    """Run HEST-Bench for ``req``; writes results under ``req.out_dir`` (rank 0, unsharded)."""
    from hagekit.bench.hest.tables import write_hest_outputs

    req.protocol.validate()
    out = req.out_dir
    if out is not None and (out / "summary.json").exists() and not req.overwrite and req.shard is None:
        raise ConfigError(at(out, "results already exist; pass --overwrite to replace them"))
    tasks, plans, leaks = _resolve(req)
    feats, patches, n_done = _embed_all(req, tasks, plans, progress)
    config = {
        "data": str(req.data), "tasks": [t.name for t in tasks], "encoders": list(req.encoders),
        "protocol": asdict(req.protocol), "allow_leak": req.allow_leak, "cache_dir": str(req.cache_dir or ""),
        "encoder_info": {p.spec: {"name": str(p.bundle.name), "weights_sha256": str(p.bundle.weights_sha256),
                                  "base_encoder": str(p.base.name) if p.head is not None else None,
                                  "trained_on": p.trained} for p in plans},
        "n_folds": {t.name: len(t.folds) for t in tasks},
    }
    reference = req.reference or req.encoders[0]
    if not feats:
        return HestBenchResult([], list(req.encoders), [t.name for t in tasks], reference, config, out,
                               embedded_only=True, n_embedded=n_done)
    results = _evaluate(req, tasks, plans, feats, patches, leaks, progress)
    res = HestBenchResult(results, list(req.encoders), [t.name for t in tasks], reference, config, out, n_embedded=n_done)
    if out is not None:
        write_hest_outputs(res, out)
    return res
