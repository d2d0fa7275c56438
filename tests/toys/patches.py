"""H&E-like crops and PCAM's published file layout, for the patch-dataset and linear-probe tests."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from hagekit.bench.downstream.patch_datasets import PCAM_PREFIX

REPO = Path(__file__).resolve().parents[2]


def he_crops(n: int, size: int = 96, seed: int = 0) -> np.ndarray:
    """``n`` real H&E crops (n, size, size, 3) uint8 from HER2ST C2 (noise when absent)."""
    root = Path(os.environ.get("HAGEKIT_SHARED_DATA", REPO.parent / "shared" / "data"))
    imgs = sorted((root / "her2st" / "data" / "ST-imgs" / "C" / "C2").glob("*.jpg"))
    rng = np.random.default_rng(seed)
    if not imgs:
        return synthetic_he(n, size, rng)
    Image.MAX_IMAGE_PIXELS = None
    with Image.open(imgs[0]) as im:
        im.draft("RGB", (im.size[0] // 4, im.size[1] // 4))
        w, h = im.size
        region = np.asarray(im.crop((w // 4, h // 4, w // 4 + 900, h // 4 + 900)).convert("RGB"))
    ys = rng.integers(0, region.shape[0] - size, n)
    xs = rng.integers(0, region.shape[1] - size, n)
    return np.stack([region[y : y + size, x : x + size] for y, x in zip(ys, xs, strict=True)])


def synthetic_he(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """H&E-coloured stand-ins (pink stroma, purple nuclei) when the real images are absent."""
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        img = np.array([235.0, 170.0, 205.0]) + rng.normal(0, 12, (size, size, 3))
        for _ in range(int(rng.integers(5, 25))):
            cy, cx, r = rng.integers(0, size), rng.integers(0, size), rng.integers(3, 8)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = np.array([110.0, 60.0, 150.0]) + rng.normal(0, 10, 3)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def write_pcam(root: Path, split: str, x: np.ndarray, y: np.ndarray, wsi: list[str] | None = None) -> None:
    """PCAM's published layout: ``x`` (N,96,96,3) uint8, ``y`` (N,1,1,1), optional meta CSV."""
    root.mkdir(parents=True, exist_ok=True)
    with h5py.File(root / f"{PCAM_PREFIX}{split}_x.h5", "w") as f:
        f.create_dataset("x", data=x, chunks=(min(len(x), 8), 96, 96, 3), compression="gzip")
    with h5py.File(root / f"{PCAM_PREFIX}{split}_y.h5", "w") as f:
        f.create_dataset("y", data=np.asarray(y, dtype=np.uint8).reshape(-1, 1, 1, 1))
    if wsi is not None:
        with open(root / f"{PCAM_PREFIX}{split}_meta.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["", "coord_y", "coord_x", "tumor_patch", "center_tumor_patch", "wsi"])
            for i, s in enumerate(wsi):
                w.writerow([i, 100 * i, 50 * i, bool(y[i]), bool(y[i]), s])
