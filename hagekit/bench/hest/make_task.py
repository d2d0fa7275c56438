"""Any prepared workspace dataset as a HEST-Bench task folder (``hagekit data hest-bench-task``).

Written as HEST's ``create_benchmark_data`` / ``dump_patches`` / ``create_splits`` do:
``adata/<id>.h5ad`` (the section, raw counts), ``patches/<id>.h5`` (``img`` (N, 224, 224, 3)
uint8 patches of 112 µm centred on each spot, ``barcode`` (N, 1) bytes, ``coords`` (N, 2) int
level-0 top-left), ``splits/train_<i>.csv`` / ``test_<i>.csv`` and ``var_50genes.json``.

Genes: HEST's ``get_k_genes(criteria="var", min_cells_pct=0.10)``: per sample keep genes with
counts in at least ceil(10%) of its spots, intersect over samples, drop BLANK/Control probes,
stack the raw counts of every sample, log1p, scanpy's ``highly_variable_genes(n_top_genes=k)``
(flavor ``seurat``), first k in that order. Like HEST, the selection sees every sample of the task.
Folds: one per held-out patient (``split="patient"``, HEST's rule when K equals the number of
patients), or one per section (``split="section"``: other sections of the test patient stay in
training, which leaks patient identity; warned).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hagekit.errors import ConfigError, DataError, at
from hagekit.progress import Reporter, reporter_or_null

__all__ = ["TaskSpec", "select_hest_genes", "write_patches_h5", "make_hest_task", "SPLITS"]

log = logging.getLogger(__name__)

SPLITS = ("patient", "section")


@dataclass(frozen=True)
class TaskSpec:
    """What to write: sections, split rule, gene count, patch geometry (HEST: 112 µm, 224 px)."""

    sections: tuple[str, ...] = ()
    split: str = "patient"
    n_genes: int = 50
    patch_um: float = 112.0
    patch_px: int = 224
    min_cells_pct: float = 0.10


@dataclass
class TaskReport:
    """What was written."""

    out: Path
    genes: list[str]
    folds: list[list[str]] = field(default_factory=list)
    n_patches: dict[str, int] = field(default_factory=dict)


def select_hest_genes(adatas: Sequence, k: int = 50, min_cells_pct: float = 0.10) -> list[str]:
    """HEST's ``get_k_genes(adata_list, k, "var")`` on raw-count AnnData objects."""
    import anndata as ad
    import pandas as pd
    import scanpy as sc
    import scipy.sparse as sp

    common = None
    for a in adatas:
        x = a.X
        nz = np.asarray((x > 0).sum(axis=0)).reshape(-1)
        keep = np.asarray(a.var_names)[nz >= math.ceil(min_cells_pct * a.n_obs)]
        common = keep if common is None else np.intersect1d(common, keep)
    genes = [g for g in (common if common is not None else []) if "BLANK" not in g and "Control" not in g]
    if len(genes) < k:
        raise DataError(f"only {len(genes)} genes are expressed in >= {min_cells_pct:.0%} of the spots of every "
                        f"sample; HEST's rule needs {k}")
    blocks = []
    for a in adatas:
        sub = a[:, genes].X
        blocks.append(pd.DataFrame(sub.toarray() if sp.issparse(sub) else np.asarray(sub), columns=genes))
    frame = pd.concat(blocks, ignore_index=True).astype(np.float32)
    frame.index = frame.index.astype(str)
    stacked = ad.AnnData(frame)
    sc.pp.filter_genes(stacked, min_cells=0)
    sc.pp.log1p(stacked)
    sc.pp.highly_variable_genes(stacked, n_top_genes=k)
    return stacked.var_names[stacked.var["highly_variable"]][:k].tolist()


def write_patches_h5(path: Path, patcher, barcodes: Sequence[str], *, progress: Reporter | None = None,
                     chunk: int = 64) -> int:
    """HEST's patch file: ``img``, ``barcode`` (N, 1) bytes, ``coords`` (N, 2) level-0 top-left."""
    import h5py

    n, size = len(barcodes), patcher.out_size
    coords = (patcher.centres - patcher.size_px // 2).astype(np.int64)  # HEST: centre - size_src // 2, truncated
    task = reporter_or_null(progress).task(f"patches {path.stem}", total=n)
    try:
        with h5py.File(path, "w") as h5:
            img = h5.create_dataset("img", shape=(n, size, size, 3), dtype="uint8", chunks=(1, size, size, 3))
            for start in range(0, n, chunk):
                stop = min(n, start + chunk)
                img[start:stop] = np.stack([patcher.patch(i) for i in range(start, stop)])
                task.advance(stop - start)
            h5.create_dataset("barcode", data=np.array([str(b) for b in barcodes], dtype="S")[:, None])
            h5.create_dataset("coords", data=coords)
            img.attrs["patch_size_target"] = size  # as hagekit.io.hest / HEST's patcher write them
            img.attrs["patch_size_src"] = int(round(patcher.size_px))
            img.attrs["downsample"] = (patcher.patch_um / size) / patcher.mpp
            img.attrs["pixel_size"] = patcher.mpp
    finally:
        task.close()
    return n


def _folds(patients: dict[str, str], split: str) -> list[list[str]]:
    if split not in SPLITS:
        raise ConfigError(f"--split: unknown split {split!r} (choose from {', '.join(SPLITS)})")
    if split == "section":
        units = [[s] for s in patients]
        shared = sorted({p for p in patients.values() if list(patients.values()).count(p) > 1})
        if shared:
            log.warning("--split section: patients %s have several sections; their other sections stay in training, "
                        "which leaks patient identity (use --split patient, HEST's rule)", ", ".join(shared))
    else:
        by: dict[str, list[str]] = {}
        for s, p in patients.items():
            by.setdefault(p, []).append(s)
        units = list(by.values())
    if len(units) < 2:
        raise ConfigError(f"--split {split}: needs at least 2 held-out units, found {len(units)}")
    return units


def _split_csv(ids: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["sample_id", "patches_path", "expr_path"])
    for sid in ids:
        w.writerow([sid, f"patches/{sid}.h5", f"adata/{sid}.h5ad"])
    return buf.getvalue()


def make_hest_task(data_root: Path, dataset: str, out: Path, spec: TaskSpec = TaskSpec(), *,
                   overwrite: bool = False, progress: Reporter | None = None) -> TaskReport:
    """Write ``out`` as a HEST-Bench task from the sections (with images) of a prepared dataset."""
    from hagekit.data.section import dataset_sections, read_section, section_image_path
    from hagekit.io.atomic import atomic_dir
    from hagekit.slides.patches import SpotPatcher

    if out.exists() and not overwrite:
        raise ConfigError(at(out, "already exists; pass --overwrite or another --out"))
    files = {p.stem: p for p in dataset_sections(data_root, dataset)}
    names = list(spec.sections) or sorted(files)
    unknown = [s for s in names if s not in files]
    if unknown:
        raise ConfigError(f"--sections: {', '.join(unknown)} not in {dataset} (have {', '.join(sorted(files))})")
    adatas, images, patients = {}, {}, {}
    for s in names:
        a = read_section(files[s])
        img = section_image_path(a, files[s])
        if img is None or not Path(img).is_file():
            if spec.sections:
                raise DataError(at(files[s], "section has no image; a HEST-Bench task needs its patches"))
            continue
        adatas[s], images[s], patients[s] = a, Path(img), str(a.uns["hagekit"]["patient"])
    if len(adatas) < 2:
        raise DataError(at(data_root / dataset, f"{len(adatas)} section(s) with an image; a task needs at least 2"))
    genes = select_hest_genes(list(adatas.values()), spec.n_genes, spec.min_cells_pct)
    folds = _folds(patients, spec.split)
    report = TaskReport(out, genes, folds)
    with atomic_dir(out) as tmp:
        for sub in ("adata", "patches", "splits"):
            (tmp / sub).mkdir()
        for s, a in adatas.items():
            shutil.copyfile(files[s], tmp / "adata" / f"{s}.h5ad")
            patcher = SpotPatcher(images[s], np.asarray(a.obsm["spatial"]), mpp=float(a.uns["hagekit"]["mpp"]),
                                  patch_um=spec.patch_um, out_size=spec.patch_px, barcodes=list(a.obs_names))
            try:
                report.n_patches[s] = write_patches_h5(tmp / "patches" / f"{s}.h5", patcher, list(a.obs_names),
                                                       progress=progress)
            finally:
                patcher.close()
        for i, test in enumerate(folds):
            train = [s for s in adatas if s not in test]
            (tmp / "splits" / f"train_{i}.csv").write_text(_split_csv(train), encoding="utf-8")
            (tmp / "splits" / f"test_{i}.csv").write_text(_split_csv(test), encoding="utf-8")
        (tmp / "var_50genes.json").write_text(json.dumps({"genes": genes}), encoding="utf-8")
    return report
