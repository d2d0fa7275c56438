"""Benchmarks on identical inputs: baselines vs HAGE (Table 1), ablation (Table 2), k1 x k2
grid (Table 3). Heavy modules load on first use."""

from __future__ import annotations

from hagekit._lazy import lazy_exports

_API = {
    "MethodSpec": "hagekit.bench.compare",
    "BenchResult": "hagekit.bench.compare",
    "run_methods": "hagekit.bench.compare",
    "bench_baselines": "hagekit.bench.compare",
    "paired_comparison": "hagekit.bench.compare",
    "build_tables": "hagekit.bench.compare",
    "bench_ablation": "hagekit.bench.ablation",
    "bench_grid": "hagekit.bench.ablation",
    "ABLATION_VARIANTS": "hagekit.bench.ablation",
}

__all__ = list(_API)


__getattr__, __dir__ = lazy_exports(__name__, _API)
