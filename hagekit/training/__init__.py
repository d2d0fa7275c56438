"""Training above the methods: splits, dataset assembly, the protocol and runs (the learning layer is :mod:`hagekit.learn`)."""
