"""Toy sections and least-squares estimators for the cross-validation protocol and run-folder tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hagekit.data.section import SectionLabels, make_section, write_section
from hagekit.io.h5 import write_features

GENES = [f"G{i}" for i in range(6)]


def write_toy_section(root: Path, feats: Path, name: str, patient: str, seed: int, *, feat_section=None):
    """One 60-spot section whose 6 genes follow 3 latent features (plus 5 noise features)."""
    rng = np.random.default_rng(seed)
    n = 60
    latent = rng.normal(size=(n, 3))
    loadings = np.random.default_rng(100).normal(scale=0.6, size=(3, len(GENES)))
    rates = np.exp(1.5 + latent @ loadings)
    counts = rng.poisson(rates)
    barcodes = [f"{i}x{j}" for i in range(6) for j in range(10)]
    xy = np.array([[100 + 10 * int(b.split("x")[0]), 100 + 10 * int(b.split("x")[1])] for b in barcodes])
    ad = make_section(counts, barcodes, GENES, xy,
        SectionLabels(dataset="toy", section=name, patient=patient))
    write_section(ad, root / "toy" / f"{name}.h5ad")
    f = np.concatenate([latent, rng.normal(scale=0.1, size=(n, 5))], axis=1)
    write_features(feats / f"{name}.h5", f, xy, barcodes=barcodes,
                   attrs={"encoder": "toy", "section": feat_section or name})


class LinearEstimator:
    """A plain least-squares regressor used to exercise the protocol."""

    calls = 0

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def fit(self, X, Y, *, X_val=None, Y_val=None):
        type(self).calls += 1
        A = np.c_[X, np.ones(len(X))]
        self.W, *_ = np.linalg.lstsq(A, Y, rcond=None)
        return self

    def predict(self, X):
        return np.c_[X, np.ones(len(X))] @ self.W

    def save(self, d: Path) -> None:
        np.save(d / "w.npy", self.W)


class LoadableEstimator(LinearEstimator):
    """Loads itself back from its folder, like HAGERegressor (so resume can check the model)."""

    @classmethod
    def load(cls, d: Path) -> LoadableEstimator:
        est = cls(0)
        est.W = np.load(d / "w.npy")
        est.n_features_in_ = est.W.shape[0] - 1
        return est
