"""Tiny sections whose expression depends on the neighbourhood, for the context-method tests."""

from __future__ import annotations

import numpy as np

from hagekit.hage.model import HAGEConfig
from hagekit.learn.neighbours import neighbour_graph, neighbour_mean
from hagekit.training.dataset import SectionData, STDataset

GENES = 6
DIM = 8
EMB = np.random.default_rng(5).normal(size=(GENES, 4)).astype(np.float32)
TINY_HAGE = HAGEConfig(d=8, n_heads=2, k1=2, k2=2, epochs=3, batch_size=16, lr=1e-3, min_steps=0,
                       context="mean", context_radius=1.5)
HAGE_CONTEXT = {"config": TINY_HAGE, "gene_embeddings": EMB, "device": "cpu"}

#: Context methods and the tiny settings their tests use (the ctx-models methods add theirs here).
CONTEXT_METHODS: dict[str, dict] = {
    "ridge-ctx": {"pca": None, "cv": 2, "alphas": (0.1, 1.0, 10.0)},
    "hage": {"config__context": "mean"},
    "triplex": {"d_model": 8, "heads": 2, "depth_neighbour": 1, "epochs": 3, "device": "cpu"},
    "histogene": {"d_model": 8, "heads": 2, "layers": 1, "epochs": 3, "device": "cpu"},
    "hist2st": {"d_model": 8, "heads": 2, "depth_transformer": 1, "epochs": 3, "device": "cpu"},
}


def grid(side: int) -> np.ndarray:
    """A square grid of spot centres, pitch 100 (pixels)."""
    xx, yy = np.meshgrid(np.arange(side) * 100.0, np.arange(side) * 100.0)
    return np.stack([xx.ravel(), yy.ravel()], axis=1)


def toy_section(side: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, targets, positions): targets follow the spot's features and its neighbours' mean."""
    rng = np.random.default_rng(seed)
    S = grid(side)
    X = rng.normal(size=(side * side, DIM)).astype(np.float32)
    ctx = neighbour_mean(X, neighbour_graph(S, radius=1.5))
    W = np.random.default_rng(99).normal(size=(2 * DIM, GENES))
    Y = np.hstack([X, 3.0 * ctx]) @ W / np.sqrt(DIM) + 0.1 * rng.normal(size=(len(X), GENES))
    return X, np.log1p(np.exp(Y)).astype(np.float32), S.astype(np.float32)


def toy_dataset(side: int = 7) -> STDataset:
    """Three sections (two patients) of ``side`` x ``side`` spots."""
    sections = {}
    for i, (name, patient) in enumerate((("A1", "A"), ("A2", "A"), ("B1", "B"))):
        X, Y, S = toy_section(side, seed=10 + i)
        sections[name] = SectionData(name, patient, np.array([f"s{j}" for j in range(len(X))]), X,
                                     np.zeros_like(Y, dtype=np.int32), Y, S)
    return STDataset("toy", [f"G{g}" for g in range(GENES)], sections)
