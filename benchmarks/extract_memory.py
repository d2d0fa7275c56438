"""Host memory of the extraction loop: features collected into one (N, D) array (``run_encoder``)
against features streamed to a writer batch by batch (``stream_encoder``, the probe cache's path).

A tiny linear "encoder" to D dims stands in for a real one, so the figures are the loop's own
arrays (tracemalloc sees numpy's buffers, not torch's); streaming should stay near one batch.

    python benchmarks/extract_memory.py --n 20000 --dim 1536
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc

import torch


class _Tiles:
    """``n`` constant 4 x 4 "tiles" (tile ``i`` holds ``i``), batched by the DataLoader."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.full((3, 4, 4), float(i))


def _peak(fn) -> tuple[float, float]:
    """(peak traced MiB, seconds) of ``fn()``."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20, time.perf_counter() - t0
    finally:
        tracemalloc.stop()


def main() -> int:
    from hagekit.encoders.registry import EncoderBundle
    from hagekit.extract.engine import EncoderSetup, run_encoder, stream_encoder

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="tiles")
    ap.add_argument("--dim", type=int, default=1536, help="feature width (UNI2-h: 1536)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, args.dim)).eval()
    bundle = EncoderSetup.of(EncoderBundle("linear", model, lambda x: x, args.dim, 4, "", True))
    data = _Tiles(args.n)
    kw = {"batch_size": args.batch_size}
    streamed, s_secs = _peak(lambda: stream_encoder(bundle, data, on_features=lambda feats, rest: None, **kw))
    collected, c_secs = _peak(lambda: run_encoder(bundle, data, **kw))
    result = {"n": args.n, "dim": args.dim, "batch_size": args.batch_size,
              "all_rows_mib": round(args.n * args.dim * 4 / 2**20, 1),
              "collect_peak_mib": round(collected, 1), "stream_peak_mib": round(streamed, 1),
              "collect_seconds": round(c_secs, 2), "stream_seconds": round(s_secs, 2)}
    print(json.dumps(result) if args.json else "\n".join(f"{k:<18} {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
