"""Training: splits, dataset assembly, the one training loop (loop.py), the estimator base (estimator.py), HAGE on the loop (fit.py), the protocol and runs."""
