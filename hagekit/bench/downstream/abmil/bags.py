"""Bags: one slide's tile features. Found in hagekit/CLAM/TRIDENT folders, read through a
small LRU (:class:`BagStore`) or, at TCGA scale, packed once into one memory-mapped file
(:class:`PackedBags`: features + offsets, fp32 or fp16) that the OS page cache serves."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hagekit.errors import ConfigError, DataError, ProvenanceError, at
from hagekit.io.paths import child_path

__all__ = ["find_feature_files", "BagStore", "PackedBags", "pack_bags", "PACK_DTYPES"]

logger = logging.getLogger(__name__)


def find_feature_files(
    features_dir: Path | str, slide_ids: Sequence[str], *, allow_missing: bool = False
) -> dict[str, Path]:
    """Map slide ids to ``<dir>/<id>.h5`` or ``<dir>/h5_files/<id>.h5`` (CLAM); TRIDENT folders work as-is."""
    root = Path(features_dir)
    if not root.is_dir():
        raise DataError(at(root, "features folder not found"))
    found: dict[str, Path] = {}
    missing = []
    for sid in slide_ids:
        for cand in (child_path(root, f"{sid}.h5", what="slide_id"), root / "h5_files" / f"{sid}.h5"):
            if cand.is_file():
                found[sid] = cand
                break
        else:
            missing.append(sid)
    check_missing(root, "feature file", missing, len(slide_ids), allow_missing=allow_missing)
    return found


def check_missing(root: Path, kind: str, missing: Sequence[str], n_slides: int, *, allow_missing: bool) -> None:
    """Refuse (or, with ``allow_missing``, warn about) slides that have no ``kind`` under ``root``."""
    if not missing:
        return
    msg = f"no {kind} for {len(missing)} of {n_slides} slides (e.g. {', '.join(missing[:3])})"
    if not allow_missing:
        raise DataError(at(root, msg + "; pass --allow-missing to drop them"))
    logger.warning("%s: %s; dropping them", root, msg)


class BagStore:
    """Reads bags (features, coords) from h5 files, keeping up to ``max_bytes`` in memory (LRU)."""

    def __init__(self, files: Mapping[str, Path], *, max_bytes: int = 4 * 2**30) -> None:
        self.files = dict(files)
        self.max_bytes = max_bytes
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._bytes = 0
        self.attrs: dict[str, dict[str, Any]] = {}

    def get(self, slide_id: str) -> tuple[np.ndarray, np.ndarray]:
        """``(features (N, D) float32, coords (N, 2))`` of one slide."""
        from hagekit.io.h5 import read_features

        if slide_id in self._cache:
            self._cache.move_to_end(slide_id)
            return self._cache[slide_id]
        ff = read_features(self.files[slide_id])
        if ff.n == 0:
            raise DataError(at(self.files[slide_id], "bag has no tiles"))
        self.attrs[slide_id] = {**ff.attrs, **{f"coords.{k}": v for k, v in ff.coords_attrs.items()}}
        item = (ff.features, np.asarray(ff.coords))
        size = item[0].nbytes + item[1].nbytes
        if size <= self.max_bytes:
            self._cache[slide_id] = item
            self._bytes += size
            while self._bytes > self.max_bytes and self._cache:
                _, old = self._cache.popitem(last=False)
                self._bytes -= old[0].nbytes + old[1].nbytes
        return item

    def release(self) -> None:
        """Drop the in-memory bags (attributes and file paths stay)."""
        self._cache.clear()
        self._bytes = 0

    def check(self) -> int:
        """Verify every file opens, dims agree and encoders match; return the feature dim."""
        import h5py

        from hagekit.io.h5 import check_same_encoder, read_feature_attrs

        dims: dict[int, str] = {}
        attrs: dict[str, dict[str, Any]] = {}
        for sid, path in self.files.items():
            attrs[str(path)] = read_feature_attrs(path)
            with h5py.File(path, "r") as h5:
                if "features" not in h5 or "coords" not in h5:
                    raise DataError(at(path, f"needs 'features' and 'coords' datasets (found: {', '.join(h5.keys())})"))
                shape = h5["features"].shape
                if len(shape) < 2 or shape[-2] == 0:
                    raise DataError(at(path, f"no tiles in this bag (features shape {shape}); drop the slide from the labels"))
                dims.setdefault(int(shape[-1]), sid)
        if len(dims) > 1:
            (d1, s1), (d2, s2) = list(dims.items())[:2]
            raise ProvenanceError(f"{s1} has {d1}-d features but {s2} has {d2}-d: one encoder per feature folder")
        if attrs:
            check_same_encoder(attrs)
        return next(iter(dims))



#: Storage types of a packed bag file (``--pack``): exact float32, or float16 at half the bytes.
PACK_DTYPES = {"fp32": np.float32, "fp16": np.float16}


class PackedBags:
    """All bags of a feature folder in one memory-mapped file: rows (sum N, D) plus offsets.

    ``<stem>.bin`` holds the features, ``<stem>.coords.bin`` the coords (int64 or float64),
    ``<stem>.json`` the slide ids, offsets, dtype and each source file's size and mtime (a
    changed source means a repack). Reading a bag is a slice of the map: no per-epoch h5
    parsing, no LRU to thrash; the OS page cache keeps what fits in memory.
    """

    def __init__(self, index_path: Path) -> None:
        from hagekit.io.jsonfile import read_json_object

        self.index_path = Path(index_path)
        idx = read_json_object(self.index_path, what="a packed-bag index")
        try:
            self.ids: list[str] = list(idx["ids"])
            self.offsets = np.asarray(idx["offsets"], dtype=np.int64)
            self.dim = int(idx["dim"])
            self.dtype = str(idx["dtype"])
            self.files = {sid: Path(p) for sid, p in idx["files"].items()}
            self.attrs: dict[str, dict[str, Any]] = dict(idx["attrs"])
            n = int(self.offsets[-1])
            stem = self.index_path.with_suffix("")
            self._rows = np.memmap(stem.with_suffix(".bin"), dtype=PACK_DTYPES[self.dtype], mode="r", shape=(n, self.dim))
            self._coords = np.memmap(stem.with_suffix(".coords.bin"), dtype=np.dtype(idx["coords_dtype"]), mode="r",
                                     shape=(n, 2))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            # a value of the wrong type, a missing key, or a .bin shorter than the index says
            raise DataError(at(self.index_path, f"damaged packed-bag index or data ({type(exc).__name__}: {exc}); "
                               "delete it to repack")) from None
        self._slot = {sid: i for i, sid in enumerate(self.ids)}

    @property
    def nbytes(self) -> int:
        return int(self._rows.nbytes)

    def get(self, slide_id: str) -> tuple[np.ndarray, np.ndarray]:
        """``(features (N, D) float32, coords (N, 2))`` of one slide, copied out of the map."""
        i = self._slot[slide_id]
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return np.array(self._rows[a:b], dtype=np.float32), np.array(self._coords[a:b])

    def check(self) -> int:
        """The feature dim (files were checked when packed)."""
        return self.dim

    def release(self) -> None:
        """Nothing to drop: the map costs no private memory."""


def _sources(files: Mapping[str, Path]) -> dict[str, list[int]]:
    out = {}
    for sid, p in files.items():
        st = Path(p).stat()
        out[sid] = [int(st.st_size), int(st.st_mtime_ns)]
    return out


def _jsonable_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for k, v in attrs.items():
        v = np.asarray(v).tolist() if isinstance(v, (np.ndarray, np.generic)) else v
        clean[k] = v if isinstance(v, (str, int, float, bool, list)) or v is None else str(v)
    return clean


def pack_bags(files: Mapping[str, Path], folder: Path, *, dtype: str = "fp32", progress: Any = None) -> PackedBags:
    """Pack ``files`` (slide id -> feature h5) into ``folder`` once; reuse an up-to-date pack.

    The pack is named by the slide set and dtype; every source's size and mtime are recorded,
    so a re-extracted slide triggers a repack. Written atomically (the index goes last).
    """
    import hashlib
    import json

    import h5py

    from hagekit.io.atomic import atomic_path, write_text
    from hagekit.io.jsonfile import read_json_object
    from hagekit.progress import reporter_or_null

    if dtype not in PACK_DTYPES:
        raise ConfigError(f"--pack: unknown {dtype!r} (valid: {', '.join(PACK_DTYPES)}, none)")
    ids = sorted(files)
    key = hashlib.sha1("\n".join(f"{s}={Path(files[s]).resolve()}" for s in ids).encode()).hexdigest()[:10]
    index = Path(folder) / f"bags-{dtype}-{key}.json"
    sources = _sources(files)
    if index.is_file():
        try:
            if read_json_object(index, what="a packed-bag index").get("sources") == sources:
                logger.info("%s: reusing the packed bags", index)
                return PackedBags(index)
            logger.info("%s: sources changed; repacking", index)
        except (OSError, DataError) as exc:  # a killed packer or a damaged pack: pack again
            logger.warning("%s; repacking", exc)
    dim = BagStore(files).check()
    counts, coords_dtype = [], np.dtype(np.int64)
    for sid in ids:
        with h5py.File(files[sid], "r") as h5:
            shape = h5["features"].shape
            counts.append(int(shape[-2]))
            if h5["coords"].dtype.kind == "f":
                coords_dtype = np.dtype(np.float64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    stem = index.with_suffix("")
    store = BagStore(files, max_bytes=0)
    task = reporter_or_null(progress).task(f"pack {len(ids)} bags ({dtype})", total=len(ids))
    try:
        with atomic_path(stem.with_suffix(".bin")) as tmp_rows, atomic_path(stem.with_suffix(".coords.bin")) as tmp_xy:
            mm = np.memmap(tmp_rows, dtype=PACK_DTYPES[dtype], mode="w+", shape=(max(1, int(offsets[-1])), dim))
            xy = np.memmap(tmp_xy, dtype=coords_dtype, mode="w+", shape=(max(1, int(offsets[-1])), 2))
            for i, sid in enumerate(ids):
                feats, coords = store.get(sid)
                mm[offsets[i] : offsets[i + 1]] = feats
                xy[offsets[i] : offsets[i + 1]] = coords
                task.advance(1)
            mm.flush()
            xy.flush()
            del mm, xy
    finally:
        task.close()
    write_text(index, json.dumps({
        "version": 1, "ids": ids, "offsets": offsets.tolist(), "dim": dim, "dtype": dtype,
        "coords_dtype": coords_dtype.str, "files": {s: str(files[s]) for s in ids},
        "attrs": {s: _jsonable_attrs(store.attrs.get(s, {})) for s in ids}, "sources": sources,
    }))
    return PackedBags(index)
