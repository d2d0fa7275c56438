"""HAGE training speed: seconds per epoch and peak memory at the paper's scale.

10,000 training spots (+2,000 validation) x 785 genes x 1024-d features (UNI-sized), d=1024, batch 256, k1=30, k2=2, on
CPU and, when available, CUDA. Data are random but shaped like the real thing (targets are a
noisy function of the features). ``--quick`` runs 2,000 spots and one epoch; ``--naive`` also
times one training step with the per-sample K/V expansion the GE avoids.

    python benchmarks/train_speed.py [--quick] [--device cpu|cuda|all] [--epochs 2] [--naive]
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch


def make_data(n: int, n_genes: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    w = rng.normal(size=(dim, n_genes)).astype(np.float32) / np.sqrt(dim)
    y = np.log1p(np.exp(x @ w + 0.5 * rng.normal(size=(n, n_genes)))).astype(np.float32)
    emb = rng.normal(size=(n_genes, 200)).astype(np.float32)
    return x, y, emb


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_fit(device: str, n: int, n_genes: int, dim: int, epochs: int, d: int, batch: int) -> dict:
    from hagekit.hage.estimator import HAGERegressor
    from hagekit.hage.hierarchy import build_hierarchy
    from hagekit.hage.model import HAGEConfig

    n_val = n // 5  # validation spots on top of the n training spots (early stopping is per epoch)
    x, y, emb = make_data(n + n_val, n_genes, dim)
    cfg = HAGEConfig(d=d, epochs=epochs, batch_size=batch, patience=0, min_steps=0)  # exactly `epochs` epochs
    t0 = time.perf_counter()
    build_hierarchy(y[n_val:], x[n_val:], k1=cfg.k1, k2=cfg.k2, seed=0)
    hier_s = time.perf_counter() - t0
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss0 = peak_rss_mib()
    t0 = time.perf_counter()
    est = HAGERegressor(cfg, emb, device=device).fit(x[n_val:], y[n_val:], X_val=x[:n_val], Y_val=y[:n_val])
    total = time.perf_counter() - t0
    train_s = [h["train_seconds"] for h in est.history_]
    out = {
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads",
        "n_train": n, "n_val": n_val, "n_genes": n_genes, "feature_dim": dim, "d": d, "batch_size": batch,
        "epochs": epochs,
        "train_seconds_per_epoch": train_s,
        "epoch_seconds_incl_validation": [h["seconds"] for h in est.history_],
        "spots_per_second": n / float(np.median(train_s)),
        "hierarchy_seconds": hier_s,
        "fit_seconds_total": total,
        "peak_rss_mib": peak_rss_mib(),
        "peak_rss_before_fit_mib": rss0,
    }
    if device == "cuda":
        out["peak_cuda_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def bench_naive_step(device: str, n_genes: int, dim: int, d: int, batch: int, reps: int = 3) -> dict:
    """One forward+backward of GE with shared K/V versus per-sample K/V (keys expanded to the batch)."""
    import torch.nn.functional as F

    from hagekit.hage.gene_encoder import GeneInformedEncoder

    torch.manual_seed(0)
    ge = GeneInformedEncoder(dim, 200, d).to(device)
    x = torch.randn(batch, dim, device=device)
    genes = torch.randn(n_genes, 200, device=device)
    att = ge.attn

    def naive() -> torch.Tensor:
        q = ge.w_x(x)
        kv = ge.w_g(genes).unsqueeze(1).expand(n_genes, batch, d)  # (G, B, d): K/V projected per sample
        o, _ = F.multi_head_attention_forward(
            q[None], kv, kv, d, att.n_heads, None,
            torch.cat([att.q_proj.bias, att.k_proj.bias, att.v_proj.bias]), None, None, False, 0.0,
            att.out_proj.weight, att.out_proj.bias, training=True, need_weights=False,
            use_separate_proj_weight=True, q_proj_weight=att.q_proj.weight,
            k_proj_weight=att.k_proj.weight, v_proj_weight=att.v_proj.weight)
        return ge.mlp(o[0] + q)

    def timed(fn, warm: bool = True) -> float:
        if warm:
            fn().sum().backward()
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn().sum().backward()
        if device == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / reps

    shared = timed(lambda: ge(x, genes))
    reps = 1 if device == "cpu" else reps  # the per-sample path takes ~a minute per step on CPU
    per_sample = timed(naive, warm=device != "cpu")
    return {"device": device, "shared_kv_step_s": shared, "per_sample_kv_step_s": per_sample,
            "speedup": per_sample / shared}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2,000 spots, one epoch")
    ap.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--spots", type=int, default=10_000)
    ap.add_argument("--genes", type=int, default=785)
    ap.add_argument("--feature-dim", type=int, default=1024)
    ap.add_argument("--d", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--naive", action="store_true", help="also time the per-sample K/V expansion")
    ap.add_argument("--json", help="write the results to this file")
    args = ap.parse_args()
    n, epochs = (2_000, 1) if args.quick else (args.spots, args.epochs)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        if args.device == "cuda":
            raise SystemExit("--device cuda: CUDA is not available")
        devices.remove("cuda")
    results = []
    for dev in devices:
        r = bench_fit(dev, n, args.genes, args.feature_dim, epochs, args.d, args.batch_size)
        results.append(r)
        print(f"[{r['device_name']}] {r['n_train']} train spots x {r['n_genes']} genes x {r['feature_dim']}-d, "
              f"d={r['d']}, batch {r['batch_size']}: "
              f"{np.median(r['train_seconds_per_epoch']):.2f} s/epoch (train), "
              f"{r['spots_per_second']:.0f} spots/s, hierarchy {r['hierarchy_seconds']:.1f} s, "
              f"peak RSS {r['peak_rss_mib']:.0f} MiB"
              + (f", peak CUDA {r['peak_cuda_allocated_mib']:.0f} MiB" if "peak_cuda_allocated_mib" in r else ""))
        if args.naive:
            s = bench_naive_step(dev, args.genes, args.feature_dim, args.d, args.batch_size)
            results.append(s)
            print(f"[{dev}] GE step: shared K/V {s['shared_kv_step_s'] * 1e3:.1f} ms, "
                  f"per-sample K/V {s['per_sample_kv_step_s'] * 1e3:.1f} ms ({s['speedup']:.0f}x)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
