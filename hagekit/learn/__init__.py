"""The learning layer under every method: the training loop, the estimator base, the torch
estimator template, parameter checks, standardisation and spatial context. It imports no method."""
