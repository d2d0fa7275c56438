"""Training protocol: splits, dataset assembly, fit loop, runs."""
