"""Extraction speed: end-to-end patches/s (DataLoader reading + transform + forward) against
the model's bare forward patches/s on the same batches, and peak memory.

The ratio end-to-end / bare shows whether reading is hidden behind the model (target >= 0.9
on CPU for ``timm:vit_small_patch16_224 --random-weights``; on CUDA the default is the ``uni``
config in bf16, target >= 1500 patches/s on one H100).

    python benchmarks/extract_speed.py --quick
    python benchmarks/extract_speed.py --encoder uni --random-weights --device cuda --batch-size 256
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _slide_source(tmp: Path) -> Path:
    """The CMU SVS from ../shared/data when present, else a synthetic H&E-like PNG slide."""
    shared = Path(os.environ.get("HAGEKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    cmu = shared / "wsi" / "cmu-1-small-region.svs"
    if cmu.is_file():
        return cmu
    from PIL import Image

    rng = np.random.default_rng(0)
    small = rng.integers(60, 230, (64, 48, 3)).astype(np.uint8)
    small[..., 1] //= 2
    path = tmp / "synthetic-slide.png"
    Image.fromarray(small).resize((1536, 2048), Image.Resampling.BICUBIC).save(path)
    return path


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (reader workers)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class _Cycled:
    """A dataset repeating the tiles of another up to ``n`` items (a bigger slide, same reads)."""

    def __init__(self, base, n: int) -> None:
        self.base, self.n = base, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.base[i % len(self.base)]


def main(argv: list[str] | None = None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encoder", default=None, help="encoder spec [timm:vit_small_patch16_224 on CPU, uni on CUDA]")
    p.add_argument("--weights", type=Path, default=None, help="weights file (else random weights)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--precision", default=None, help="fp32, bf16 or fp16 [bf16 on CUDA]")
    p.add_argument("--batch-size", type=int, default=None, help="patches per batch [32 CPU, 256 CUDA]")
    p.add_argument("--num-workers", type=int, default=None, help="reader workers [auto]")
    p.add_argument("--n-patches", type=int, default=None, help="patches per measurement")
    p.add_argument("--quick", action="store_true", help="a short run (fewer patches, one repeat)")
    p.add_argument("--repeats", type=int, default=None, help="alternating e2e/bare repeats, best kept [2; 1 with --quick]")
    p.add_argument("--json", action="store_true", help="print one JSON line only")
    args = p.parse_args(argv)

    from hagekit.encoders import create_encoder
    from hagekit.extract.engine import (
        EncoderSetup,
        default_num_workers,
        resolve_device,
        resolve_precision,
        run_encoder,
    )
    from hagekit.extract.slides import TileDataset
    from hagekit.slides.reader import open_slide
    from hagekit.slides.tiling import plan_grid
    from hagekit.slides.tissue import tissue_mask

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    spec = args.encoder or ("uni" if cuda else "timm:vit_small_patch16_224")
    batch = args.batch_size or (256 if cuda else 32)
    n = args.n_patches or ((2048 if args.quick else 16384) if cuda else (96 if args.quick else 384))
    n = max(batch, (n // batch) * batch)
    bundle = create_encoder(spec, weights=args.weights, random_weights=args.weights is None, device=str(device))
    precision = resolve_precision(args.precision, device, bundle.precision)
    workers = args.num_workers if args.num_workers is not None else default_num_workers(device)

    with tempfile.TemporaryDirectory() as tmp:
        src = _slide_source(Path(tmp))
        reader = open_slide(src, mpp=None if src.suffix == ".svs" else 0.5)
        thumb, scale = reader.thumbnail(1024)
        grid = plan_grid(reader, target_mpp=0.5, tile_size=256, mask=tissue_mask(thumb), mask_scale=scale, min_tissue=0.1)
        from hagekit.slides.reader import OpenSlideReader

        shared = None if isinstance(reader, OpenSlideReader) else reader
        ds = _Cycled(TileDataset(src, grid, bundle.transform, mpp=reader.mpp, reader=shared), n)

        autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision) if cuda else None
        model = bundle.model

        def forward(x):
            if autocast is not None:
                with torch.autocast("cuda", dtype=autocast):
                    return model(x)
            return model(x)

        # warm-up (kernels, autotuning, first-touch allocations)
        with torch.inference_mode():
            warm = torch.stack([ds[i] for i in range(min(batch, 8))]).to(device)
            forward(warm).float().cpu()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

        def bare_forward() -> float:
            """Patches/s of the model alone on the same batches, already on the device."""
            batches = [torch.stack([ds[j] for j in range(i, min(i + batch, n))]).to(device) for i in range(0, n, batch)]
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with torch.inference_mode():
                for b in batches:
                    out = forward(b)
                if cuda:
                    torch.cuda.synchronize()
                out.float().cpu()
            return n / (time.perf_counter() - t0)

        # alternate end-to-end and bare runs and keep the best of each (robust to machine load)
        e2e_runs, bare_runs = [], []
        repeats = args.repeats or (1 if args.quick else 2)
        e2e_cpu, bare_cpu = [], []
        for _ in range(repeats):
            c0 = _cpu_seconds()
            feats, stats = run_encoder(EncoderSetup.of(bundle, device, precision), ds, batch_size=batch, num_workers=workers)
            c1 = _cpu_seconds()
            e2e_runs.append(stats.patches_per_s)
            bare_runs.append(bare_forward())
            e2e_cpu.append(c1 - c0)
            bare_cpu.append(_cpu_seconds() - c1)
        e2e, bare = max(e2e_runs), max(bare_runs)

    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result = {
        "encoder": spec,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else f"cpu x{torch.get_num_threads()} threads",
        "precision": precision,
        "batch_size": batch,
        "num_workers": workers,
        "n_patches": n,
        "source": src.name,
        "end_to_end_patches_per_s": round(e2e, 2),
        "bare_forward_patches_per_s": round(bare, 2),
        "ratio": round(e2e / bare, 3),
        "runs_end_to_end": [round(v, 2) for v in e2e_runs],
        "runs_bare": [round(v, 2) for v in bare_runs],
        # CPU seconds (process + reader workers) per run: robust to other load on the machine;
        # the bare figure includes stacking the batches, so this ratio slightly favours e2e
        "cpu_s_end_to_end": [round(v, 1) for v in e2e_cpu],
        "cpu_s_bare": [round(v, 1) for v in bare_cpu],
        "cpu_ratio": round(min(bare_cpu) / min(e2e_cpu), 3) if min(e2e_cpu) > 0 else None,
        "peak_rss_mb": round(rss_mb, 1),
        "peak_worker_rss_mb": round(child_mb, 1),
        "peak_cuda_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if cuda else None,
        "feature_dim": int(feats.shape[1]),
    }
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
