"""Spot features from stored patches (a HEST sample's ``patches/<id>.h5``) when there is no WSI.

HEST-1k ships, per sample, ``img`` (N, 224, 224, 3) uint8 patches of 112 µm (0.5 µm/px)
centred on the spots, ``barcode`` (N, 1) and ``coords`` (N, 2) level-0 top-left corners
(:mod:`hagekit.io.hest`). A section prepared from such a sample records the file as
``uns["hagekit"]["patches_path"]``; ``extract`` encodes those patches, in the section's spot
order, instead of cutting them from an image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hagekit.errors import DataError, at
from hagekit.io.hest import read_stored_index

__all__ = ["StoredPatchDataset", "extract_stored_patches"]

#: HEST's stored patch: 224 px of 0.5 µm (112 µm).
STORED_PATCH_UM = 112.0


class StoredPatchDataset:
    """Transformed stored patches in a given row order (one h5 handle per worker process)."""

    def __init__(self, path: Path, rows: np.ndarray, transform: Any) -> None:
        self.path, self.rows, self.transform = Path(path), np.asarray(rows, dtype=np.int64), transform
        self._h5: Any = None

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_h5": None}

    def __getitem__(self, i: int) -> Any:
        import h5py

        if self._h5 is None:
            self._h5 = h5py.File(self.path, "r")
        return self.transform(np.asarray(self._h5["img"][int(self.rows[i])], dtype=np.uint8))


def extract_stored_patches(spots: dict[str, Any], setup: Any, *, out_path: Path, dataset: str, batch_size: int,
                           num_workers: int, reporter: Any) -> int:
    """Encode a section's stored patches and write its feature file (barcodes in spot order)."""
    from hagekit.extract.common import provenance
    from hagekit.extract.engine import run_encoder
    from hagekit.io.h5 import write_features

    path = Path(spots["patches_path"])
    if not path.is_file():
        raise DataError(at(path, f"stored patches of section {spots['section']} not found"))
    barcodes, coords, side = read_stored_index(path)
    pos = {b: i for i, b in enumerate(barcodes)}
    missing = [b for b in spots["barcodes"] if b not in pos]
    if missing:
        raise DataError(at(path, f"{len(missing)} of {len(spots['barcodes'])} spots have no stored patch "
                                 f"(first: {missing[0]}); prepare the sample again"))
    rows = np.array([pos[b] for b in spots["barcodes"]], dtype=np.int64)
    ds = StoredPatchDataset(path, rows, setup.bundle.transform)
    task = reporter.task(f"{spots['section']} (stored patches)", total=len(ds))
    try:
        feats, _ = run_encoder(setup, ds, batch_size=batch_size, num_workers=num_workers, task=task)
    finally:
        task.close()
    if not np.all(np.isfinite(feats)):
        raise DataError(at(path, "encoder produced NaN/Inf features"))
    mpp = float(spots["mpp"])
    size0 = int(round(STORED_PATCH_UM / mpp)) if np.isfinite(mpp) and mpp > 0 else side
    attrs = provenance(setup, patch_size_px=float(size0), patch_size_um=STORED_PATCH_UM, mpp=mpp, dataset=dataset,
                       section=spots["section"], image_path="", patches_path=str(path), source="stored patches")
    coords_attrs = {"patch_size": size0, "patch_size_level0": size0, "patch_level": 0, "name": spots["section"]}
    write_features(out_path, feats, coords[rows], barcodes=spots["barcodes"], attrs=attrs, coords_attrs=coords_attrs,
                   extra_datasets={"centres": np.asarray(spots["centres"], dtype=np.float64)})
    return int(len(rows))
