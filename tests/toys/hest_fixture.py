"""HEST-Bench task folders in HEST's exact layout, built from synthetic sections.

``adata/<id>.h5ad`` (raw counts, obs indexed by barcode, ``patient``), ``patches/<id>.h5``
(``img`` (N, S, S, 3) uint8, ``barcode`` (N, 1) bytes, ``coords`` (N, 2)), ``splits/train_<i>.csv``
and ``test_<i>.csv`` (``sample_id, patches_path, expr_path``), ``var_50genes.json``.
Expression is a noisy function of the patches' colour, so the protocol has signal to find.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

ALL_GENES = [f"G{i}" for i in range(14)]
TASK_GENES = ALL_GENES[:10]
#: sample -> patient: 3 patients; fold 0 holds out patient P1, fold 1 patients P2 and P3.
SAMPLES = {"A1": "P1", "A2": "P1", "B1": "P2", "C1": "P3"}
FOLDS = ({"test": ["A1", "A2"], "train": ["B1", "C1"]}, {"test": ["B1", "C1"], "train": ["A1", "A2"]})


def write_sample(task: Path, sid: str, patient: str, *, n: int, seed: int, size: int = 32) -> None:
    import anndata as ad
    import h5py
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    latent = rng.uniform(0, 1, size=(n, 3))
    base = np.array([[200, 120, 180]], float) * (0.5 + 0.5 * latent)
    img = np.clip(base[:, None, None, :] + rng.normal(0, 12, size=(n, size, size, 3)), 0, 255).astype(np.uint8)
    load = np.random.default_rng(7).normal(0, 1.2, size=(3, len(ALL_GENES)))
    counts = rng.poisson(np.exp(0.8 + latent @ load)).astype(np.float32)
    barcodes = [f"{sid}_{k:03d}" for k in range(n)]
    obs = pd.DataFrame({"patient": [patient] * n}, index=barcodes)
    adata = ad.AnnData(sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=ALL_GENES))
    (task / "adata").mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(task / "adata" / f"{sid}.h5ad")
    (task / "patches").mkdir(parents=True, exist_ok=True)
    with h5py.File(task / "patches" / f"{sid}.h5", "w") as h5:
        h5.create_dataset("img", data=img)
        h5.create_dataset("barcode", data=np.array(barcodes, dtype="S")[:, None])
        h5.create_dataset("coords", data=np.stack([np.arange(n) * size, np.zeros(n)], 1).astype(np.int64))


def make_task(root: Path, name: str, *, n: int = 40, seed: int = 0) -> Path:
    """One task folder under ``root`` with 4 samples of 3 patients and 2 folds."""
    task = root / name
    for k, (sid, patient) in enumerate(SAMPLES.items()):
        write_sample(task, sid, patient, n=n, seed=seed * 100 + k)
    (task / "splits").mkdir(parents=True, exist_ok=True)
    for i, fold in enumerate(FOLDS):
        for kind in ("train", "test"):
            with (task / "splits" / f"{kind}_{i}.csv").open("w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["sample_id", "patches_path", "expr_path"])
                for sid in fold[kind]:
                    w.writerow([sid, f"patches/{sid}.h5", f"adata/{sid}.h5ad"])
    (task / "var_50genes.json").write_text(json.dumps({"genes": TASK_GENES}))
    return task


def make_bench(root: Path) -> Path:
    """Two tasks (T1, T2) in ``root``."""
    make_task(root, "T1", seed=0)
    make_task(root, "T2", seed=1)
    return root
