"""Benchmarks on identical inputs: baselines vs HAGE (Table 1), ablation (Table 2), k1 x k2
grid (Table 3). Heavy modules load on first use."""

from __future__ import annotations

from hagekit._lazy import by_module, lazy_exports

#: module -> the public names it defines (loaded on first use)
_API = by_module(
    {
        "hagekit.bench.expression.compare": ["MethodSpec", "run_methods", "bench_baselines"],
        "hagekit.bench.expression.statistics": ["paired_comparison", "build_tables"],
        "hagekit.bench.expression.tables": ["BenchResult"],
        "hagekit.bench.expression.ablation": ["bench_ablation", "bench_grid", "ABLATION_VARIANTS"],
    }
)

__all__ = list(_API)


__getattr__, __dir__ = lazy_exports(__name__, _API)
