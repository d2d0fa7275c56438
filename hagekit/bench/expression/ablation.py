"""The paper's Table 2 (component ablation) and Table 3 (k1 x k2 grid) for HAGE.

Both run HAGE variants through the same protocol, features, folds and metrics as
``bench baselines``, from one loaded feature cache, with (variant, fold) tasks in parallel
worker processes where the machine has cores to spare (one torch thread per worker).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hagekit.bench.expression.compare import (
    MethodSpec,
    Schedule,
    hage_spec,
    load_bench_inputs,
    run_methods,
)
from hagekit.bench.expression.tables import BenchResult, assemble, features_header, write_outputs
from hagekit.errors import ConfigError
from hagekit.io.atomic import check_output_dir
from hagekit.progress import Reporter
from hagekit.study import StudyInputs

__all__ = [
    "ABLATION_VARIANTS",
    "DEFAULT_VARIANTS",
    "DEFAULT_K1",
    "DEFAULT_K2",
    "ablation_specs",
    "grid_specs",
    "VariantsJob",
    "bench_ablation",
    "bench_grid",
    "default_jobs",
]

log = logging.getLogger(__name__)

#: Table 2: variant name -> HAGEConfig overrides. ``single_level`` clusters expression into
#: k1*k2 groups in one level (HAGEConfig.single_level).
ABLATION_VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "no_ge": {"use_ge": False},
    "no_hierarchy": {"use_hierarchy": False},
    "no_ge_no_hierarchy": {"use_ge": False, "use_hierarchy": False},
    "single_level": {"single_level": True},
    "hage-ctx": {"context": "mean"},
}
#: Run when no variants are named: the paper's Table 2 (``hage-ctx``, HAGE with neighbour-mean
#: context, is asked for by name: ``--variants full,hage-ctx``).
DEFAULT_VARIANTS = ("full", "no_ge", "no_hierarchy", "no_ge_no_hierarchy", "single_level")
DEFAULT_K1 = (10, 20, 30, 40)
DEFAULT_K2 = (2, 3)


def default_jobs(n_tasks: int) -> int:
    """Worker processes for ``n_tasks`` independent (variant, fold) runs: one per core."""
    from hagekit.baselines._common import n_cpus

    return max(1, min(n_cpus(), n_tasks))


def ablation_specs(variants: Sequence[str] | None = None) -> list[MethodSpec]:
    """Specs for the chosen variants (the paper's Table 2 by default, ``full`` first)."""
    names = list(variants) if variants else list(DEFAULT_VARIANTS)
    unknown = [v for v in names if v not in ABLATION_VARIANTS]
    if unknown:
        raise ConfigError(f"--variants: unknown variant(s) {', '.join(unknown)} "
                          f"(choose from {', '.join(ABLATION_VARIANTS)})")
    names = list(dict.fromkeys(names))
    return [hage_spec(v, ABLATION_VARIANTS[v]) for v in names]


def grid_specs(k1: Sequence[int] | None = None, k2: Sequence[int] | None = None) -> list[MethodSpec]:
    """One spec per (k1, k2) pair, named ``k1=..,k2=..`` (Table 3)."""
    k1s = list(dict.fromkeys(int(v) for v in (k1 or DEFAULT_K1)))
    k2s = list(dict.fromkeys(int(v) for v in (k2 or DEFAULT_K2)))
    bad = [v for v in k1s + k2s if v < 1]
    if bad:
        raise ConfigError(f"--k1/--k2: cluster counts must be >= 1, got {', '.join(map(str, bad))}")
    return [hage_spec(f"k1={a},k2={b}", {"k1": a, "k2": b}) for a in k1s for b in k2s]


@dataclass(frozen=True)
class VariantsJob:
    """What ``bench ablation`` and ``bench grid`` share: the study's inputs, the output folder,
    the settings file and flags, and how the tasks run (``n_jobs`` None: one worker per core)."""

    inputs: StudyInputs
    out: Path | str
    config_file: Path | str | None = None
    overrides: Mapping[str, Any] | None = None
    device: str = "cpu"
    n_jobs: int | None = None
    overwrite: bool = False
    progress: Reporter | None = None


def _run_variants(specs: list[MethodSpec], job: VariantsJob, *, kind: str,
                  reference: str | None) -> tuple[BenchResult, list[str]]:
    from hagekit.training.splits import make_folds

    if job.n_jobs is not None and int(job.n_jobs) < 1:
        raise ConfigError(f"--jobs: must be >= 1 worker process, got {job.n_jobs}")
    out = Path(job.out)
    check_output_dir(out, "--out")
    inputs = load_bench_inputs(job.inputs, need_embeddings=True, config_file=job.config_file,
                               overrides=job.overrides, allow_per_fold=True, progress=job.progress)
    s = inputs.settings
    n_folds = len(make_folds(inputs.data.patients(), split=s.split, folds=s.folds))
    jobs = default_jobs(len(specs) * n_folds) if job.n_jobs is None else int(job.n_jobs)
    if jobs < 1:
        raise ConfigError(f"--jobs: must be >= 1, got {jobs}")
    names = [sp.name for sp in specs]
    rows = run_methods(inputs.data, specs, s, hage_config=inputs.hage_config,
                       gene_embeddings=inputs.hage_embeddings,
                       schedule=Schedule(job.device, jobs, out / "runs", job.overwrite),
                       config={"hage": inputs.hage_config.to_dict(), **inputs.record}, progress=job.progress)
    result = assemble(rows, names, reference=reference if reference in names else names[0],
                      header=features_header(inputs.data, s, len(names)), floor=None)
    settings = {**inputs.settings_record(),
                "variants": {sp.name: {k.removeprefix("config__"): v for k, v in sp.params.items()} for sp in specs},
                "n_jobs": jobs, "device": job.device, "hage": inputs.hage_config.to_dict()}
    title = {"ablation": "HAGE ablation (Table 2)", "grid": "HAGE k1 x k2 grid (Table 3)"}[kind]
    write_outputs(result, out, title=f"{title} on {inputs.data.dataset} ({s.split} split)", settings=settings)
    return result, inputs.warnings


def bench_ablation(job: VariantsJob, variants: Sequence[str] | None = None) -> tuple[BenchResult, list[str]]:
    """``hagekit bench ablation``: full HAGE vs no GE, no hierarchy, neither, single-level."""
    specs = ablation_specs(variants)
    return _run_variants(specs, job, kind="ablation", reference="full")


def bench_grid(job: VariantsJob, k1: Sequence[int] | None = None,
               k2: Sequence[int] | None = None) -> tuple[BenchResult, list[str]]:
    """``hagekit bench grid``: HAGE for every k1 x k2 pair (default {10,20,30,40} x {2,3}).

    The paired comparison is against the paper's setting ``k1=30,k2=2`` when it is in the grid.
    """
    specs = grid_specs(k1, k2)
    return _run_variants(specs, job, kind="grid", reference="k1=30,k2=2")
