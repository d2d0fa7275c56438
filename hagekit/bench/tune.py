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

from hagekit.genes.per_fold import FoldEmbeddings, embeddings_for
from hagekit.hage.model import HAGEConfig, collapse_message
from hagekit.progress import Reporter, reporter_or_null
from hagekit.training.dataset import STDataset

__all__ = ["SEARCH_SPACE", "SEARCH_ORDER", "BASELINE_SPACES", "default_space", "METRICS", "MIN_GAIN", "InnerFold", "TuneResult", "inner_folds", "score_config", "tune"]

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


def default_space(method: str) -> dict[str, tuple[Any, ...]]:
    """The default search space of a baseline: :data:`BASELINE_SPACES`, else the one its class
    declares (``search_space``), else empty (``--space`` needed)."""
    from hagekit.baselines import method_search_space

    return dict(BASELINE_SPACES.get(method) or method_search_space(method))

MIN_GAIN = 0.002
"""Smallest score gain that moves a setting. On HER2ST C2..C6 (5 inner folds, ~600 training spots)
settings that cannot matter (weight decay 1e-5 vs 1e-4) differ by <= 0.0005; the default
configuration refitted on three sets of 4:1 splits and seeds scored 0.2469 / 0.2487 / 0.2526
(std 0.003): a gain near this size needs ``repeats`` to be believed."""

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
    method: str = "hage"


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


def score_config(
    data: STDataset,
    gene_embeddings: np.ndarray | FoldEmbeddings | None,
    config: HAGEConfig | Mapping[str, Any],
    inner: Sequence[InnerFold],
    *,
    method: str = "hage",
    seed: int = 0,
    val_fraction: float = 0.2,
    repeats: int = 1,
    device: str = "cpu",
    progress: Reporter | None = None,
) -> dict[str, Any]:
    """Fit ``config`` on every inner fold (``repeats`` times, each with its own 4:1 spot split
    and seed, as the protocol's trials); per-fold ``gene_embeddings`` are the set trained on the
    inner fold's training sections (so neither its inner validation nor its test section); mean PCC(all)/PCC(HEG) on the inner validation sections,
    wall and CPU seconds per fit (CPU time is comparable on a shared machine), and the collapse
    diagnostics (max over fits of z^i, z^e mean cosine; NaN for a baseline). ``method`` other than
    "hage": ``config`` holds that estimator's parameters."""
    from hagekit.baselines import make_method
    from hagekit.hage.estimator import HAGERegressor
    from hagekit.metrics import evaluate_section
    from hagekit.training.protocol import call_accepting
    from hagekit.training.splits import train_val_split, trial_seed

    pcc, heg, secs, cpu, zi, ze, steps = [], [], [], [], [], [], []
    for f in inner:  # each fold's arrays (and embeddings) once, for all its repeats
        X, Y, S, groups = data.stack(f.train_sections)
        X_v, Y_v, S_v, _ = data.stack([f.val_section])
        emb = embeddings_for(gene_embeddings, f.train_sections) if method == "hage" else None
        name = f"{f.outer}/{f.val_section}"
        for r in range(max(1, int(repeats))):
            tr, va = train_val_split(len(X), seed=seed, fold=name, trial=r, val_fraction=val_fraction)
            if method == "hage":
                est = HAGERegressor(config, emb, device=device, random_state=trial_seed(seed, name, r),
                                    genes=list(data.genes), label=f"tune {name}" + (f"/{r}" if repeats > 1 else ""))
            else:
                est = make_method(method, context={"device": device, "random_state": trial_seed(seed, name, r)},
                                  **dict(config))
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


def tune(
    data: STDataset,
    gene_embeddings: np.ndarray | FoldEmbeddings | None,
    *,
    method: str = "hage",
    base: HAGEConfig | Mapping[str, Any] | None = None,
    space: Mapping[str, Sequence[Any]] | None = None,
    order: Sequence[str] | None = None,
    split: str = "section",
    folds: Sequence[str] | None = None,
    seed: int = 0,
    metric: str = "mean",
    repeats: int = 1,
    min_gain: float = MIN_GAIN,
    device: str = "cpu",
    progress: Reporter | None = None,
) -> TuneResult:
    """Coordinate search of ``space`` (default :data:`SEARCH_SPACE`) from ``base`` by nested
    validation, scored by :data:`METRICS` ``[metric]`` over ``repeats`` splits per inner fold."""
    from hagekit.errors import ConfigError

    if metric not in METRICS:
        raise ConfigError(f"bench tune: --metric {metric!r} is not valid (valid: {', '.join(METRICS)})")
    if int(repeats) < 1:
        raise ConfigError(f"bench tune: --repeats must be >= 1, got {repeats}")
    if not min_gain >= 0:
        raise ConfigError(f"bench tune: --min-gain must be >= 0, got {min_gain}")
    if method == "hage":
        base = base or HAGEConfig()
        space = dict(space or SEARCH_SPACE)
        valid = list(HAGEConfig.field_names())
    else:
        defaults = method_defaults(method)
        space = dict(space or default_space(method))
        if not space:
            raise ConfigError(f"bench tune: {method} has no default search space; give --space")
        valid = list(defaults)
        base = {**{k: defaults[k] for k in space if k in defaults}, **dict(base or {})}
    order = tuple(order or [k for k in SEARCH_ORDER if k in space] + [k for k in space if k not in SEARCH_ORDER])
    bad = sorted(set(space) - set(valid))
    if bad:
        raise ConfigError(f"bench tune: unknown {method} setting(s) {', '.join(bad)} (valid: {', '.join(valid)})")
    inner = inner_folds(data, split=split, folds=folds)
    rep = reporter_or_null(progress)
    cache: dict[tuple, dict[str, Any]] = {}
    trials: list[dict[str, Any]] = []

    def evaluate(cfg: Any, stage: str) -> dict[str, Any]:
        key = tuple(sorted((k, repr(_get(cfg, k))) for k in space))
        if key not in cache:
            res = score_config(data, gene_embeddings, cfg, inner, method=method, seed=seed, repeats=repeats,
                               device=device, progress=progress)
            res["score"] = float(METRICS[metric](res))
            cache[key] = res
            row = {"stage": stage, **{k: _get(cfg, k) for k in order}, "metric": metric, **res,
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
            if score > best_score + min_gain:
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
    if result.method == "hage":
        searched = list(space or SEARCH_SPACE)
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
    out: Path | str,
    *,
    method: str = "hage",
    space: Mapping[str, Sequence[Any]] | None = None,
    metric: str = "mean",
    repeats: int = 1,
    min_gain: float = MIN_GAIN,
    device: str = "cpu",
    progress: Reporter | None = None,
    **inputs: Any,
) -> tuple[TuneResult, Path, list[str]]:
    """``hagekit bench tune``: load ``inputs`` (data_root, dataset, features_dir, genes_path,
    embeddings_path, config_file, overrides) as ``bench baselines`` does, with the same leak checks;
    search ``space`` from the resolved HAGE config (or ``method``'s ``[baselines.<method>]``
    parameters); write ``out``. Returns (result, TOML, warnings)."""
    from hagekit.baselines import get_method
    from hagekit.bench.compare import load_bench_inputs

    hage = method == "hage"
    if not hage:
        get_method(method)  # an unknown method fails before any data is read
    loaded = load_bench_inputs(need_hage=hage, allow_per_fold=True, progress=progress, **inputs)
    s = loaded.settings
    if hage and loaded.fold_embeddings is None and inputs.get("embeddings_path") and not s.allow_leak:
        _refuse_inner_leak(Path(inputs["embeddings_path"]), inner_folds(loaded.data, split=s.split, folds=s.folds))
    base = loaded.hage_config if hage else loaded.method_params.get(method, {})
    result = tune(loaded.data, loaded.hage_embeddings if hage else None, method=method, base=base, space=space,
                  split=s.split,
                  folds=s.folds, seed=s.seed, metric=metric, repeats=repeats, min_gain=min_gain, device=device,
                  progress=progress)
    return result, write_tune(result, out, space), loaded.warnings


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


def parse_space(text: str | None, method: str = "hage") -> dict[str, tuple[Any, ...]] | None:
    """``"lr=1e-3,3e-3;min_steps=100,300"`` -> a search space (values typed like the defaults of
    HAGE's settings, or of ``method``'s parameters)."""
    from hagekit.errors import ConfigError

    if not text:
        return None
    if method == "hage":
        valid: list[str] = list(HAGEConfig.field_names())

        def typed(key: str, value: str) -> Any:
            return getattr(HAGEConfig().replace(**{key: value}), key)
    else:
        defaults = method_defaults(method)
        valid = list(defaults)

        def typed(key: str, value: str) -> Any:
            from hagekit.hage.model import coerce_setting

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
