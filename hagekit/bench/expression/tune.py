"""``hagekit bench tune``: choose HAGE's training recipe by nested validation only.

For every outer fold (a held-out test section or patient) the test section is set aside and
never read. Among the fold's training sections one *inner validation section* is held out in
turn (rotating over the outer folds); HAGE is fitted on the remaining training sections, with
early stopping on their own 4:1 spot split (as the protocol does), and scored on the inner
validation section. A configuration's score is the mean over outer folds (and over
``repeats`` 4:1 splits per fold) of :data:`METRICS` ``[metric]``: by default the mean of
PCC(all) and PCC(HEG), the two numbers a published table reports, so a recipe that buys
PCC(all) by giving up the highly expressed genes is not chosen.

The search is a coordinate search over a small documented space (:data:`SEARCH_SPACE`), in the
order of :data:`SEARCH_ORDER`: each setting in turn takes the value with the best score, the
others held at their current best; a value replaces the current one only when it scores at least
``min_gain`` (:data:`MIN_GAIN`) higher, so differences at the level of seed noise do not move a
setting away from the base (the shipped defaults). A configuration whose embeddings collapse on any inner fold
(mean pairwise cosine of z^i or z^e > :data:`hagekit.hage.model.COLLAPSE_COSINE`) is scored and
recorded but never chosen: its encoder would be useless downstream even where its PCC is high.
It starts from the base config (the shipped defaults, or a file) and writes the chosen config
as TOML, with every score, to the output folder.

The same search tunes any registered baseline (``method="mlp"``, ``--method mlp``): the
configuration is then the estimator's constructor parameters, the default space
:data:`BASELINE_SPACES` ``[method]`` (or ``--space``), and the chosen values are written as a
``[baselines.<method>]`` table, a ``--config`` file for ``bench baselines``. A comparison in
which only HAGE was tuned would flatter HAGE.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hagekit.bench.expression.compare import load_bench_inputs, takes_embeddings
from hagekit.config import RunSettings, coerce_setting
from hagekit.genes.per_fold import FoldEmbeddings, embeddings_for
from hagekit.hage.model import HAGEConfig, collapse_message
from hagekit.progress import Reporter, reporter_or_null
from hagekit.study import StudyInputs
from hagekit.training.dataset import STDataset

__all__ = ["SEARCH_SPACE", "SEARCH_ORDER", "BASELINE_SPACES", "DEFAULT_METHOD", "default_space", "tune_folder",
           "METRICS", "MIN_GAIN", "InnerFold", "TuneResult", "Search", "TuneTask", "inner_folds",
           "score_config", "tune", "bench_tune"]

log = logging.getLogger(__name__)

SEARCH_SPACE: dict[str, tuple[Any, ...]] = {
    "lr": (1e-4, 3e-4, 1e-3, 3e-3),
    "min_steps": (0, 100, 300),
    "cyclip_reduction": ("paper", "mean"),
    "batch_size": (128, 256),
    "centroids": ("batch", "memory", "epoch"),
    "dropout": (0.0, 0.1, 0.2, 0.4),
    "weight_decay": (1e-5, 1e-4, 1e-3),
}
"""Values tried per setting: learning rate, minimum optimiser steps, CyCLIP reduction, batch
size, the hierarchy's centroids (batch members vs whole sub-clusters), and the two regularisers
(dropout in every MLP and the attention, Adam's weight decay): ~600 training spots for ~1M
parameters is a regime where they can matter."""

SEARCH_ORDER = ("lr", "min_steps", "cyclip_reduction", "batch_size", "centroids", "dropout", "weight_decay")

BASELINE_SPACES: dict[str, dict[str, tuple[Any, ...]]] = {
    "mlp": {"dropout": (0.1, 0.2, 0.4, 0.5), "weight_decay": (1e-5, 1e-4, 1e-3), "lr": (3e-4, 1e-3, 3e-3),
            "hidden": (256, 512, 1024)},
    "ridge-ctx": {"radius": (1.0, 1.5, 2.5, 3.5)},  # spot pitches; the penalty is chosen inside each fit
    "triplex": {"lr": (3e-4, 1e-3, 3e-3), "weight_decay": (1e-5, 1e-4, 1e-3), "d_model": (64, 128, 256),
                "window": (1, 2, 3), "distill_alpha": (0.0, 0.3, 0.6)},
    "histogene": {"lr": (3e-4, 1e-3, 3e-3), "dropout": (0.0, 0.1, 0.3), "weight_decay": (1e-5, 1e-4, 1e-3),
                  "d_model": (64, 128, 256), "layers": (1, 2, 4)},
    "hist2st": {"lr": (3e-4, 1e-3, 3e-3), "dropout": (0.0, 0.2, 0.4), "weight_decay": (1e-5, 1e-4, 1e-3),
                "depth_graph": (1, 2, 4), "neighbours": (4, 8)},
}
"""Default search spaces of the baselines (others need ``--space``)."""


DEFAULT_METHOD = "hage"
"""What ``bench tune`` tunes when no ``--method`` is given; its results go to ``bench-tune``."""


def default_space(method: str) -> dict[str, tuple[Any, ...]]:
    """The default search space of ``method``: :data:`BASELINE_SPACES`, else the one its class
    declares (``search_space``), else :data:`SEARCH_SPACE` for a method tuned through the HAGE
    config, else empty (``--space`` needed)."""
    from hagekit.baselines import method_search_space

    space = BASELINE_SPACES.get(method) or method_search_space(method)
    if not space and takes_embeddings(method):
        space = SEARCH_SPACE
    return dict(space)


def tune_folder(method: str) -> str:
    """The default output folder name of ``bench tune --method method`` under the workspace's runs:
    ``bench-tune`` for :data:`DEFAULT_METHOD`, ``bench-tune-<method>`` for the others."""
    return {DEFAULT_METHOD: "bench-tune"}.get(method, f"bench-tune-{method}")


MIN_GAIN = 0.002
"""Smallest score gain that moves a setting: above the spread that settings which cannot matter
and refits on other splits and seeds show on HER2ST (measured: docs/results.md), so that seed
noise does not move a setting; a gain near this size needs ``repeats`` to be believed."""

METRICS: dict[str, Any] = {
    "pcc_all": lambda r: r["pcc_all"],
    "pcc_heg": lambda r: r["pcc_heg"],
    "mean": lambda r: 0.5 * (r["pcc_all"] + r["pcc_heg"]),
}
"""What a configuration is scored by: PCC(all), PCC(HEG) (top-50 genes by mean in the inner
validation section), or ``mean`` (default) of the two."""


@dataclass(frozen=True)
class InnerFold:
    """One nested evaluation: fit on ``train_sections``, score on ``val_section``; ``outer`` names
    the outer fold whose test sections are excluded."""

    outer: str
    train_sections: tuple[str, ...]
    val_section: str


@dataclass
class TuneResult:
    """The chosen config, every tried config's scores, and the inner folds used."""

    best: HAGEConfig | dict[str, Any]
    """HAGE: a :class:`HAGEConfig`; a baseline: its constructor parameters (the searched ones and
    those given in the base)."""
    trials: list[dict[str, Any]] = field(default_factory=list)
    folds: list[InnerFold] = field(default_factory=list)
    method: str = DEFAULT_METHOD


def inner_folds(data: STDataset, *, split: str = "section", folds: Sequence[str] | None = None) -> list[InnerFold]:
    """One inner fold per outer fold: the k-th outer fold validates on the k-th (mod) of its
    training sections, so the inner validation sections rotate and no test section is used."""
    from hagekit.training.splits import make_folds

    out = []
    for k, fold in enumerate(make_folds(data.patients(), split=split, folds=folds)):
        train = fold.train_sections
        if len(train) < 2:
            continue
        val = train[k % len(train)]
        out.append(InnerFold(fold.name, tuple(s for s in train if s != val), val))
    if not out:
        from hagekit.errors import ConfigError

        raise ConfigError("bench tune: every fold has fewer than 2 training sections; nothing to validate on")
    return out


@dataclass(frozen=True)
class Search:
    """How :func:`tune` searches: the ``space`` (default :func:`default_space`), the ``order`` of
    its settings (default :data:`SEARCH_ORDER` first), the :data:`METRICS` key scored, the
    4:1 splits per inner fold (``repeats``) and the smallest gain that moves a setting."""

    space: Mapping[str, Sequence[Any]] | None = None
    order: Sequence[str] | None = None
    metric: str = "mean"
    repeats: int = 1
    min_gain: float = MIN_GAIN

    def check(self) -> None:
        """Refuse an unknown metric, repeats < 1 and a negative min_gain (one line each)."""
        from hagekit.errors import ConfigError

        if self.metric not in METRICS:
            raise ConfigError(f"bench tune: --metric {self.metric!r} is not valid (valid: {', '.join(METRICS)})")
        if int(self.repeats) < 1:
            raise ConfigError(f"bench tune: --repeats must be >= 1, got {self.repeats}")
        if not self.min_gain >= 0:
            raise ConfigError(f"bench tune: --min-gain must be >= 0, got {self.min_gain}")


@dataclass(frozen=True)
class TuneTask:
    """What every configuration is scored on: the dataset, the gene embeddings (an array or
    per-fold sets; used by methods that take them), the inner folds, the method, the seed and
    4:1 split of the protocol, the splits per inner fold and the device."""

    data: STDataset
    gene_embeddings: np.ndarray | FoldEmbeddings | None
    inner: Sequence[InnerFold]
    method: str = DEFAULT_METHOD
    seed: int = 0
    val_fraction: float = 0.2
    repeats: int = 1
    device: str = "cpu"

    def estimator(self, config: Any, emb: Any, seed: int, label: str) -> Any:
        """The method with ``config`` (a HAGE config, or constructor parameters) for one fit."""
        from hagekit.baselines import make_method

        if takes_embeddings(self.method):
            return make_method(self.method, context={"config": config, "gene_embeddings": emb, "device": self.device,
                                                     "random_state": seed, "genes": list(self.data.genes),
                                                     "label": label})
        return make_method(self.method, context={"device": self.device, "random_state": seed}, **dict(config))


def score_config(task: TuneTask, config: Any, progress: Reporter | None = None) -> dict[str, Any]:
    """Fit ``config`` on every inner fold of ``task`` (``repeats`` times, each with its own 4:1 spot
    split and seed, as the protocol's trials); per-fold gene embeddings are the set trained on the
    inner fold's training sections (so neither its inner validation nor its test section); mean
    PCC(all)/PCC(HEG) on the inner validation sections, wall and CPU seconds per fit (CPU time is
    comparable on a shared machine), and the collapse diagnostics (max over fits of z^i, z^e mean
    cosine; NaN for a method without embeddings)."""
    from hagekit.metrics import evaluate_section
    from hagekit.training.protocol import call_accepting
    from hagekit.training.splits import train_val_split, trial_seed

    data, repeats = task.data, max(1, int(task.repeats))
    with_emb = takes_embeddings(task.method)
    pcc, heg, secs, cpu, zi, ze, steps = [], [], [], [], [], [], []
    for f in task.inner:  # each fold's arrays (and embeddings) once, for all its repeats
        X, Y, S, groups = data.stack(f.train_sections)
        X_v, Y_v, S_v, _ = data.stack([f.val_section])
        emb = embeddings_for(task.gene_embeddings, f.train_sections) if with_emb else None
        name = f"{f.outer}/{f.val_section}"
        for r in range(repeats):
            tr, va = train_val_split(len(X), seed=task.seed, fold=name, trial=r, val_fraction=task.val_fraction)
            est = task.estimator(config, emb, trial_seed(task.seed, name, r),
                                 f"tune {name}" + (f"/{r}" if repeats > 1 else ""))
            t0, c0 = time.perf_counter(), time.process_time()
            # as the protocol fits: positions (mclSTExp) and section groups (ridge's CV) where accepted
            call_accepting(est.fit, X[tr], Y[tr], X_val=X[va], Y_val=Y[va], spatial=S[tr], spatial_val=S[va],
                  groups=groups[tr], groups_val=groups[va], progress=progress)
            secs.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            m = evaluate_section(Y_v, call_accepting(est.predict, X_v, spatial=S_v))
            pcc.append(m.pcc_all)
            heg.append(m.pcc_heg)
            cos = getattr(est, "embedding_cosines_", None) or {"zi_cos": np.nan, "ze_cos": np.nan}
            zi.append(cos["zi_cos"])
            ze.append(cos["ze_cos"])
            history = getattr(est, "history_", None)
            steps.append(int(history[-1].get("steps", 0)) if history else 0)
    return {
        "pcc_all": float(np.mean(pcc)), "pcc_heg": float(np.mean(heg)),
        "per_fold_pcc_all": [float(v) for v in pcc], "fit_seconds": float(np.mean(secs)),
        "fit_cpu_seconds": float(np.mean(cpu)),
        "zi_cos": float(np.max(zi)), "ze_cos": float(np.max(ze)), "steps": float(np.mean(steps)),
    }


def _space_and_base(method: str, base: Any, space: Mapping[str, Sequence[Any]] | None) -> tuple[Any, dict]:
    """The starting configuration and the checked search space of ``method``."""
    from hagekit.errors import ConfigError

    space = dict(space or default_space(method))
    if takes_embeddings(method):
        base = base or HAGEConfig()
        valid = list(HAGEConfig.field_names())
    else:
        defaults = method_defaults(method)
        if not space:
            raise ConfigError(f"bench tune: {method} has no default search space; give --space")
        valid = list(defaults)
        base = {**{k: defaults[k] for k in space if k in defaults}, **dict(base or {})}
    bad = sorted(set(space) - set(valid))
    if bad:
        raise ConfigError(f"bench tune: unknown {method} setting(s) {', '.join(bad)} (valid: {', '.join(valid)})")
    return base, space


def tune(
    data: STDataset,
    gene_embeddings: np.ndarray | FoldEmbeddings | None,
    *,
    method: str = DEFAULT_METHOD,
    base: HAGEConfig | Mapping[str, Any] | None = None,
    search: Search | None = None,
    settings: RunSettings | None = None,
    device: str = "cpu",
    progress: Reporter | None = None,
) -> TuneResult:
    """Coordinate search of ``search.space`` from ``base`` by nested validation (the ``split``,
    ``folds`` and ``seed`` of ``settings``; the protocol's 4:1 split inside each fit), scored by
    :data:`METRICS` ``[search.metric]`` over ``search.repeats`` splits per inner fold."""
    search = search or Search()
    settings = settings or RunSettings()
    search.check()
    base, space = _space_and_base(method, base, search.space)
    order = tuple(search.order or [k for k in SEARCH_ORDER if k in space] + [k for k in space if k not in SEARCH_ORDER])
    inner = inner_folds(data, split=settings.split, folds=settings.folds)
    task = TuneTask(data, gene_embeddings, inner, method, seed=settings.seed, repeats=search.repeats, device=device)
    rep = reporter_or_null(progress)
    cache: dict[tuple, dict[str, Any]] = {}
    trials: list[dict[str, Any]] = []

    def evaluate(cfg: Any, stage: str) -> dict[str, Any]:
        key = tuple(sorted((k, repr(_get(cfg, k))) for k in space))
        if key not in cache:
            res = score_config(task, cfg, progress)
            res["score"] = float(METRICS[search.metric](res))
            cache[key] = res
            row = {"stage": stage, **{k: _get(cfg, k) for k in order}, "metric": search.metric, **res,
                   "collapsed": collapse_message(res["zi_cos"], res["ze_cos"]) is not None}
            trials.append(row)
            rep.message(f"tune {method} [{stage}] " + ", ".join(f"{k}={_get(cfg, k)}" for k in order)
                        + f": score {res['score']:.4f} (PCC(all) {res['pcc_all']:.4f}, PCC(HEG) {res['pcc_heg']:.4f}), "
                        f"{res['fit_seconds']:.1f} s/fit" + collapse_cosines(res, ", "))
        return cache[key]

    def eligible_score(res: dict[str, Any]) -> float:
        return res["score"] if collapse_message(res["zi_cos"], res["ze_cos"]) is None else -np.inf

    best = base
    best_score = eligible_score(evaluate(best, "base"))
    for name in order:
        for value in space[name]:
            cand = best.replace(**{name: value}) if isinstance(best, HAGEConfig) else {**best, name: value}
            score = eligible_score(evaluate(cand, name))
            if score > best_score + search.min_gain:
                best, best_score = cand, score
    return TuneResult(best, trials, list(inner), method)


def collapse_cosines(res: Mapping[str, Any], sep: str) -> str:
    """The collapse diagnostics for a message (empty for a baseline, which has none)."""
    if np.isnan(res["zi_cos"]):
        return ""
    return f"{sep}cos z^i {res['zi_cos']:.2f} z^e {res['ze_cos']:.2f}"


def _get(config: Any, key: str) -> Any:
    return getattr(config, key) if isinstance(config, HAGEConfig) else config[key]


def method_defaults(method: str) -> dict[str, Any]:
    """A baseline's tunable constructor parameters and their defaults (not device/random_state)."""
    from hagekit.baselines import get_method

    params = get_method(method)().get_params(deep=False)
    return {k: v for k, v in params.items() if k not in ("device", "random_state")}


def write_tune(result: TuneResult, out_dir: Path | str, space: Mapping[str, Sequence[Any]] | None = None) -> Path:
    """Write ``chosen.toml`` (the chosen [hage] settings that differ from the shipped defaults, and
    the searched ones), ``trials.csv`` and ``tune.json`` into ``out_dir``; returns the TOML path."""
    import csv
    import io

    from hagekit.io.atomic import write_json, write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if takes_embeddings(result.method):
        searched = list(space or default_space(result.method))
        default = HAGEConfig().to_dict()
        chosen = result.best.to_dict()
        table = "hage"
    else:
        searched = list(space or default_space(result.method))
        default = method_defaults(result.method)
        chosen = dict(result.best)
        table = f"baselines.{result.method}"
    keys = [k for k in chosen if k in searched or chosen[k] != default.get(k)]
    lines = [f"# {result.method} settings chosen by `hagekit bench tune` (nested validation; see tune.json)",
             f"[{table}]"]
    lines += [f"{k} = {_toml(chosen[k])}" for k in keys]
    toml_path = write_text(out / "chosen.toml", "\n".join(lines) + "\n")
    buf = io.StringIO()
    if result.trials:
        cols = [c for c in result.trials[0] if c != "per_fold_pcc_all"]
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(result.trials)
    write_text(out / "trials.csv", buf.getvalue())
    write_json(out / "tune.json", {
        "method": result.method, "chosen": chosen, "trials": result.trials,
        "inner_folds": [{"outer": f.outer, "train": list(f.train_sections), "validate": f.val_section}
                        for f in result.folds],
    })
    return toml_path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def bench_tune(
    inputs: StudyInputs,
    out: Path | str,
    *,
    method: str = DEFAULT_METHOD,
    search: Search | None = None,
    config_file: Path | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    device: str = "cpu",
    progress: Reporter | None = None,
) -> tuple[TuneResult, Path, list[str]]:
    """``hagekit bench tune``: load ``inputs`` with ``config_file`` and ``overrides`` as ``bench
    baselines`` does, with the same leak checks; search from the resolved HAGE config (a method
    tuned through it: :func:`~hagekit.bench.expression.compare.takes_embeddings`) or ``method``'s ``[baselines.<method>]`` parameters;
    write ``out``. Returns (result, TOML, warnings)."""
    from hagekit.baselines import get_method

    search = search or Search()
    get_method(method)  # an unknown method fails before any data is read
    with_config = takes_embeddings(method)
    loaded = load_bench_inputs(inputs, need_embeddings=with_config, config_file=config_file, overrides=overrides,
                               allow_per_fold=True, progress=progress)
    s = loaded.settings
    if with_config and loaded.fold_embeddings is None and inputs.embeddings_path and not s.allow_leak:
        _refuse_inner_leak(inputs.embeddings_path, inner_folds(loaded.data, split=s.split, folds=s.folds))
    base = loaded.hage_config if with_config else loaded.method_params.get(method, {})
    result = tune(loaded.data, loaded.hage_embeddings if with_config else None, method=method, base=base,
                  search=search, settings=s, device=device, progress=progress)
    return result, write_tune(result, out, search.space), loaded.warnings


def _refuse_inner_leak(embeddings_path: Path, inner: Sequence[InnerFold]) -> None:
    """The file's embeddings must not have seen an inner validation section either (with ``--folds``
    a training section of the outer folds can be one they were trained on)."""
    from hagekit.errors import ProvenanceError, at
    from hagekit.genes.embeddings import embedding_training_sections

    leak = sorted(embedding_training_sections(embeddings_path) & {f.val_section for f in inner})
    if leak:
        raise ProvenanceError(at(embeddings_path, f"gene embeddings were trained on inner validation section(s) "
                                                  f"{', '.join(leak)}; tune every fold (no --folds) to get "
                                                  "per-fold embeddings, or pass --allow-leak"))


def parse_space(text: str | None, method: str = DEFAULT_METHOD) -> dict[str, tuple[Any, ...]] | None:
    """``"lr=1e-3,3e-3;min_steps=100,300"`` -> a search space (values typed like the defaults of
    HAGE's settings, or of ``method``'s parameters)."""
    from hagekit.errors import ConfigError

    if not text:
        return None
    if takes_embeddings(method):
        valid: list[str] = list(HAGEConfig.field_names())

        def typed(key: str, value: str) -> Any:
            return getattr(HAGEConfig().replace(**{key: value}), key)
    else:
        defaults = method_defaults(method)
        valid = list(defaults)

        def typed(key: str, value: str) -> Any:
            kind = type(defaults[key]) if defaults[key] is not None else str
            return coerce_setting(key, value, kind, "--space")
    space: dict[str, tuple[Any, ...]] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        key, sep, values = part.partition("=")
        key = key.strip()
        if not sep or key not in valid:
            raise ConfigError(f"--space: {part.strip()!r} is not KEY=V1,V2 with a {method} setting "
                              f"(valid: {', '.join(valid)})")
        space[key] = tuple(typed(key, v.strip()) for v in values.split(",") if v.strip())
    return space
