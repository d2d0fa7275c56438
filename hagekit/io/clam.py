"""CLAM's folder layout for feature files: ``h5_files/<slide>.h5`` + ``pt_files/<slide>.pt``.

What CLAM reads (``dataset_modules/dataset_generic.py``, ``dataset_h5.py``): its MIL datasets
load ``<dir>/pt_files/<slide_id>.pt`` with ``torch.load`` as an (N, D) tensor, or
``<dir>/h5_files/<slide_id>.h5`` with ``features`` (N, D) and ``coords`` (N, 2); its patch
readers read ``patch_size`` px at pyramid level ``patch_level`` from each top-left
``coords`` entry. Our own files give ``patch_size`` TRIDENT's meaning (px at the target
magnification), which is CLAM's only when the tiles were read at a pyramid level matching the
target; here ``patch_size`` is always rewritten in CLAM's meaning, with CLAM's
``custom_downsample`` (read px / encoded px) when they differ.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hagekit.errors import DataError, at

__all__ = ["ClamExport", "clam_coords", "export_clam"]

log = logging.getLogger(__name__)


@dataclass
class ClamExport:
    """What :func:`export_clam` wrote (or kept) per feature file."""

    out_dir: Path
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def clam_coords(coords: np.ndarray, coords_attrs: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """Integer top-left coords and ``coords`` attributes in CLAM's meaning.

    ``patch_size`` px read at ``patch_level`` (downsample ``downsample``) cover
    ``patch_size_level0`` level-0 px: the tissue that was encoded. Older hagekit spot files
    (float centres, ``anchor="centre"``) are converted to top-left corners.
    """
    attrs = dict(coords_attrs)
    size0 = attrs.get("patch_size_level0")
    if size0 is None:  # CLAM's own file: patch_size is already at patch_level
        if "patch_size" not in attrs:
            raise DataError("coords lack 'patch_size_level0' and 'patch_size'")
        return np.asarray(coords).astype(np.int64), attrs
    size0 = float(size0)
    c = np.asarray(coords, dtype=np.float64)
    if str(attrs.get("anchor", "")) == "centre":
        c = c - size0 / 2.0
    level = int(attrs.get("patch_level", 0))
    ds = attrs.get("downsample", [1.0, 1.0]) if level > 0 else [1.0, 1.0]
    ds0 = float(np.ravel(ds)[0])
    read_px = max(1, int(round(size0 / ds0)))
    encoded = int(attrs.get("patch_size", read_px))
    attrs.update({
        "patch_level": level,
        "patch_size": read_px,
        "downsample": [ds0, ds0],
        "custom_downsample": read_px / encoded if encoded else 1.0,
        "anchor": "top-left",
    })
    if float(attrs["custom_downsample"]).is_integer():
        attrs["custom_downsample"] = int(attrs["custom_downsample"])
    return np.round(c).astype(np.int64), attrs


def _clam_files(src: Path) -> list[Path]:
    if src.is_file():
        return [src]
    if not src.is_dir():
        raise DataError(at(src, "feature folder not found"))
    files = sorted(p for p in src.glob("*.h5") if not p.name.startswith("."))
    if not files:
        raise DataError(at(src, "no <slide>.h5 feature files"))
    return files


def _whole_pair(h5_out: Path, pt_out: Path) -> bool:
    """Whether an existing ``h5_files/X.h5`` + ``pt_files/X.pt`` pair loads and agrees (a rerun
    after a crash or a full disk must not keep a truncated file as done)."""
    import h5py
    import torch

    try:
        pt = torch.load(pt_out, map_location="cpu", weights_only=True)
        with h5py.File(h5_out, "r") as h5:
            shape = tuple(h5["features"].shape)
            h5["features"][-1:]  # the last rows are readable
    except Exception:  # any damage (truncation, wrong content) means: write it again
        return False
    return isinstance(pt, torch.Tensor) and tuple(pt.shape) == shape


def export_clam(src: Path | str, out_dir: Path | str, *, overwrite: bool = False) -> ClamExport:
    """Write ``out_dir/h5_files/<name>.h5`` and ``out_dir/pt_files/<name>.pt`` for every
    feature file in ``src`` (a folder of hagekit/TRIDENT files, or one file). Existing
    outputs are kept unless ``overwrite``."""
    import torch

    from hagekit.io.atomic import atomic_path
    from hagekit.io.h5 import read_features, write_features

    src, out = Path(src), Path(out_dir)
    result = ClamExport(out)
    for f in _clam_files(src):
        h5_out, pt_out = out / "h5_files" / f"{f.stem}.h5", out / "pt_files" / f"{f.stem}.pt"
        if h5_out.exists() and pt_out.exists() and not overwrite:
            if _whole_pair(h5_out, pt_out):
                result.skipped.append(f.stem)
                continue
            log.warning("%s: damaged CLAM output (a truncated .pt or .h5); writing it again", pt_out)
        ff = read_features(f)
        try:
            coords, attrs = clam_coords(ff.coords, ff.coords_attrs)
        except DataError as exc:
            raise DataError(at(f, str(exc))) from None
        attrs["name"] = f.stem
        attrs["save_path"] = str((out / "h5_files").resolve())
        extra = {"centres": ff.centres} if ff.centres is not None else None
        write_features(h5_out, ff.features, coords, barcodes=ff.barcodes, attrs=ff.attrs, coords_attrs=attrs,
                       extra_datasets=extra)
        with atomic_path(pt_out) as tmp:
            torch.save(torch.from_numpy(np.ascontiguousarray(ff.features)), tmp)
        result.written.append(f.stem)
    log.info("CLAM layout in %s: %d written, %d kept", out, len(result.written), len(result.skipped))
    return result
