"""Extraction scale-out: patches/s with 1 rank against N ranks of ``torchrun -m hagekit extract``.

On CPU each rank gets one torch thread (``OMP_NUM_THREADS=1``), so N ranks use N cores and
the ideal ratio is N (target >= 1.8 for 2 ranks). On GPUs (``--device cuda``) rank r uses
``cuda:r``. The set is ``--slides`` identical-size synthetic H&E-like slides, so the deal is
balanced and the ratio shows the mechanism's overhead (gather, dealing, start-up) only.

Rate = all patches / the busiest rank's encoding seconds (from the run's ``--summary-json``);
the wall time including interpreter and encoder start-up is printed beside it.

    python benchmarks/scale_extract.py                      # CPU, 1 vs 2 ranks
    python benchmarks/scale_extract.py --device cuda --nproc 8 --encoder uni --batch-size 256
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _slides(root: Path, n: int, side: int) -> Path:
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rng = np.random.default_rng(i)
        small = rng.integers(60, 230, (side // 32, side // 32, 3)).astype(np.uint8)
        small[..., 1] //= 2  # pink, so the tissue mask keeps it
        Image.fromarray(small).resize((side, side), Image.Resampling.BICUBIC).save(root / f"slide{i:02d}.png")
    return root


def _run(nproc: int, slides: Path, out: Path, args: argparse.Namespace) -> dict:
    summary = out.with_suffix(".json")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "hagekit", "-q", "extract", "--slides", str(slides), "--mpp", "0.5", "--tile-size", str(args.tile_size),
           "--encoder", args.encoder, "--device", args.device, "--batch-size", str(args.batch_size),
           "--num-workers", str(args.num_workers), "--out", str(out), "--summary-json", str(summary)]
    if args.random_weights:
        cmd.append("--random-weights")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.stderr.write(r.stderr[-4000:])
        raise SystemExit(f"torchrun with {nproc} rank(s) failed (exit {r.returncode})")
    s = json.loads(summary.read_text())
    return {"ranks": nproc, "patches": s["n_patches"], "patches_per_s": s["patches_per_s"], "wall_s": wall,
            "per_rank": [round(x["patches_per_s"], 1) for x in s["ranks"]]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nproc", type=int, default=2, help="ranks of the scaled run (compared with 1)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--encoder", default="timm:vit_tiny_patch16_224")
    ap.add_argument("--random-weights", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--slides", type=int, default=4, help="synthetic slides (a multiple of --nproc balances)")
    ap.add_argument("--side", type=int, default=1792, help="slide side in px (0.5 µm/px)")
    ap.add_argument("--tile-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="scale-extract-"))
    try:
        slides = _slides(tmp / "slides", args.slides, args.side)
        rows = [_run(n, slides, tmp / f"out{n}", args) for n in (1, args.nproc)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ratio = rows[1]["patches_per_s"] / rows[0]["patches_per_s"]
    if args.json:
        print(json.dumps({"rows": rows, "ratio": ratio}, indent=2))
        return 0
    print(f"{args.encoder} on {args.device}, {args.slides} slides x {rows[0]['patches'] // args.slides} tiles, "
          f"{args.threads} thread(s)/rank")
    print(f"{'ranks':>5} {'patches':>8} {'patches/s':>10} {'wall s':>7}  per-rank patches/s")
    for r in rows:
        print(f"{r['ranks']:>5} {r['patches']:>8} {r['patches_per_s']:>10.1f} {r['wall_s']:>7.1f}  {r['per_rank']}")
    print(f"ratio {args.nproc} ranks / 1 rank: {ratio:.2f} (ideal {args.nproc}; CPU target >= {0.9 * args.nproc:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
