"""Fit time of the context methods beside the spot-only ones, on synthetic sections.

Data: ``--sections`` square-grid sections of ``--side`` x ``--side`` spots (HER2ST-sized by
default: 5 sections of 196 spots), ``--dim``-wide features, ``--genes`` targets that follow the
spot's features and the mean of its 8 neighbours' (``log1p(exp(.))``, so non-negative like
normalised log expression). Leave-one-section-out on the first section; the other sections are
split 4:1 into training and validation spots as the protocol does, validation spots passed with
their sections (``groups_val``). Per method: one fit's wall seconds, the epochs it ran, and the
held-out section's PCC(all) (so a fast but useless fit shows). One torch thread by default.

    python benchmarks/context_fit_time.py [--methods ridge,ridge-ctx,mlp,triplex,histogene,hist2st]
        [--sections 5] [--side 14] [--dim 203] [--genes 200] [--threads 1] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

DEFAULT_METHODS = "ridge,ridge-ctx,mlp,mclstexp,triplex,histogene,hist2st"


def synthetic_sections(n_sections: int, side: int, dim: int, genes: int, seed: int):
    """Stacked (X, Y, spatial, section index) of square-grid sections with neighbourhood-driven expression."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(2 * dim, genes)) / np.sqrt(dim)
    xx, yy = np.meshgrid(np.arange(side), np.arange(side))
    grid = np.stack([xx.ravel(), yy.ravel()], 1)
    Xs, Ys, Ss, Gs = [], [], [], []
    for sec in range(n_sections):
        X = rng.normal(size=(side * side, dim)).astype(np.float32)
        img = np.pad(X.reshape(side, side, dim), ((1, 1), (1, 1), (0, 0)), mode="edge")
        ring = sum(img[1 + dy : 1 + dy + side, 1 + dx : 1 + dx + side]
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)) / 8
        Y = np.log1p(np.exp(np.hstack([X, 2.0 * ring.reshape(-1, dim)]) @ W + 0.3 * rng.normal(size=(len(X), genes))))
        Xs.append(X), Ys.append(Y.astype(np.float32)), Ss.append(grid * 100.0), Gs.append(np.full(len(X), sec))
    return np.concatenate(Xs), np.concatenate(Ys), np.concatenate(Ss), np.concatenate(Gs)


def time_one(name: str, arrays, seed: int) -> dict[str, float]:
    from hagekit.baselines import make_method, method_accepts
    from hagekit.metrics import evaluate_section
    from hagekit.training.protocol import call_accepting
    from hagekit.training.splits import train_val_split

    X, Y, S, G = arrays
    test = G == 0
    Xa, Ya, Sa, Ga = X[~test], Y[~test], S[~test], G[~test]
    tr, va = train_val_split(len(Xa), seed=seed, fold="S0", trial=0, val_fraction=0.2)
    est = make_method(name, **({"device": "cpu"} if method_accepts(name, "device") else {}), random_state=seed)
    t0 = time.perf_counter()
    call_accepting(est.fit, Xa[tr], Ya[tr], X_val=Xa[va], Y_val=Ya[va], spatial=Sa[tr], spatial_val=Sa[va],
          groups=Ga[tr], groups_val=Ga[va])
    fit_s = time.perf_counter() - t0
    pred = call_accepting(est.predict, X[test], spatial=S[test])
    return {"fit_s": fit_s, "epochs": len(getattr(est, "history_", []) or []),
            "pcc_all": evaluate_section(Y[test], pred).pcc_all}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=DEFAULT_METHODS)
    ap.add_argument("--sections", type=int, default=5)
    ap.add_argument("--side", type=int, default=14)
    ap.add_argument("--dim", type=int, default=203)
    ap.add_argument("--genes", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    arrays = synthetic_sections(args.sections, args.side, args.dim, args.genes, args.seed)
    print(f"{args.sections} sections x {args.side ** 2} spots, {args.dim}-d features, {args.genes} genes, "
          f"{args.threads} thread(s); fit on {args.sections - 1} sections (4:1 train/validation), test section 0")
    print("| method | fit s | epochs | PCC(all) held-out |\n|---|---|---|---|")
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        r = time_one(name, arrays, args.seed)
        print(f"| {name} | {r['fit_s']:.1f} | {r['epochs'] or '-'} | {r['pcc_all']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
