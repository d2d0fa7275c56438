"""Overhead of the shared training loop against a bare hand-written epoch loop.

Same model (an MLP, 1024 -> 512 -> 512 -> 785), data, batches and optimiser; the two loops
run interleaved ``--reps`` times (alternating which goes first) so machine load hits both alike. Prints seconds per epoch
of each and their ratio (loop / bare; 1.0 = no overhead).

    python benchmarks/loop_overhead.py [--device cpu|cuda] [--spots 4000] [--epochs 2] [--reps 3] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def build(d_in: int, hidden: int, d_out: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(d_in, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden),
                               torch.nn.ReLU(), torch.nn.Linear(hidden, d_out))


def bare(model, x, y, epochs: int, bs: int) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen).to(x.device)
        for s in range(0, len(x), bs):
            idx = perm[s : s + bs]
            loss = F.mse_loss(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    if x.device.type == "cuda":
        torch.cuda.synchronize()


def shared(model, x, y, epochs: int, bs: int) -> None:
    from hagekit.learn.loop import LoopConfig, train_loop

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_loop(model, opt, lambda idx: F.mse_loss(model(x[idx]), y[idx]), n=len(x),
               config=LoopConfig(epochs=epochs, batch_size=bs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--spots", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from hagekit.device import resolve_device

    dev = resolve_device(args.device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.spots, 1024, generator=g).to(dev)
    y = torch.randn(args.spots, 785, generator=g).to(dev)
    times: dict[str, list[float]] = {"bare": [], "loop": []}
    order = [("bare", bare), ("loop", shared)]
    for rep in range(args.reps):
        for name, fn in order if rep % 2 == 0 else order[::-1]:  # alternate who runs first
            torch.manual_seed(0)
            model = build(1024, 512, 785).to(dev)
            t0 = time.perf_counter()
            fn(model, x, y, args.epochs, args.batch_size)
            times[name].append((time.perf_counter() - t0) / args.epochs)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"[{dev}, {torch.get_num_threads()} threads] {args.spots} spots, batch {args.batch_size}: "
          f"bare {med['bare']:.3f} s/epoch, shared loop {med['loop']:.3f} s/epoch, "
          f"ratio {med['loop'] / med['bare']:.3f} (median of {args.reps})")


if __name__ == "__main__":
    main()
