"""Linear-probe embedding throughput: a PCAM-like h5 set (96 px patches) embedded through the
probe's path (one DataLoader whose workers read h5 slices and transform, the cache filled as
batches arrive), images/s of the whole pass.

    python benchmarks/probe_speed.py --quick                     # CPU, builtin encoder
    python benchmarks/probe_speed.py --device cuda --encoder uni --n 16384 --batch-size 256
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _pcam_like(root: Path, n: int) -> Path:
    import h5py

    rng = np.random.default_rng(0)
    path = root / "patches_x.h5"
    with h5py.File(path, "w") as h5:
        ds = h5.create_dataset("x", shape=(n, 96, 96, 3), dtype="uint8", chunks=(64, 96, 96, 3))
        for s in range(0, n, 1024):
            block = rng.integers(60, 230, (min(1024, n - s), 96, 96, 3), dtype=np.uint8)
            block[..., 1] //= 2
            ds[s : s + block.shape[0]] = block
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="512 patches")
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--encoder", default="builtin")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--num-workers", type=int, default=None, help="reader workers [auto for the device]")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from hagekit.bench.downstream.linear_probe import EmbedSettings, embed_patch_dataset
    from hagekit.bench.downstream.patch_datasets import PatchDataset
    from hagekit.device import default_num_workers, resolve_device
    from hagekit.encoders import create_encoder

    n = 512 if args.quick else args.n
    dev = resolve_device(args.device)
    workers = default_num_workers(dev) if args.num_workers is None else args.num_workers
    bundle = create_encoder(args.encoder, random_weights=args.encoder != "builtin", device=str(dev))
    with tempfile.TemporaryDirectory() as tmp:
        path = _pcam_like(Path(tmp), n)
        ds = PatchDataset(name="pcam-like", root=Path(tmp), labels=np.arange(n) % 2, class_names=["a", "b"],
                          h5_parts=[(path, n)])
        embed_patch_dataset(ds, bundle, np.arange(min(n, args.batch_size)),  # warm-up (kernels, first allocations)
                            settings=EmbedSettings(batch_size=args.batch_size, device=str(dev), num_workers=0))
        t0 = time.perf_counter()
        x = embed_patch_dataset(ds, bundle, cache_dir=Path(tmp) / "cache",
                                settings=EmbedSettings(batch_size=args.batch_size, device=str(dev), num_workers=workers))
        secs = time.perf_counter() - t0
    result = {"encoder": args.encoder, "device": str(dev), "n": n, "dim": int(x.shape[1]), "batch_size": args.batch_size,
              "num_workers": workers, "seconds": round(secs, 2), "images_per_s": round(n / secs, 1)}
    print(json.dumps(result) if args.json else "\n".join(f"{k:<12} {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
