"""Expression benchmarks: every method on identical inputs. Scheduling and inputs
(:mod:`.compare`, ``bench baselines``), statistics over metric rows (:mod:`.statistics`), tables
and reports (:mod:`.tables`), ``bench ablation``/``grid`` (:mod:`.ablation`) and ``bench tune``
(:mod:`.tune`). Downstream (encoder) benchmarks are in :mod:`hagekit.bench.downstream`;
HEST-Benchmark in :mod:`hagekit.bench.hest`."""
