"""``bench hest`` embedding throughput: one run with several ``ge:`` heads on one base encoder
(the base runs once per patch, every head reuses its features) vs one run per head.

    python benchmarks/hest_throughput.py --data BENCH_DATA --tasks HER2ST \\
        --ge RUN:C2:0 --ge RUN:C3:0 --ge RUN:C4:0 [--device cuda] [--allow-leak]

Each configuration starts from an empty embedding cache, so both pay every forward pass they
make; the figures are wall time of the whole ``run_hest_bench`` (embedding, heads, protocol)
(and its process CPU time, steadier on a shared machine) and the number of (base encoder,
sample) embedding passes (``n_embedded``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def _run(data: Path, tasks: list[str] | None, encoders: list[str], args: argparse.Namespace) -> dict:
    from hagekit.bench.hest.protocol import ProtocolConfig
    from hagekit.bench.hest.run import HestBenchRequest, run_hest_bench

    with tempfile.TemporaryDirectory() as tmp:
        req = HestBenchRequest(data=data, encoders=encoders, out_dir=Path(tmp) / "out", tasks=tasks,
                               cache_dir=Path(tmp) / "cache", protocol=ProtocolConfig(latent_dim=args.latent_dim),
                               allow_leak=args.allow_leak, embed_batch_size=args.batch_size, device=args.device)
        t0, c0 = time.perf_counter(), time.process_time()
        res = run_hest_bench(req)
        sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"encoders": encoders, "seconds": sec, "cpu_seconds": cpu, "embedding_passes": res.n_embedded,
            "scores": {f"{r.task}/{r.encoder}": round(r.mean, 4) for r in res.results}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="HEST-Bench data folder")
    ap.add_argument("--tasks", default=None, help="comma-separated tasks (default all)")
    ap.add_argument("--ge", action="append", required=True, help="a ge: target (run[:fold:trial] or file); repeat")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--latent-dim", type=int, default=256)
    ap.add_argument("--allow-leak", action="store_true")
    args = ap.parse_args(argv)
    import torch

    if args.device == "cpu":
        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    from hagekit.bench.hest.tasks import open_hest_task

    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else None
    names = tasks or sorted(p.name for p in args.data.iterdir() if (p / "splits").is_dir())
    n_patches = 0
    for name in names:
        from hagekit.bench.hest.tasks import read_patch_index

        n_patches += sum(read_patch_index(s.patches)[1] for s in open_hest_task(args.data / name).samples)
    heads = [f"ge:{g}" for g in args.ge]
    together = _run(args.data, tasks, heads, args)
    separate = [_run(args.data, tasks, [h], args) for h in heads]
    sep_sec = sum(r["seconds"] for r in separate)
    out = {
        "device": args.device, "n_patches": n_patches, "n_heads": len(heads),
        "one_run": {"seconds": round(together["seconds"], 2), "cpu_seconds": round(together["cpu_seconds"], 2),
                    "embedding_passes": together["embedding_passes"],
                    "patches_per_s": round(n_patches * len(heads) / together["seconds"], 1)},
        "separate_runs": {"seconds": round(sep_sec, 2), "cpu_seconds": round(sum(r["cpu_seconds"] for r in separate), 2),
                          "embedding_passes": sum(r["embedding_passes"] for r in separate),
                          "patches_per_s": round(n_patches * len(heads) / sep_sec, 1)},
        "speedup": round(sep_sec / together["seconds"], 2),
        "cpu_speedup": round(sum(r["cpu_seconds"] for r in separate) / together["cpu_seconds"], 2),
        "same_scores": together["scores"] == {k: v for r in separate for k, v in r["scores"].items()},
    }
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
