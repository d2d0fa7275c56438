"""AB-MIL epoch time at TCGA scale: bags read through the old 4 GiB LRU over h5 files ("before")
against bags packed once into one memory-mapped file, fp32 and fp16 ("after").

A synthetic set of ``--slides`` bags x ``--patches`` tiles x ``--dim`` features (random
normal, written as hagekit h5 files) stands in for TCGA-BRCA UNI features. For each store:
the one-time cost (packing), then per epoch the time to read every bag in a shuffled order
(the data path alone) and, with ``--train``, one AB-MIL training epoch on the shared loop.
The LRU is also run with a cache smaller than the data (``--small-lru-gib``), the regime of
1,000 slides (tens of GB) against 4 GiB, scaled down to this set.

    python benchmarks/abmil_speed.py --quick          # 200 x 4,000 x 1,024 (3.3 GB), 1 thread
    python benchmarks/abmil_speed.py --slides 1000    # the full size, on a larger machine
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _write_set(root: Path, n: int, patches: int, dim: int, seed: int = 0) -> dict[str, Path]:
    from hagekit.io.h5 import write_features

    rng = np.random.default_rng(seed)
    files = {}
    coords = np.stack([np.arange(patches) % 64 * 256, np.arange(patches) // 64 * 256], axis=1)
    for i in range(n):
        x = rng.standard_normal((patches, dim), dtype=np.float32)
        files[f"slide{i:04d}"] = write_features(root / f"slide{i:04d}.h5", x, coords, attrs={"encoder": "synthetic"})
    return files


def _read_epoch(store, ids, seed: int) -> float:
    order = np.random.default_rng(seed).permutation(len(ids))
    t0 = time.perf_counter()
    total = 0.0
    for i in order:
        total += float(store.get(ids[i])[0][0, 0])
    return time.perf_counter() - t0


def _train_epoch(store, ids, labels, dim: int, device: str) -> float:
    """One AB-MIL epoch (training on 90% of the bags, validation on the rest) on the shared loop."""
    from hagekit.bench.downstream.abmil import ABMILConfig, LabelledBags, train_abmil

    cut = int(len(ids) * 0.9)
    cfg = ABMILConfig(max_epochs=1, min_epochs=0, patience=1, device=device)
    t0 = time.perf_counter()
    train_abmil(store, LabelledBags(ids[:cut], labels[:cut]), LabelledBags(ids[cut:], labels[cut:]), n_classes=2,
                in_dim=dim, config=cfg)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="200 slides x 4,000 patches x 1,024-d (the default size)")
    ap.add_argument("--slides", type=int, default=200)
    ap.add_argument("--patches", type=int, default=4000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=2, help="read epochs per store")
    ap.add_argument("--train", action="store_true", help="also time one AB-MIL training epoch per store")
    ap.add_argument("--small-lru-gib", type=float, default=None, help="LRU cap below the data size (default: data/4)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="device of the training epoch (auto, cpu, cuda)")
    ap.add_argument("--workdir", type=Path, default=None, help="where to write the synthetic set (default: a temp dir)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from hagekit.bench.downstream.abmil import BagStore, pack_bags

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="abmil-speed-", dir=args.workdir))
    rows = []
    try:
        t0 = time.perf_counter()
        files = _write_set(tmp / "feats", args.slides, args.patches, args.dim)
        data_gb = args.slides * args.patches * args.dim * 4 / 1e9
        print(f"synthetic set: {args.slides} slides x {args.patches} x {args.dim} = {data_gb:.2f} GB fp32 "
              f"(written in {time.perf_counter() - t0:.0f}s)", file=sys.stderr)
        ids = sorted(files)
        labels = np.arange(len(ids)) % 2
        small = args.small_lru_gib if args.small_lru_gib is not None else data_gb / 4 / 1.073741824
        stores = [("before: h5 + LRU 4 GiB", lambda: BagStore(files), 0.0),
                  (f"before: h5 + LRU {small:.2f} GiB (data/cache as TCGA)", lambda: BagStore(files, max_bytes=int(small * 2**30)), 0.0)]
        for dtype in ("fp32", "fp16"):
            t1 = time.perf_counter()
            pack_bags(files, tmp / "packed", dtype=dtype)
            cost = time.perf_counter() - t1
            stores.append((f"after: packed memmap {dtype}", lambda d=dtype: pack_bags(files, tmp / "packed", dtype=d), cost))
        if args.train:  # warm-up (torch kernels, thread pools) so the first store is not charged for it
            _train_epoch(BagStore(files), ids[:10], labels[:10], args.dim, args.device)
        for name, make, once in stores:
            store = make()
            reads = [_read_epoch(store, ids, seed=e) for e in range(args.epochs)]
            row = {"store": name, "one_time_s": once, **{f"read_epoch{e + 1}_s": r for e, r in enumerate(reads)}}
            if args.train:
                row["train_epoch_s"] = _train_epoch(store, ids, labels, args.dim, args.device)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    cols = [k for k in rows[0] if k != "store"]
    print(f"{'store':48s} " + " ".join(f"{c:>15s}" for c in cols))
    for r in rows:
        print(f"{r['store']:48s} " + " ".join(f"{r[c]:15.2f}" for c in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
