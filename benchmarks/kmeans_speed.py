"""Hierarchy k-means: hagekit's own k-means versus scikit-learn's ``KMeans``, same data, same k.

The hierarchy (paper section 2.3) runs k-means with k1=30 on expression (N x 785) and then k2=2
inside each expression cluster on the image features. This script times both steps with
``hagekit.hage.hierarchy.kmeans`` and with ``sklearn.cluster.KMeans`` (k-means++ init, one
init, Lloyd) and prints seconds and the inertia (sum of squared distances to the assigned
centroid, computed the same way for both), median over ``--repeats``. Issue 10 asks: keep ours only if it is
clearly faster at the same inertia.

    python benchmarks/kmeans_speed.py [--n 10000] [--genes 785] [--dim 1024] [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def make_data(n: int, n_genes: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clustered expression-like (N, G) and feature-like (N, D) data: 40 programmes plus noise."""
    rng = np.random.default_rng(seed)
    prog = rng.integers(0, 40, size=n)
    y = rng.gamma(2.0, 1.0, size=(40, n_genes))[prog] + rng.normal(scale=0.8, size=(n, n_genes))
    x = rng.normal(size=(40, dim))[prog] + rng.normal(scale=2.0, size=(n, dim))
    return np.log1p(np.clip(y, 0, None)).astype(np.float32), x.astype(np.float32)


def inertia(data: np.ndarray, labels: np.ndarray) -> float:
    """Sum over points of the squared distance to the mean of its cluster."""
    total = 0.0
    for c in np.unique(labels):
        pts = data[labels == c].astype(np.float64)
        total += float(((pts - pts.mean(0)) ** 2).sum())
    return total


def ours(data: np.ndarray, k: int, seed: int) -> np.ndarray:
    from hagekit.hage.hierarchy import kmeans

    return kmeans(data, k, seed=seed)


def sklearn_kmeans(data: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=1, random_state=seed).fit_predict(data)


def two_level(fn, y: np.ndarray, x: np.ndarray, k1: int, k2: int, seed: int) -> tuple[float, float, float, float]:
    """(seconds level 1, seconds level 2, level-1 inertia on y, level-2 inertia on x)."""
    t0 = time.perf_counter()
    coarse = fn(y, k1, seed)
    t1 = time.perf_counter()
    labels = np.empty(len(y), dtype=np.int64)
    nxt = 0
    for c in np.unique(coarse):
        idx = np.flatnonzero(coarse == c)
        sub = fn(x[idx], min(k2, len(idx)), seed + 1 + int(c)) if len(idx) > 1 else np.zeros(1, np.int64)
        labels[idx] = sub + nxt
        nxt += int(sub.max()) + 1
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, inertia(y, coarse), inertia(x, labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--genes", type=int, default=785)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--k1", type=int, default=30)
    ap.add_argument("--k2", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    y, x = make_data(args.n, args.genes, args.dim)
    results = {}
    with threadpool_limits(args.threads):
        for name, fn in (("hagekit", ours), ("sklearn", sklearn_kmeans)):
            runs = [two_level(fn, y, x, args.k1, args.k2, seed) for seed in range(args.repeats)]
            arr = np.array(runs)
            results[name] = {
                "level1_seconds": float(np.median(arr[:, 0])),
                "level2_seconds": float(np.median(arr[:, 1])),
                "level1_inertia": float(np.median(arr[:, 2])),
                "level2_inertia": float(np.median(arr[:, 3])),
            }
    print(json.dumps({"n": args.n, "genes": args.genes, "dim": args.dim, "k1": args.k1, "k2": args.k2,
                      "threads": args.threads, "repeats": args.repeats, **results}, indent=2))
    a, b = results["hagekit"], results["sklearn"]
    print(f"level 1 (k={args.k1} on {args.n}x{args.genes}): hagekit {a['level1_seconds']:.2f} s, "
          f"sklearn {b['level1_seconds']:.2f} s; inertia ratio hagekit/sklearn {a['level1_inertia'] / b['level1_inertia']:.4f}")
    print(f"level 2 (k={args.k2} per cluster on {args.dim}-d): hagekit {a['level2_seconds']:.2f} s, "
          f"sklearn {b['level2_seconds']:.2f} s; inertia ratio {a['level2_inertia'] / b['level2_inertia']:.4f}")


if __name__ == "__main__":
    main()
