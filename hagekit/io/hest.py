"""HEST-1k's spot patch layout (``hest.HESTData.dump_patches``), written by ``--dump-patches``.

One ``<section>.h5`` per section: ``img`` (N, 224, 224, 3) uint8 patches of 224 px at
0.5 µm/px centred on the spots, ``coords`` (N, 2) int64 top-left corners in level-0 px and
``barcode`` (N, 1) bytes; ``img`` attributes ``patch_size_target`` (224), ``patch_size_src``
(level-0 px), ``downsample`` (target / source µm per px) and ``pixel_size`` (source µm/px), as
HEST writes them. The layout is independent of the encoder's input size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["HEST_PATCH_PX", "HEST_MPP", "hest_topleft", "write_hest_patches", "read_stored_index"]

#: HEST's patch: 224 px at 0.5 µm/px (112 µm).
HEST_PATCH_PX = 224
HEST_MPP = 0.5


def hest_topleft(centres: np.ndarray, mpp: float) -> tuple[np.ndarray, int]:
    """HEST's integer top-left corners (centre - source size // 2, truncated) and source size."""
    size_src = HEST_PATCH_PX * HEST_MPP / float(mpp)
    topleft = np.asarray(centres, dtype=np.float64) - size_src // 2
    return topleft.astype(np.int64), int(round(size_src))


def write_hest_patches(
    path: Path, patches: np.ndarray, centres: np.ndarray, barcodes: np.ndarray, *, mpp: float, name: str
) -> Path:
    """Write one section's patches in HEST's layout, atomically."""
    import h5py

    from hagekit.io.atomic import atomic_path

    patches = np.asarray(patches, dtype=np.uint8)
    if patches.shape[1:] != (HEST_PATCH_PX, HEST_PATCH_PX, 3):
        raise ValueError(f"HEST patches are ({HEST_PATCH_PX}, {HEST_PATCH_PX}, 3), got {patches.shape[1:]}")
    coords, size_src = hest_topleft(centres, mpp)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        img = h5.create_dataset("img", data=patches, chunks=(1, *patches.shape[1:]) if len(patches) else None)
        img.attrs["patch_size_target"] = HEST_PATCH_PX
        img.attrs["patch_size_src"] = size_src
        img.attrs["downsample"] = HEST_MPP / float(mpp)
        img.attrs["pixel_size"] = float(mpp)
        img.attrs["name"] = name
        h5.create_dataset("coords", data=coords)
        h5.create_dataset("barcode", data=np.asarray([[str(b).encode()] for b in barcodes], dtype="S"))
    return Path(path)


def read_stored_index(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """``(barcodes (N,) str, coords (N, 2) int64, patch side px)`` of a HEST patch file."""
    import h5py

    from hagekit.errors import DataError, at

    try:
        with h5py.File(path, "r") as h5:
            if "img" not in h5 or "barcode" not in h5:
                raise DataError(at(path, "stored patches need 'img' and 'barcode' datasets (HEST's patches/<id>.h5)"))
            bc = np.asarray(h5["barcode"][:]).reshape(-1)
            coords = np.asarray(h5["coords"][:], dtype=np.int64) if "coords" in h5 else np.zeros((len(bc), 2), np.int64)
            side = int(h5["img"].shape[1])
    except OSError as exc:
        raise DataError(at(path, f"not a readable h5 file ({exc})")) from None
    return np.array([b.decode() if isinstance(b, bytes) else str(b) for b in bc]), coords, side
