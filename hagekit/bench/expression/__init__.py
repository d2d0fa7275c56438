"""Expression benchmarks' shared parts: statistics over metric rows (:mod:`.statistics`) and
the tables and reports built from them (:mod:`.tables`). Scheduling and inputs live in
:mod:`hagekit.bench.compare`; ``bench ablation``/``grid`` in :mod:`hagekit.bench.ablation`,
``bench tune`` in :mod:`hagekit.bench.tune`, HEST-Benchmark in :mod:`hagekit.bench.hest`.
Downstream benchmarks (linear probe, patch datasets, AB-MIL) are the other modules of
:mod:`hagekit.bench`."""
