"""Run several methods through the shared protocol and build the paper-style comparison.

Every method sees the same frozen features, folds, train/validation splits, targets and
metrics (``hagekit.training.protocol``). Outputs: a Table-1-like table (mean ± std over
section x trial rows, MSE relative to the per-gene ``mean`` floor, seconds to fit and to
predict), per-section CSV, a paired comparison of a reference method (HAGE) against each
other method (wins per section and a Wilcoxon signed-rank p-value), and a figure of
per-section PCC(all) per method. Markdown and CSV, so the tables paste into a paper.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hagekit.baselines import list_methods, make_method, method_accepts
from hagekit.bench.expression.tables import BenchResult, assemble, features_header, write_outputs
from hagekit.config import RunSettings
from hagekit.errors import ConfigError, DataError, at
from hagekit.io.atomic import check_output_dir
from hagekit.progress import Reporter, reporter_or_null
from hagekit.study import StudyInputs

__all__ = [
    "MethodSpec",
    "hage_spec",
    "run_methods",
    "Schedule",
    "EMBEDDING_SETTINGS",
    "takes_embeddings",
    "default_reference",
    "bench_baselines",
    "load_bench_inputs",
    "parse_methods",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MethodSpec:
    """One row of the comparison: a display ``name``, its ``kind`` (a registered method) and its
    estimator parameters (``set_params`` keywords; HAGE config fields as ``config__<field>``,
    see :func:`hage_spec`)."""

    name: str
    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)


def hage_spec(name: str, overrides: Mapping[str, Any]) -> MethodSpec:
    """A HAGE row whose :class:`HAGEConfig` differs from the run's by ``overrides``."""
    return MethodSpec(name, "hage", {f"config__{k}": v for k, v in overrides.items()})


class _Factory:
    """Builds one estimator per fold x trial from the method registry (picklable, so folds can
    run in worker processes). ``context`` holds what every method may take (``device``, HAGE's
    ``config`` and ``gene_embeddings``); each method receives the parts its constructor accepts."""

    def __init__(self, spec: MethodSpec, context: Mapping[str, Any]) -> None:
        self.spec = spec
        self.context = dict(context)

    def on_device(self, device: str) -> _Factory:
        """The same method on another device (``--jobs`` spreads tasks over the GPUs)."""
        params = dict(self.spec.params)
        if "device" in params:
            params["device"] = device
        return _Factory(MethodSpec(self.spec.name, self.spec.kind, params), {**self.context, "device": device})

    def __call__(self, ctx: Any) -> Any:
        from hagekit.genes.per_fold import embeddings_for

        context = {**self.context, "random_state": ctx.seed, "genes": list(ctx.genes),
                   "label": f"{self.spec.name} {ctx.fold}/{ctx.trial}"}
        if method_accepts(self.spec.kind, "gene_embeddings"):  # per-fold embeddings: this fold's set
            context["gene_embeddings"] = embeddings_for(context.get("gene_embeddings"), ctx.train_sections)
        return make_method(self.spec.kind, context=context, **dict(self.spec.params))


def _run_one(data: Any, factory: _Factory, fold: str, kw: dict[str, Any], threads: int | None) -> list[dict]:
    """Run one method on one fold (all trials); in worker processes, torch uses ``threads``."""
    from hagekit.training.protocol import ProtocolSettings, run_protocol

    if threads is not None and method_accepts(factory.spec.kind, "device"):
        import torch

        torch.set_num_threads(threads)
    settings = ProtocolSettings(folds=[fold], method=factory.spec.name,
                                **{k: v for k, v in kw.items() if k != "progress"})
    return run_protocol(data, factory, settings, progress=kw.get("progress")).rows


EMBEDDING_SETTINGS = frozenset({"hage", "gene_embeddings", "gene_embeddings_sha256", "allow_leak", "leaked_sections",
                                "per_fold_embeddings",
                                "config_file"})
"""Bench settings that only the runs of methods taking gene embeddings (and so HAGE's config)
record (another method's run records its resolved ``params``, which is what it takes from a
config file): changing them does not invalidate, and so does not recompute, its resumable run folder."""


def takes_embeddings(method: str) -> bool:
    """Whether ``method`` needs the panel's gene embeddings and the run's HAGE config (its class
    accepts ``gene_embeddings``): decided by capability, never by name."""
    return method_accepts(method, "gene_embeddings")


@dataclass(frozen=True)
class Schedule:
    """How the (method, fold) tasks run: ``device``, ``n_jobs`` worker processes, one resumable run
    folder per method and fold under ``runs_dir`` (None: none), recomputing finished runs with
    ``overwrite``, saving fitted models with ``save_models``."""

    device: str = "cpu"
    n_jobs: int = 1
    runs_dir: Path | None = None
    overwrite: bool = False
    save_models: bool = False


def run_methods(
    data: Any,
    specs: Sequence[MethodSpec],
    settings: RunSettings | None = None,
    *,
    hage_config: Any = None,
    gene_embeddings: Any = None,
    schedule: Schedule | None = None,
    config: Mapping[str, Any] | None = None,
    progress: Reporter | None = None,
) -> list[dict[str, Any]]:
    """Every spec x fold x trial through :func:`run_protocol` under ``settings`` (split, folds,
    trials, seed, val_fraction); returns all metric rows.

    ``schedule.n_jobs > 1`` runs (method, fold) tasks in worker processes with one torch thread
    each (timings then include contention; on CUDA, task i runs on GPU i mod n_gpus); under
    torchrun the tasks are dealt over the ranks (each on its own GPU) and every rank gets all
    rows back. ``gene_embeddings``: a (G, d) array, or a
    :class:`~hagekit.genes.per_fold.FoldEmbeddings` that gives each fold's model the set trained
    on its training sections (trained here, once per fold); methods that take them also take
    ``hage_config``.
    """
    from hagekit.distributed import gather_to_all, init_distributed, my_tasks
    from hagekit.training.splits import make_folds

    settings = settings or RunSettings()
    schedule = schedule or Schedule()
    if int(schedule.n_jobs) < 1:
        raise ConfigError(f"--jobs: must be >= 1 worker process, got {schedule.n_jobs}")
    fold_list = make_folds(data.patients(), split=settings.split, folds=settings.folds)
    if hasattr(data, "inputs_digest"):
        data.inputs_digest()  # hashed once here, carried to every task (and worker) with the data
    context = {"config": hage_config, "gene_embeddings": gene_embeddings, "device": schedule.device}
    _check_specs(specs, context)
    all_tasks = [(_Factory(s, context), fold.name) for s in specs for fold in fold_list]
    dctx = init_distributed(schedule.device)
    mine = my_tasks(len(all_tasks), dctx)
    tasks = [all_tasks[i] for i in mine]
    _train_fold_embeddings(gene_embeddings, fold_list, tasks)
    plan = _TaskPlan(settings, schedule, dict(config or {}))
    rows = _run_tasks(data, tasks, plan, 1 if dctx.distributed else schedule.n_jobs, progress)
    if dctx.distributed:  # every rank's rows, in the one task order
        by_task = {t: r for part in gather_to_all(dict(zip(mine, _split_rows(rows, tasks), strict=True)), dctx)
                   for t, r in part.items()}
        rows = [r for t in sorted(by_task) for r in by_task[t]]
    return rows


def _check_specs(specs: Sequence[MethodSpec], context: Mapping[str, Any]) -> None:
    """Refuse duplicate names, a method without the gene embeddings it takes, and a bad
    parameter, before anything runs."""
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"--methods: duplicate method names in {', '.join(names)}")
    for s in specs:
        if takes_embeddings(s.kind) and (context.get("gene_embeddings") is None or context.get("config") is None):
            raise ConfigError(f"--gene-embeddings: {s.kind} needs the panel's gene embeddings")
    for s in specs:
        make_method(s.kind, context=context, **dict(s.params))


@dataclass(frozen=True)
class _TaskPlan:
    """What every (method, fold) task shares: the protocol settings, the schedule, and the bench
    settings its run folder records."""

    settings: RunSettings
    schedule: Schedule
    config: dict[str, Any]

    def kwargs(self, f: _Factory, fold: str, progress: Reporter | None) -> dict[str, Any]:
        """:func:`run_protocol`'s keywords for ``f``'s method on ``fold``."""
        s, sched = self.settings, self.schedule
        out = sched.runs_dir / f.spec.name / fold if sched.runs_dir is not None else None
        embeds = takes_embeddings(f.spec.kind)
        shared = {k: v for k, v in self.config.items() if embeds or k not in EMBEDDING_SETTINGS}
        cfg = {"method": f.spec.name, "kind": f.spec.kind, "params": dict(f.spec.params), **shared}
        return dict(split=s.split, trials=s.trials, seed=s.seed, val_fraction=s.val_fraction, out_dir=out,
                    config=cfg, save_models=sched.save_models, overwrite=sched.overwrite, progress=progress)


def _run_tasks(data: Any, tasks: Sequence[tuple[_Factory, str]], plan: _TaskPlan, n_jobs: int,
               progress: Reporter | None) -> list[dict[str, Any]]:
    """This process's tasks, one after another or in ``n_jobs`` worker processes."""
    from hagekit.distributed import round_robin_device

    rep = reporter_or_null(progress)
    rows: list[dict[str, Any]] = []
    n_jobs = max(1, min(int(n_jobs), len(tasks)))
    if n_jobs == 1:
        task = rep.task("methods x folds", total=len(tasks))
        for f, fold in tasks:
            task.update(status=f"{f.spec.name} {fold}")
            rows.extend(_run_one(data, f, fold, plan.kwargs(f, fold, progress), None))
            task.advance(1)
        task.close()
        return rows
    from joblib import Parallel, delayed

    device = plan.schedule.device
    task = rep.task(f"methods x folds ({n_jobs} workers)", total=len(tasks))
    results = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator")(
        delayed(_run_one)(data, f.on_device(round_robin_device(device, t)), fold, plan.kwargs(f, fold, None), 1)
        for t, (f, fold) in enumerate(tasks)
    )
    for (f, fold), res in zip(tasks, results, strict=True):
        rows.extend(res)
        task.advance(1, status=f"{f.spec.name} {fold}")
    task.close()
    return rows


def _train_fold_embeddings(gene_embeddings: Any, fold_list: Sequence[Any],
                           tasks: Sequence[tuple[_Factory, str]]) -> None:
    """Train (or read) per-fold embeddings once per fold here, before tasks fan out to workers
    that would otherwise each train the same fold's set; a fixed array needs nothing."""
    from hagekit.genes.per_fold import embeddings_for

    needed = {fold for f, fold in tasks if method_accepts(f.spec.kind, "gene_embeddings")}
    for fold in fold_list:
        if fold.name in needed:
            embeddings_for(gene_embeddings, fold.train_sections)


def _split_rows(rows: list[dict[str, Any]], tasks: Sequence[tuple[_Factory, str]]) -> list[list[dict[str, Any]]]:
    """``rows`` (in task order) cut back into one list per (method, fold) task."""
    out: list[list[dict[str, Any]]] = [[] for _ in tasks]
    where = {(f.spec.name, fold): i for i, (f, fold) in enumerate(tasks)}
    for r in rows:
        out[where[(str(r["method"]), str(r["fold"]))]].append(r)
    return out


# -- from files: what the CLI calls -------------------------------------------------------------


@dataclass
class BenchInputs:
    """Resolved inputs shared by baselines, ablation and grid."""

    data: Any
    hage_config: Any
    settings: Any
    gene_embeddings: np.ndarray | None
    method_params: dict[str, dict[str, Any]]
    warnings: list[str]
    record: dict[str, Any]
    fold_embeddings: Any = None
    """A :class:`~hagekit.genes.per_fold.FoldEmbeddings` when ``gene_embeddings`` (the file's)
    would leak a held-out section: each fold's HAGE must use its set instead (``hage_embeddings``)."""

    @property
    def hage_embeddings(self) -> Any:
        """What HAGE gets: the per-fold embeddings when set, else the file's array; pass it to
        :func:`~hagekit.genes.per_fold.embeddings_for` with a model's training sections."""
        return self.fold_embeddings if self.fold_embeddings is not None else self.gene_embeddings

    def settings_record(self) -> dict[str, Any]:
        """Protocol settings and inputs for summary.json (per-fold embeddings: cache, files, and
        which of them this process trained)."""
        s = self.settings
        out = {**{k: getattr(s, k) for k in ("split", "folds", "trials", "seed", "val_fraction", "target")},
               **self.record}
        if self.fold_embeddings is not None:
            out["per_fold_embeddings"] = {**out["per_fold_embeddings"],
                                          "trained": [str(p) for p in self.fold_embeddings.trained]}
        return out


def parse_methods(methods: Sequence[str] | None) -> list[str]:
    """Validate ``--methods``; ``None`` means every method; ``mean`` is always included first."""
    known = list_methods()
    chosen = [m.strip().lower() for m in (methods or known) if m.strip()]
    unknown = [m for m in chosen if m not in known]
    if unknown:
        raise ConfigError(f"--methods: unknown method(s) {', '.join(unknown)} (choose from {', '.join(known)})")
    chosen = list(dict.fromkeys(chosen))
    if "mean" not in chosen:
        chosen.insert(0, "mean")
    return chosen


def load_bench_inputs(
    inputs: StudyInputs,
    *,
    need_embeddings: bool,
    config_file: Path | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    sections: Sequence[str] | None = None,
    allow_per_fold: bool = False,
    progress: Reporter | None = None,
) -> BenchInputs:
    """Resolve settings (defaults < recipe < file < flags), load the dataset and, when a chosen
    method takes them (``need_embeddings``), the gene embeddings.

    Embeddings trained on a held-out section are refused (``allow_leak``: used, with a warning)
    unless ``allow_per_fold`` and the run setting ``per_fold_embeddings`` are on: then
    ``fold_embeddings`` is set and the caller must give each model the set trained on its own
    training sections (``embeddings_for(inputs.hage_embeddings, train_sections)``).
    """
    import dataclasses

    from hagekit.io.genelist import read_gene_list
    from hagekit.training.dataset import load_dataset
    from hagekit.training.run import plan_gene_embeddings
    from hagekit.training.splits import make_folds

    hage_config, settings, method_params = _bench_settings(config_file, overrides, inputs.dataset)
    if not inputs.genes_path.is_file():
        raise DataError(at(inputs.genes_path, "gene panel not found (--genes)"))
    genes = read_gene_list(inputs.genes_path)
    emb = None
    if need_embeddings:
        if inputs.embeddings_path is None or not inputs.embeddings_path.is_file():
            raise DataError(at(inputs.embeddings_path or "--gene-embeddings",
                               "gene embeddings not found; HAGE needs them (or drop hage from --methods)"))
        from hagekit.genes.embeddings import embeddings_for_panel

        emb = embeddings_for_panel(inputs.embeddings_path, genes)
    else:
        inputs = dataclasses.replace(inputs, embeddings_path=None)
    data = load_dataset(inputs.data_root, inputs.dataset, inputs.features_dir, genes, sections=sections,
                        target=settings.target, progress=progress)
    folds = make_folds(data.patients(), split=settings.split, folds=settings.folds)
    plan_settings = settings if allow_per_fold else dataclasses.replace(settings, per_fold_embeddings=False)
    per_fold, warnings, leak = plan_gene_embeddings(folds, plan_settings, inputs, genes=genes,
                                                    dim=emb.shape[1] if emb is not None else 0, progress=progress)
    record = _inputs_record(inputs, settings, leak, per_fold, folds, config_file)
    return BenchInputs(data, hage_config, settings, emb, method_params, warnings, record, per_fold)


def _bench_settings(config_file: Path | str | None, overrides: Mapping[str, Any] | None,
                    dataset: str) -> tuple[Any, RunSettings, dict[str, dict[str, Any]]]:
    """HAGE's config, the run settings and each method's parameters, in the one precedence of
    :func:`hagekit.config.resolve_layers`; ``[baselines.<method>]`` must name registered methods."""
    from hagekit.config import resolve_layers
    from hagekit.training.run import settings_from

    layers = resolve_layers(config_file, overrides, dataset=dataset)
    known = list_methods()
    unknown = sorted(set(layers.methods) - set(known))
    if unknown:
        raise ConfigError(f"{layers.source}: [baselines]: unknown method(s) {', '.join(unknown)} "
                          f"(choose from {', '.join(known)})")
    hage_config, settings = settings_from(layers)
    return hage_config, settings, layers.methods


def _inputs_record(inputs: StudyInputs, settings: RunSettings, leak: list[str], per_fold: Any,
                   folds: Sequence[Any], config_file: Path | str | None) -> dict[str, Any]:
    """The inputs as summary.json and each run's config.json record them (absolute paths; the
    embeddings' checksum when a method took them)."""
    emb_path = inputs.embeddings_path
    return {
        "data_root": str(inputs.data_root.resolve()),
        "features_dir": str(inputs.features_dir.resolve()),
        "genes_path": str(inputs.genes_path.resolve()),
        "gene_embeddings": str(emb_path.resolve()) if emb_path is not None else None,
        "gene_embeddings_sha256": _file_sha256(emb_path) if emb_path is not None else None,
        "allow_leak": settings.allow_leak,
        "leaked_sections": leak,
        "per_fold_embeddings": None if per_fold is None else {
            "cache_dir": str(per_fold.cache_dir.resolve()), "seed": per_fold.seed,
            "files": {f.name: str(per_fold.path_for(f.train_sections).resolve()) for f in folds}},
        "config_file": str(config_file) if config_file else None,
    }


def _file_sha256(path: Path) -> str:
    from hagekit.training.run import file_sha256

    return file_sha256(path)


def baseline_specs(methods: Sequence[str], *, epochs: int | None, device: str,
                   method_params: Mapping[str, Mapping[str, Any]]) -> list[MethodSpec]:
    """One :class:`MethodSpec` per method: its ``[baselines.<method>]`` parameters over ``device``
    (for those that take one), under ``--epochs`` (a flag wins over the file; methods that take a
    HAGE config get their epochs from it)."""
    specs = []
    for m in methods:
        params: dict[str, Any] = {}
        takes_epochs = epochs is not None and method_accepts(m, "epochs")
        if takes_epochs:
            params["epochs"] = int(epochs)  # type: ignore[arg-type]
        if method_accepts(m, "device"):
            params["device"] = device
        params.update(method_params.get(m, {}))
        if takes_epochs:
            params["epochs"] = int(epochs)  # type: ignore[arg-type]
        make_method(m, **params)  # validate parameters before anything runs
        specs.append(MethodSpec(m, m, params))
    return specs


def default_reference(methods: Sequence[str]) -> str | None:
    """The method the others are compared against: the first that takes gene embeddings (HAGE
    and its variants), else the first after ``mean``."""
    return next((m for m in methods if takes_embeddings(m)), next((m for m in methods if m != "mean"), None))


def bench_baselines(
    inputs: StudyInputs,
    out: Path | str,
    *,
    methods: Sequence[str] | None = None,
    config_file: Path | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    reference: str | None = None,
    schedule: Schedule | None = None,
    progress: Reporter | None = None,
) -> tuple[BenchResult, list[str]]:
    """``hagekit bench baselines``: every method on identical inputs; tables into ``out``.

    ``overrides``: run settings (split, folds, trials, seed, val_fraction, target) and HAGE
    settings (epochs, ...); ``epochs`` also reaches the methods that take it. ``reference``
    defaults to :func:`default_reference`. ``schedule``: device, jobs, overwrite and save_models
    (its ``runs_dir`` is ``out/runs``).
    """
    import dataclasses

    schedule = schedule or Schedule()
    if int(schedule.n_jobs) < 1:
        raise ConfigError(f"--jobs: must be >= 1 worker process, got {schedule.n_jobs}")
    chosen = parse_methods(methods)
    out = Path(out)
    check_output_dir(out, "--out")  # a folder of finished runs resumes; --overwrite reaches each run
    embeds = any(takes_embeddings(m) for m in chosen)
    loaded = load_bench_inputs(inputs, need_embeddings=embeds, config_file=config_file, overrides=overrides,
                               allow_per_fold=True, progress=progress)
    specs = baseline_specs(chosen, epochs=(overrides or {}).get("epochs"), device=schedule.device,
                           method_params=loaded.method_params)
    if reference is None:
        reference = default_reference(chosen)
    elif reference not in chosen:
        raise ConfigError(f"--reference: {reference!r} is not among --methods ({', '.join(chosen)})")
    s = loaded.settings
    hage = loaded.hage_config.to_dict() if embeds else None
    rows = run_methods(loaded.data, specs, s, hage_config=loaded.hage_config, gene_embeddings=loaded.hage_embeddings,
                       schedule=dataclasses.replace(schedule, runs_dir=out / "runs"),
                       config={"hage": hage, **loaded.record}, progress=progress)
    result = assemble(rows, chosen, reference=reference, header=features_header(loaded.data, s, len(chosen)))
    settings = {**loaded.settings_record(), "methods": {sp.name: dict(sp.params) for sp in specs},
                "n_jobs": schedule.n_jobs, "device": schedule.device, "hage": hage}
    write_outputs(result, out, title=f"Baselines on {loaded.data.dataset} ({s.split} split)", settings=settings)
    return result, loaded.warnings
