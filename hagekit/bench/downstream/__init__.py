"""Downstream (encoder) benchmarks: linear probes on patch datasets (:mod:`.linear_probe`,
:mod:`.patch_datasets`, :mod:`.probe_set`), AB-MIL on whole slides (:mod:`.abmil`), the
patch and slide dataset registries (:mod:`.datasets`) and their shared report (:mod:`.report`).
Expression benchmarks are in :mod:`hagekit.bench.expression`; HEST-Benchmark in
:mod:`hagekit.bench.hest`."""
