"""HEST-Bench task folders as HEST ships them (mahmoodlab/HEST, ``src/hest/bench/``).

Layout of one task (``<bench_data>/<task>/``), as ``create_benchmark_data`` writes it and
``benchmark.py`` reads it::

    adata/<id>.h5ad           raw counts; obs indexed by spot barcode
    patches/<id>.h5           img (N, 224, 224, 3) uint8, barcode (N, 1) bytes, coords (N, 2)
    splits/train_<i>.csv      sample_id, patches_path, expr_path (paths relative to the task)
    splits/test_<i>.csv       the same; fold i holds out one patient (or group of patients)
    var_50genes.json          {"genes": [...]}: the task's 50 most variable genes

HEST counts folds as ``len(os.listdir(splits)) // 2`` and reads ``train_<i>``/``test_<i>``;
here every pair must exist and no other file may sit in ``splits/`` unpaired.
Expression: ``adata[barcodes][:, genes]`` then ``log1p`` (``normalize=True``, HEST's default;
no library-size normalisation), in the order of the patch file's barcodes.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hagekit.errors import DataError, at

__all__ = ["HestSample", "HestFold", "HestTask", "open_hest_task", "read_patch_index", "read_expression",
           "list_tasks", "HEST_DATA_HINT", "GENE_FILE"]

GENE_FILE = "var_50genes.json"
SPLIT_COLUMNS = ("sample_id", "patches_path", "expr_path")
HEST_DATA_HINT = (
    "HEST's benchmark downloads it with huggingface_hub.snapshot_download('MahmoodLab/hest-bench', "
    "repo_type='dataset') into its bench_data_root (eval/bench_data/<task>/)"
)


@dataclass(frozen=True)
class HestSample:
    """One sample of a task: its id, patch file and expression file (absolute paths)."""

    sample_id: str
    patches: Path
    expr: Path


@dataclass(frozen=True)
class HestFold:
    """Fold ``index``: training and test samples, as ``splits/train_<i>.csv`` / ``test_<i>.csv`` list them."""

    index: int
    train: tuple[HestSample, ...]
    test: tuple[HestSample, ...]


@dataclass
class HestTask:
    """A HEST-Bench task folder: its name, the 50 genes and the folds."""

    name: str
    root: Path
    genes: list[str]
    folds: list[HestFold] = field(default_factory=list)

    @property
    def samples(self) -> list[HestSample]:
        """Every sample of the task once, in first-seen order."""
        seen: dict[str, HestSample] = {}
        for f in self.folds:
            for s in (*f.train, *f.test):
                seen.setdefault(s.sample_id, s)
        return list(seen.values())


def list_tasks(bench_data: Path) -> list[str]:
    """Task folders under ``bench_data`` (those with a ``splits/`` folder), sorted."""
    if not bench_data.is_dir():
        raise DataError(at(bench_data, f"HEST-Bench data folder not found; {HEST_DATA_HINT}"))
    names = sorted(p.name for p in bench_data.iterdir() if (p / "splits").is_dir())
    if not names:
        raise DataError(at(bench_data, f"no task folders (<task>/splits/); {HEST_DATA_HINT}"))
    return names


def _read_split(path: Path, root: Path) -> tuple[HestSample, ...]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
            header = rows[0].keys() if rows else []
    except OSError as exc:
        raise DataError(at(path, f"unreadable split file ({exc.strerror or exc})")) from None
    missing = [c for c in SPLIT_COLUMNS if c not in header]
    if not rows or missing:
        raise DataError(at(path, f"split file needs columns {', '.join(SPLIT_COLUMNS)} and one row per sample "
                                 f"(missing: {', '.join(missing) or 'rows'})"))
    out = []
    for r in rows:
        sid = str(r["sample_id"]).strip()
        patches, expr = root / str(r["patches_path"]).strip(), root / str(r["expr_path"]).strip()
        for p, what in ((patches, "patches"), (expr, "expression")):
            if not p.is_file():
                raise DataError(at(p, f"{what} file of sample {sid} (listed in {path.name}) not found; {HEST_DATA_HINT}"))
        out.append(HestSample(sid, patches, expr))
    return tuple(out)


def _read_genes(path: Path) -> list[str]:
    import json

    if not path.is_file():
        raise DataError(at(path, f"gene list not found (HEST puts {GENE_FILE} in each task folder)"))
    try:
        genes = json.loads(path.read_text(encoding="utf-8"))["genes"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(at(path, f'not a gene list {{"genes": [...]}} ({type(exc).__name__}: {exc})')) from None
    if not isinstance(genes, list) or not genes or len(set(genes)) != len(genes):
        raise DataError(at(path, '"genes" must be a non-empty list of distinct symbols'))
    return [str(g) for g in genes]


def open_hest_task(root: Path | str, *, gene_file: str = GENE_FILE) -> HestTask:
    """Read a task folder: gene list, every ``train_<i>``/``test_<i>`` pair and their samples' files."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(at(root, f"HEST-Bench task folder not found; {HEST_DATA_HINT}"))
    splits = root / "splits"
    if not splits.is_dir():
        raise DataError(at(splits, "no splits folder (train_<i>.csv / test_<i>.csv)"))
    genes = _read_genes(root / gene_file)
    indices: dict[str, set[int]] = {"train": set(), "test": set()}
    for p in splits.iterdir():
        m = re.fullmatch(r"(train|test)_(\d+)\.csv", p.name)
        if m:
            indices[m.group(1)].add(int(m.group(2)))
    every = sorted(indices["train"] | indices["test"])
    if not every:
        raise DataError(at(splits, "no split files (train_<i>.csv / test_<i>.csv)"))
    folds = []
    for i in range(max(every) + 1):
        for kind in ("train", "test"):
            if i not in indices[kind]:
                raise DataError(at(splits / f"{kind}_{i}.csv", "split file missing (HEST reads train_<i>/test_<i> "
                                                            f"for i < {max(every) + 1})"))
        folds.append(HestFold(i, _read_split(splits / f"train_{i}.csv", root), _read_split(splits / f"test_{i}.csv", root)))
    return HestTask(root.name, root, genes, folds)


def read_patch_index(path: Path) -> tuple[np.ndarray, int]:
    """Barcodes (N,) str of a patches h5 and its patch count; one-line errors for a bad file."""
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            if "img" not in h5:
                raise DataError(at(path, f"patches file has no 'img' dataset (keys: {', '.join(h5.keys()) or 'none'})"))
            if "barcode" not in h5:
                raise DataError(at(path, "patches file has no 'barcode' dataset"))
            img = h5["img"]
            if img.ndim != 4 or img.shape[-1] != 3:
                raise DataError(at(path, f"'img' must be (N, H, W, 3), got {img.shape}"))
            bc = np.asarray(h5["barcode"][:]).reshape(-1)
            n = int(img.shape[0])
    except OSError as exc:
        raise DataError(at(path, f"not a readable h5 file ({exc})")) from None
    if bc.shape[0] != n:
        raise DataError(at(path, f"{bc.shape[0]} barcodes for {n} patches"))
    text = np.array([b.decode() if isinstance(b, bytes) else str(b) for b in bc], dtype=object)
    return text, n


def read_expression(sample: HestSample, genes: list[str], barcodes: np.ndarray, *, normalize: bool = True) -> np.ndarray:
    """HEST's ``load_adata``: ``adata[barcodes][:, genes]``, then log1p when ``normalize`` -> (N, G) float64."""
    import anndata as ad
    import scipy.sparse as sp

    try:
        adata = ad.read_h5ad(sample.expr, backed=None)
    except Exception as exc:  # anndata/h5py raise many types for corrupt files
        raise DataError(at(sample.expr, f"not a readable .h5ad file ({type(exc).__name__}: {exc})")) from None
    index = {str(b): i for i, b in enumerate(adata.obs_names)}
    missing = [b for b in barcodes if b not in index]
    if missing:
        raise DataError(at(sample.patches, f"{len(missing)} of {len(barcodes)} patch barcodes are not spots of "
                                           f"{sample.expr.name} (first: {missing[0]})"))
    cols = {str(g): j for j, g in enumerate(adata.var_names)}
    absent = [g for g in genes if g not in cols]
    if absent:
        raise DataError(at(sample.expr, f"{len(absent)} gene(s) of {GENE_FILE} absent from this sample "
                                        f"({', '.join(absent[:5])}{', ...' if len(absent) > 5 else ''})"))
    rows = np.array([index[b] for b in barcodes], dtype=np.int64)
    x = adata.X[rows][:, [cols[g] for g in genes]]
    x = np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)
    return np.log1p(x) if normalize else x
