"""Cost of spatial context: the neighbourhood index at Visium-HD scale, and fit time per method.

1. ``neighbour_graph`` (k-d tree, radius 1.5 pitches) and ``neighbour_mean`` on a hexagonal
   section of ``--spots`` spots (default 50,176): wall time (best of ``--repeats``), the
   graph's size in bytes, and peak Python-heap memory while building it (tracemalloc;
   numpy and scipy allocations are traced).
2. Fit and predict time per method on a small input (3 sections of ``--side``^2 spots, 64-d
   features, 50 genes): ``ridge`` and ``ridge-ctx``, ``hage`` and ``hage`` with
   ``context = "mean"`` (tiny HAGE settings), plus any ``--methods`` given.

    python benchmarks/context_scale.py [--spots 50176] [--side 20] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc

import numpy as np


def hex_section(n: int, pitch: float = 100.0) -> np.ndarray:
    """About ``n`` spot centres on a Visium-like hexagonal lattice."""
    side = int(np.ceil(np.sqrt(n)))
    y, x = np.divmod(np.arange(side * side), side)
    pts = np.stack([x * pitch + (y % 2) * pitch / 2, y * pitch * np.sqrt(3) / 2], axis=1)
    return pts[:n]


def index_cost(n_spots: int, dim: int, repeats: int) -> dict[str, float]:
    """Time and memory of the neighbourhood graph and the neighbour means of one section."""
    from hagekit.learn.neighbours import neighbour_graph, neighbour_mean

    S = hex_section(n_spots)
    X = np.random.default_rng(0).normal(size=(n_spots, dim)).astype(np.float32)
    times_g, times_m = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        g = neighbour_graph(S, radius=1.5)
        t1 = time.perf_counter()
        neighbour_mean(X, g)
        times_m.append(time.perf_counter() - t1)
        times_g.append(t1 - t0)
    tracemalloc.start()
    g = neighbour_graph(S, radius=1.5)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    graph_bytes = g.data.nbytes + g.indices.nbytes + g.indptr.nbytes
    return {"n_spots": n_spots, "edges": int(g.nnz), "graph_seconds": min(times_g),
            "mean_seconds": min(times_m), "graph_mib": graph_bytes / 2**20, "peak_mib": peak / 2**20,
            "feature_dim": dim}


def _small_data(side: int, dim: int = 64, genes: int = 50):
    from hagekit.learn.neighbours import neighbour_graph, neighbour_mean

    rng = np.random.default_rng(1)
    W = rng.normal(size=(2 * dim, genes)) / np.sqrt(dim)
    parts = []
    for _ in range(3):
        S = hex_section(side * side)
        X = rng.normal(size=(len(S), dim)).astype(np.float32)
        C = neighbour_mean(X, neighbour_graph(S))
        Y = np.log1p(np.exp(np.hstack([X, C]) @ W + 0.3 * rng.normal(size=(len(S), genes)))).astype(np.float32)
        parts.append((X, Y, S))
    return parts


def fit_times(side: int, extra: list[str], repeats: int = 2) -> list[dict[str, object]]:
    """Fit and predict seconds of each method on 2 training sections, predicting the third."""
    from hagekit.baselines import make_method
    from hagekit.hage.model import HAGEConfig
    from hagekit.training.protocol import call_accepting  # the protocol's keyword filter

    parts = _small_data(side)
    X = np.concatenate([p[0] for p in parts[:2]])
    Y = np.concatenate([p[1] for p in parts[:2]])
    S = np.concatenate([p[2] for p in parts[:2]])
    g = np.repeat([0, 1], len(parts[0][0]))
    va = np.arange(len(X)) % 5 == 0
    emb = np.random.default_rng(2).normal(size=(Y.shape[1], 16)).astype(np.float32)
    hage = HAGEConfig(d=64, n_heads=4, k1=10, epochs=10, min_steps=0)
    context = {"config": hage, "gene_embeddings": emb, "device": "cpu", "random_state": 0}
    methods = [("ridge", {}), ("ridge-ctx", {}), ("hage", {}), ("hage context=mean", {"config__context": "mean"})]
    methods += [(m, {}) for m in extra]
    rows = []
    for label, params in methods:
        fit_s, pred_s = [], []
        for _ in range(repeats):  # best of repeats: the first call also pays imports and warm-up
            est = make_method(label.split()[0], context=context, **params)
            t0 = time.perf_counter()
            call_accepting(est.fit, X[~va], Y[~va], X_val=X[va], Y_val=Y[va], spatial=S[~va], spatial_val=S[va],
                  groups=g[~va], groups_val=g[va])
            t1 = time.perf_counter()
            est.predict(parts[2][0], spatial=parts[2][2])
            fit_s.append(t1 - t0)
            pred_s.append(time.perf_counter() - t1)
        rows.append({"method": label, "n_train": int((~va).sum()), "fit_seconds": min(fit_s),
                     "predict_seconds": min(pred_s)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spots", type=int, default=50176)
    ap.add_argument("--dim", type=int, default=1024, help="feature width for the neighbour means")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--side", type=int, default=20, help="small input: side x side spots per section")
    ap.add_argument("--methods", default="", help="more registered methods to time (comma-separated)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    idx = index_cost(args.spots, args.dim, args.repeats)
    print(f"neighbourhood index, {idx['n_spots']} spots: graph {idx['graph_seconds']:.3f} s "
          f"({idx['edges']} edges, {idx['graph_mib']:.1f} MiB CSR, peak {idx['peak_mib']:.1f} MiB while building); "
          f"neighbour means of {idx['feature_dim']}-d features {idx['mean_seconds']:.3f} s")
    rows = fit_times(args.side, [m for m in args.methods.split(",") if m], max(1, args.repeats))
    print("| method | training spots | fit (s) | predict (s) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['n_train']} | {r['fit_seconds']:.2f} | {r['predict_seconds']:.3f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"index": idx, "fit": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
