"""Feature files in the CLAM/TRIDENT h5 layout, with hagekit provenance attributes.

Layout: datasets ``features`` (N x D float32), ``coords`` (N x 2 int64, top-left corners in
level-0 pixels, x then y, as every WSI tool writes them) and, for ST sections, ``barcodes``
(N, UTF-8) and ``centres`` (N x 2 float64 spot centres, level-0 px). Root attributes carry
provenance (encoder, weights sha256, patch size in px and µm, mpp, hagekit version, ...);
``coords`` carries TRIDENT's attributes (``patch_size`` at the target magnification,
``patch_size_level0``, ``level0_magnification``, ``target_magnification``, ``overlap``,
``name``, ``savetodir``, ``level0_width``, ``level0_height``) and CLAM's (``patch_level``,
``downsample``, ``level_dim``); ``features`` carries TRIDENT's ``name``, ``encoder`` and
``savetodir``. CLAM's own folder layout is written by :mod:`hagekit.io.clam`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hagekit.errors import DataError, ProvenanceError, at
from hagekit.io.atomic import atomic_path

__all__ = [
    "FeatureFile",
    "write_features",
    "read_features",
    "read_feature_attrs",
    "check_same_encoder",
]

#: Root attributes every hagekit feature file carries.
PROVENANCE_KEYS = (
    "encoder",
    "encoder_weights_sha256",
    "feature_dim",
    "patch_size_px",
    "patch_size_um",
    "mpp",
    "hagekit_version",
)


@dataclass
class FeatureFile:
    """One feature file in memory: features (N, D), coords (N, 2), barcodes (N,) and attrs."""

    features: np.ndarray
    coords: np.ndarray
    barcodes: np.ndarray | None
    attrs: dict[str, Any] = field(default_factory=dict)
    coords_attrs: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    centres: np.ndarray | None = None

    @property
    def spot_centres(self) -> np.ndarray:
        """Spot/tile centres in level-0 px: the ``centres`` dataset, else coords + half a patch."""
        if self.centres is not None:
            return np.asarray(self.centres, dtype=np.float64)
        if str(self.coords_attrs.get("anchor", "")) == "centre":  # older hagekit spot files: coords were the centres
            return np.asarray(self.coords, dtype=np.float64)
        half = float(self.coords_attrs.get("patch_size_level0", 0) or 0) / 2.0
        return np.asarray(self.coords, dtype=np.float64) + half

    @property
    def n(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])


def utf8_safe(text: str) -> str:
    """``text`` as valid UTF-8 for an HDF5 attribute: a path that is not valid UTF-8 (its
    undecodable bytes held as surrogates) keeps those bytes as ``\\xff`` escapes."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _clean_attr(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, Path):
        return utf8_safe(str(value))
    if isinstance(value, str):
        return utf8_safe(value)
    if isinstance(value, bool):
        return np.bool_(value)
    if isinstance(value, (dict, list, tuple)) and not _is_numeric_seq(value):
        import json

        return json.dumps(value)
    return value


def _is_numeric_seq(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(
        isinstance(v, (int, float, np.integer, np.floating)) for v in value
    )


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.dtype.kind in "SO":
        return [v.decode("utf-8") if isinstance(v, bytes) else v for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_features(
    path: Path | str,
    features: np.ndarray,
    coords: np.ndarray,
    *,
    barcodes: np.ndarray | list[str] | None = None,
    attrs: Mapping[str, Any] | None = None,
    coords_attrs: Mapping[str, Any] | None = None,
    extra_datasets: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write one feature file atomically. ``coords`` are level-0 pixel (x, y)."""
    import h5py

    features = np.asarray(features, dtype=np.float32)
    coords = np.asarray(coords)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {features.shape}")
    if coords.shape != (features.shape[0], 2):
        raise ValueError(f"coords must be ({features.shape[0]}, 2), got {coords.shape}")
    if barcodes is not None and len(barcodes) != features.shape[0]:
        raise ValueError(f"{len(barcodes)} barcodes for {features.shape[0]} features")
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            fds = h5.create_dataset("features", data=features, chunks=True if len(features) else None)
            # TRIDENT's features attributes (it writes name, savetodir and encoder)
            fds.attrs["name"] = utf8_safe(str((coords_attrs or {}).get("name") or path.stem))
            fds.attrs["savetodir"] = utf8_safe(str(path.parent.resolve()))
            fds.attrs["encoder"] = utf8_safe(str((attrs or {}).get("encoder", "")))
            cds = h5.create_dataset("coords", data=coords)
            for key, value in (coords_attrs or {}).items():
                cds.attrs[key] = _clean_attr(value)
            if barcodes is not None:
                h5.create_dataset(
                    "barcodes",
                    data=np.asarray([str(b) for b in barcodes], dtype=object),
                    dtype=h5py.string_dtype("utf-8"),
                )
            for name, data in (extra_datasets or {}).items():
                h5.create_dataset(name, data=data)
            merged = {"feature_dim": int(features.shape[1]), **dict(attrs or {})}
            for key, value in merged.items():
                h5.attrs[key] = _clean_attr(value)
    return path


def read_feature_attrs(path: Path | str) -> dict[str, Any]:
    """Root attributes of a feature file, without reading the arrays."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(at(path, "feature file not found"))
    try:
        with h5py.File(path, "r") as h5:
            return {k: _decode(v) for k, v in h5.attrs.items()}
    except OSError as exc:
        raise DataError(at(path, f"not a readable h5 file ({exc})")) from None


def read_features(path: Path | str, *, rows: slice | np.ndarray | None = None) -> FeatureFile:
    """Read a hagekit, CLAM or TRIDENT feature file (``features`` + ``coords``)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(at(path, "feature file not found"))
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(at(path, f"not a readable h5 file ({exc})")) from None
    with h5:
        for name in ("features", "coords"):
            if name not in h5:
                raise DataError(at(path, f"no '{name}' dataset (found: {', '.join(h5.keys())})"))
        sel = slice(None) if rows is None else rows
        feats = np.asarray(h5["features"][sel], dtype=np.float32)
        if feats.ndim == 3 and feats.shape[0] == 1:  # CLAM/TRIDENT sometimes store (1, N, D)
            feats = feats[0]
        coords = np.asarray(h5["coords"][sel])
        if coords.ndim == 3 and coords.shape[0] == 1:
            coords = coords[0]
        barcodes = None
        if "barcodes" in h5:
            barcodes = np.asarray(
                [b.decode("utf-8") if isinstance(b, bytes) else str(b) for b in h5["barcodes"][sel]],
                dtype=object,
            )
        centres = np.asarray(h5["centres"][sel], dtype=np.float64) if "centres" in h5 else None
        attrs = {k: _decode(v) for k, v in h5.attrs.items()}
        coords_attrs = {k: _decode(v) for k, v in h5["coords"].attrs.items()}
    if feats.ndim != 2 or feats.shape[0] != coords.shape[0]:
        raise DataError(
            at(path, f"features {feats.shape} and coords {coords.shape} do not match")
        )
    if not np.all(np.isfinite(feats)):
        raise DataError(at(path, "features contain NaN or Inf"))
    return FeatureFile(feats, coords, barcodes, attrs, coords_attrs, path, centres)


def check_same_encoder(files: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Refuse a set of feature files made by different encoders or patch settings.

    ``files`` maps a name (path or section) to its attrs; returns the shared attrs.
    """
    keys = ("encoder", "encoder_weights_sha256", "feature_dim", "patch_size_um")
    first_name, first = next(iter(files.items()))
    for name, attrs in files.items():
        for key in keys:
            if key in first and key in attrs and str(first[key]) != str(attrs[key]):
                raise ProvenanceError(
                    f"{name}: {key}={attrs[key]!r} differs from {first_name} ({first[key]!r}); "
                    "features of one run must come from one encoder and patch size"
                )
    return {k: first[k] for k in keys if k in first}


def spot_coords(
    centres: np.ndarray,
    size_px: float,
    mpp: float,
    dimensions: tuple[int, int],
    *,
    name: str,
    savetodir: Path | str = "",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Integer top-left level-0 ``coords`` of spot patches and their TRIDENT/CLAM attributes.

    A spot patch of ``size_px`` level-0 px (sub-pixel, centred on the spot) is written as the
    integer square ``[round(c - size/2), + round(size))``, read at level 0: ``patch_size`` =
    ``patch_size_level0`` = the tissue size in level-0 px, ``target_magnification`` =
    ``level0_magnification`` (the encoder's transform resizes it, as TRIDENT's do), so CLAM and
    TRIDENT both read back the tissue that was encoded (within half a pixel).
    """
    size0 = max(1, int(round(size_px)))
    c = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    coords = np.round(c - size_px / 2.0).astype(np.int64)
    mag = 10.0 / float(mpp)
    w, h = dimensions
    attrs: dict[str, Any] = {
        "patch_size": size0,
        "patch_size_level0": size0,
        "level0_magnification": mag,
        "target_magnification": mag,
        "overlap": 0,
        "name": name,
        "savetodir": str(savetodir),
        "level0_width": int(w),
        "level0_height": int(h),
        "patch_level": 0,
        "downsample": [1.0, 1.0],
        "level_dim": [int(w), int(h)],
        "downsampled_level_dim": [int(w), int(h)],
        "level0_mpp": float(mpp),
        "anchor": "top-left",
        "clam_consistent": True,
    }
    return coords, attrs
