"""Patch-classification datasets for the linear probe: PCAM, SkinCancer and class folders.

Every reader returns a :class:`PatchDataset`: labels, class names, optional group ids (the
slide or patient a patch came from, for grouped cross-validation) and a way to read images
in slices, so that 300k-patch datasets never sit whole in memory.

Layouts (as published):

- PCAM (Veeling et al. 2018, Zenodo 2546921): ``camelyonpatch_level_2_split_{train,valid,test}_x.h5``
  (dataset ``x``, uint8 (N, 96, 96, 3)) and ``..._y.h5`` (dataset ``y``, (N, 1, 1, 1)); optional
  ``..._meta.csv`` (index, ``coord_y, coord_x, tumor_patch, center_tumor_patch, wsi``) gives
  the source slide of each patch. Zenodo ships the h5 files gzipped: gunzip them first.
- SkinCancer (Kriegsmann et al. 2022, heiDATA doi:10.11588/DATA/7QCR8S, ``data.zip``):
  ``data/tiles/<class>/<class>_ws_<case>_<k>.jpg`` (16 classes, 129,364 tiles of ~395 px,
  386 cases) with ``data/tiles-v2.csv`` (``file`` relative to the folder holding ``data/``,
  ``class``, ``set`` Train/Validation/Test, ...). The case id is the number after ``_ws_``.
- ``folder``: one subfolder per class with png/jpg/tif images; groups from a regex on the
  file name or from a CSV ``file,group``.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hagekit.errors import ConfigError, DataError, at

__all__ = [
    "PatchDataset",
    "PCAM_SPLITS",
    "SKINCANCER_CLASSES",
    "read_pcam",
    "read_skincancer",
    "read_image_folder",
    "open_patch_dataset",
    "open_pcam",
    "open_skincancer",
    "open_image_folder",
]

logger = logging.getLogger(__name__)

PCAM_SPLITS = ("train", "valid", "test")
PCAM_PREFIX = "camelyonpatch_level_2_split_"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

#: The 16 classes of the SkinCancer dataset, as its folder / ``class`` names spell them.
SKINCANCER_CLASSES = (
    "nontumor_skin_chondraltissue_chondraltissue",
    "nontumor_skin_dermis_dermis",
    "nontumor_skin_elastosis_elastosis",
    "nontumor_skin_epidermis_epidermis",
    "nontumor_skin_hairfollicle_hairfollicle",
    "nontumor_skin_muscle_skeletal",
    "nontumor_skin_necrosis_necrosis",
    "nontumor_skin_nerves_nerves",
    "nontumor_skin_sebaceousglands_sebaceousglands",
    "nontumor_skin_subcutis_subcutis",
    "nontumor_skin_sweatglands_sweatglands",
    "nontumor_skin_vessel_vessel",
    "tumor_skin_epithelial_bcc",
    "tumor_skin_epithelial_sqcc",
    "tumor_skin_melanoma_melanoma",
    "tumor_skin_naevus_naevus",
)
SKINCANCER_CASE_RE = r"_ws_(\d+)_\d+\.[A-Za-z]+$"


@dataclass
class PatchDataset:
    """A labelled patch set: ``labels`` (N,) int, ``groups`` (N,) str or None, images on demand.

    Images come either from h5 ``x`` datasets (``h5_parts``: (path, n) per split, in order)
    or from image ``files``; :meth:`read` returns (B, H, W, 3) uint8 for h5 sources and a
    list of (H, W, 3) uint8 arrays for files (sizes may differ).
    """

    name: str
    root: Path
    labels: np.ndarray
    class_names: list[str]
    groups: np.ndarray | None = None
    files: list[Path] | None = None
    h5_parts: list[tuple[Path, int]] = field(default_factory=list)
    item_ids: list[str] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def fingerprint(self) -> str:
        """A stable id of the items (names, sizes, labels): the embedding cache key."""
        h = hashlib.sha256()
        h.update(self.name.encode())
        if self.files is not None:
            for f in self.files:
                rel = f.relative_to(self.root) if f.is_relative_to(self.root) else f
                h.update(f"{rel}|{f.stat().st_size}\n".encode())
        for path, n in self.h5_parts:
            h.update(f"{path.name}|{path.stat().st_size}|{n}\n".encode())
        h.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        return h.hexdigest()

    def read(self, indices: Sequence[int] | np.ndarray) -> np.ndarray | list[np.ndarray]:
        """Images at ``indices`` (any order): an array for h5 sources, a list for files."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise IndexError(f"indices out of range for {self.n} items")
        if self.files is not None:
            return [_read_image(self.files[i]) for i in idx]
        return self._read_h5(idx)

    def iter_batches(
        self, indices: Sequence[int] | np.ndarray, batch_size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray | list[np.ndarray]]]:
        """Yield ``(batch_indices, images)`` over ``indices`` in order, ``batch_size`` at a time."""
        idx = np.asarray(indices, dtype=np.int64)
        for start in range(0, idx.size, batch_size):
            chunk = idx[start : start + batch_size]
            yield chunk, self.read(chunk)

    def _read_h5(self, idx: np.ndarray) -> np.ndarray:
        import h5py

        out: np.ndarray | None = None
        offset = 0
        for path, n in self.h5_parts:
            sel = (idx >= offset) & (idx < offset + n)
            if sel.any():
                local = idx[sel] - offset
                order = np.argsort(local, kind="stable")
                sorted_local = local[order]
                uniq, inverse = np.unique(sorted_local, return_inverse=True)
                with h5py.File(path, "r") as h5:
                    ds = h5["x"]
                    if uniq.size and uniq[-1] - uniq[0] + 1 == uniq.size:
                        block = ds[int(uniq[0]) : int(uniq[-1]) + 1]  # contiguous: one slice
                    else:
                        block = ds[uniq]
                block = np.asarray(block, dtype=np.uint8)
                if out is None:
                    out = np.empty((idx.size, *block.shape[1:]), dtype=np.uint8)
                positions = np.flatnonzero(sel)[order]
                out[positions] = block[inverse]
            offset += n
        if out is None:
            return np.empty((0, 96, 96, 3), dtype=np.uint8)
        return out


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"), dtype=np.uint8)  # writable (torch.from_numpy)
    except (OSError, ValueError) as exc:
        raise DataError(at(path, f"cannot read image ({exc})")) from None


# PCAM --------------------------------------------------------------------------------------


def _h5_len(path: Path, name: str) -> tuple[int, tuple[int, ...]]:
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            if name not in h5:
                raise DataError(at(path, f"no '{name}' dataset (found: {', '.join(h5.keys()) or 'none'})"))
            return int(h5[name].shape[0]), tuple(h5[name].shape)
    except OSError as exc:
        raise DataError(at(path, f"not a readable h5 file ({exc})")) from None


def read_pcam(root: Path | str, *, splits: Sequence[str] | None = None) -> PatchDataset:
    """Read PCAM's published h5 files under ``root`` (all splits found, or ``splits``).

    Groups are the source slides (``wsi`` of the ``_meta.csv`` files) when every chosen
    split has its meta file; otherwise None (plain stratified folds).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(at(root, "PCAM folder not found"))
    wanted = list(splits) if splits else list(PCAM_SPLITS)
    for s in wanted:
        if s not in PCAM_SPLITS:
            raise ConfigError(f"--splits: unknown PCAM split {s!r} (choose from {', '.join(PCAM_SPLITS)})")
    parts: list[tuple[Path, int]] = []
    labels: list[np.ndarray] = []
    groups: list[np.ndarray] = []
    have_meta = True
    found: list[str] = []
    for s in wanted:
        x_path = root / f"{PCAM_PREFIX}{s}_x.h5"
        y_path = root / f"{PCAM_PREFIX}{s}_y.h5"
        if not x_path.exists():
            gz = x_path.with_name(x_path.name + ".gz")
            if gz.exists():
                raise DataError(at(gz, "PCAM files are gzipped as published; run `gunzip` on the *.h5.gz files first"))
            if splits:
                raise DataError(at(x_path, "PCAM split file not found"))
            continue
        if not y_path.exists():
            raise DataError(at(y_path, f"labels for split {s!r} not found (expected beside {x_path.name})"))
        n_x, shape_x = _h5_len(x_path, "x")
        n_y, _ = _h5_len(y_path, "y")
        if len(shape_x) != 4 or shape_x[3] != 3:
            raise DataError(at(x_path, f"'x' must be (N, H, W, 3) uint8 images, got shape {shape_x}"))
        if n_x != n_y:
            raise DataError(at(y_path, f"{n_y} labels for {n_x} images in {x_path.name}"))
        import h5py

        with h5py.File(y_path, "r") as h5:
            y = np.asarray(h5["y"][:]).reshape(n_y, -1)
        if y.shape[1] != 1:
            raise DataError(at(y_path, f"'y' must be (N, 1, 1, 1), got {(n_y, *y.shape[1:])}"))
        y = y[:, 0].astype(np.int64)
        if not np.isin(y, (0, 1)).all():
            raise DataError(at(y_path, "PCAM labels must be 0 or 1"))
        parts.append((x_path, n_x))
        labels.append(y)
        found.append(s)
        meta_path = root / f"{PCAM_PREFIX}{s}_meta.csv"
        if meta_path.exists():
            groups.append(_read_pcam_meta(meta_path, n_x, s))
        else:
            have_meta = False
    if not parts:
        raise DataError(
            at(root, f"no PCAM files found (expected {PCAM_PREFIX}{{train,valid,test}}_x.h5 and _y.h5)")
        )
    group_arr = np.concatenate(groups) if have_meta and groups else None
    if group_arr is None:
        logger.info("PCAM: no *_meta.csv for every split; folds are stratified, not grouped by slide")
    ids = [f"{s}:{i}" for s, (_, n) in zip(found, parts, strict=True) for i in range(n)]
    return PatchDataset(
        name="pcam",
        root=root,
        labels=np.concatenate(labels),
        class_names=["normal", "tumor"],
        groups=group_arr,
        h5_parts=parts,
        item_ids=ids,
        meta={"splits": ",".join(found)},
    )


def _read_pcam_meta(path: Path, n: int, split: str) -> np.ndarray:
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataError(at(path, f"cannot read PCAM meta CSV ({exc})")) from None
    if "wsi" not in df.columns:
        raise DataError(at(path, f"no 'wsi' column (found: {', '.join(map(str, df.columns))})"))
    if len(df) != n:
        raise DataError(at(path, f"{len(df)} rows for {n} patches in split {split!r}"))
    return df["wsi"].astype(str).to_numpy(dtype=object)


# Image folders -----------------------------------------------------------------------------


def _list_images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def read_image_folder(
    root: Path | str,
    *,
    group_regex: str | None = None,
    groups_csv: Path | str | None = None,
    name: str = "folder",
) -> PatchDataset:
    """One subfolder per class of images (png/jpg/tif); optional group per image.

    ``group_regex`` is searched in the file name and its first capture group (or the whole
    match) is the group; ``groups_csv`` has columns ``file,group`` (file relative to ``root``
    or a bare file name).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(at(root, "image folder not found"))
    if group_regex and groups_csv:
        raise ConfigError("--group-regex and --groups-csv: give one of them, not both")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[Path] = []
    labels: list[int] = []
    names: list[str] = []
    for d in class_dirs:
        imgs = _list_images(d)
        if not imgs:
            continue
        names.append(d.name)
        files.extend(imgs)
        labels.extend([len(names) - 1] * len(imgs))
    if len(names) < 2:
        raise DataError(
            at(root, f"need one subfolder per class with images ({', '.join(IMAGE_SUFFIXES)}), found {len(names)} class(es)")
        )
    groups = None
    if group_regex:
        groups = _groups_from_regex(files, group_regex, "--group-regex")
    elif groups_csv:
        groups = _groups_from_csv(root, files, Path(groups_csv))
    return PatchDataset(
        name=name,
        root=root,
        labels=np.asarray(labels, dtype=np.int64),
        class_names=names,
        groups=groups,
        files=files,
        item_ids=[str(f.relative_to(root)) for f in files],
    )


def _groups_from_regex(files: Sequence[Path], pattern: str, option: str) -> np.ndarray:
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"{option}: invalid regular expression {pattern!r} ({exc})") from None
    out = []
    for f in files:
        m = rx.search(f.name)
        if m is None:
            raise DataError(at(f, f"file name does not match {option} {pattern!r}"))
        out.append(m.group(1) if m.groups() else m.group(0))
    return np.asarray(out, dtype=object)


def _groups_from_csv(root: Path, files: Sequence[Path], path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(at(path, "groups CSV not found"))
    table: dict[str, str] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        if "file" not in cols or "group" not in cols:
            raise DataError(at(path, f"needs columns file,group (found: {', '.join(cols)})"))
        for row in reader:
            table[row["file"].strip()] = row["group"].strip()
    out = []
    for f in files:
        rel = str(f.relative_to(root))
        key = rel if rel in table else f.name
        if key not in table:
            raise DataError(at(path, f"no group for {rel}"))
        out.append(table[key])
    return np.asarray(out, dtype=object)


# SkinCancer --------------------------------------------------------------------------------


def _skincancer_data_dir(root: Path) -> Path:
    """The folder holding ``tiles/`` (``root``, ``root/data`` or ``root/data/data``)."""
    for cand in (root, root / "data", root / "data" / "data"):
        if (cand / "tiles").is_dir():
            return cand
    raise DataError(
        at(root, "SkinCancer layout not found (expected data/tiles/<class>/*.jpg and data/tiles-v2.csv from heiDATA's data.zip)")
    )


def read_skincancer(root: Path | str, *, sets: Sequence[str] | None = None) -> PatchDataset:
    """Read the heiDATA SkinCancer tiles; groups are cases (patients) from the file names.

    With ``data/tiles-v2.csv`` the tile list, classes and ``set`` come from it (``sets``
    filters Train/Validation/Test); otherwise the class folders are walked.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(at(root, "SkinCancer folder not found"))
    data_dir = _skincancer_data_dir(root)
    csv_path = data_dir / "tiles-v2.csv"
    if csv_path.is_file():
        files, class_of, set_of, case_of = _read_skincancer_csv(csv_path, data_dir)
    else:
        if sets:
            raise ConfigError(f"--sets: needs {csv_path} (the published split file)")
        ds = read_image_folder(data_dir / "tiles", name="skincancer")
        files = list(ds.files or [])
        class_of = [ds.class_names[i] for i in ds.labels]
        set_of = [""] * len(files)
        case_of = [None] * len(files)
    if sets:
        keep = {s.lower() for s in sets}
        valid = {"train", "validation", "test"}
        bad = keep - valid
        if bad:
            raise ConfigError(f"--sets: unknown set(s) {', '.join(sorted(bad))} (choose from Train, Validation, Test)")
        sel = [i for i, s in enumerate(set_of) if s.lower() in keep]
        files = [files[i] for i in sel]
        class_of = [class_of[i] for i in sel]
        case_of = [case_of[i] for i in sel]
    if not files:
        raise DataError(at(data_dir, "no SkinCancer tiles selected"))
    rx = re.compile(SKINCANCER_CASE_RE)
    groups = []
    for f, case in zip(files, case_of, strict=True):
        if case is None or case == "":
            m = rx.search(f.name)
            if m is None:
                raise DataError(at(f, "cannot read the case id (expected <class>_ws_<case>_<k>.jpg)"))
            case = m.group(1)
        groups.append(str(case))
    names = sorted(set(class_of))
    unknown = [c for c in names if c not in SKINCANCER_CLASSES]
    if unknown:
        logger.warning("SkinCancer: classes not in the published 16: %s", ", ".join(unknown))
    index = {c: i for i, c in enumerate(names)}
    return PatchDataset(
        name="skincancer",
        root=data_dir,
        labels=np.asarray([index[c] for c in class_of], dtype=np.int64),
        class_names=names,
        groups=np.asarray(groups, dtype=object),
        files=files,
        item_ids=[str(f.relative_to(data_dir)) if f.is_relative_to(data_dir) else str(f) for f in files],
        meta={"sets": ",".join(sets) if sets else "all"},
    )


def _read_skincancer_csv(
    path: Path, data_dir: Path
) -> tuple[list[Path], list[str], list[str], list[str | None]]:
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise DataError(at(path, f"cannot read ({exc})")) from None
    for col in ("file", "class"):
        if col not in df.columns:
            raise DataError(at(path, f"no '{col}' column (found: {', '.join(map(str, df.columns))})"))
    case_col = next((c for c in ("case", "patient", "patient_id", "case_id") if c in df.columns), None)
    files: list[Path] = []
    missing = 0
    first_missing = ""
    for rel in df["file"]:
        p = _resolve_skin_file(data_dir, rel)
        if p is None:
            missing += 1
            first_missing = first_missing or rel
            continue
        files.append(p)
    if missing:
        raise DataError(at(path, f"{missing} listed tile(s) not found, e.g. {first_missing!r} (under {data_dir})"))
    set_of = df["set"].tolist() if "set" in df.columns else [""] * len(df)
    case_of: list[str | None] = df[case_col].tolist() if case_col else [None] * len(df)
    return files, df["class"].tolist(), set_of, case_of


def _resolve_skin_file(data_dir: Path, rel: str) -> Path | None:
    rel = rel.strip().replace("\\", "/")
    cands = [data_dir.parent / rel, data_dir / rel]
    if rel.startswith("data/"):
        cands.append(data_dir / rel[len("data/") :])
    for c in cands:
        if c.is_file():
            return c
    return None


# Dispatch ----------------------------------------------------------------------------------


def open_patch_dataset(
    dataset: str,
    root: Path | str,
    *,
    splits: Sequence[str] | None = None,
    group_regex: str | None = None,
    groups_csv: Path | str | None = None,
) -> PatchDataset:
    """Open a registered patch dataset (``pcam`` | ``skincancer`` | ``folder``, see
    :data:`hagekit.bench.downstream.datasets.PATCH_DATASETS`) at ``root``."""
    from hagekit.bench.downstream.datasets import PATCH_DATASETS

    opener = PATCH_DATASETS.get(dataset)
    return opener(root, splits=splits, group_regex=group_regex, groups_csv=groups_csv)


def open_pcam(root: Path | str, *, splits: Sequence[str] | None = None, group_regex: str | None = None,
              groups_csv: Path | str | None = None) -> PatchDataset:
    """The ``pcam`` entry: :func:`read_pcam` (``splits``: PCAM splits)."""
    if group_regex or groups_csv:
        raise ConfigError("--group-regex/--groups-csv: only for --dataset folder (PCAM groups come from *_meta.csv)")
    return read_pcam(root, splits=splits)


def open_skincancer(root: Path | str, *, splits: Sequence[str] | None = None, group_regex: str | None = None,
                    groups_csv: Path | str | None = None) -> PatchDataset:
    """The ``skincancer`` entry: :func:`read_skincancer` (``splits``: SkinCancer sets)."""
    if group_regex or groups_csv:
        raise ConfigError("--group-regex/--groups-csv: only for --dataset folder (SkinCancer cases come from the file names)")
    return read_skincancer(root, sets=splits)


def open_image_folder(root: Path | str, *, splits: Sequence[str] | None = None, group_regex: str | None = None,
                      groups_csv: Path | str | None = None) -> PatchDataset:
    """The ``folder`` entry: :func:`read_image_folder` (no splits)."""
    if splits:
        raise ConfigError("--splits: only for --dataset pcam or skincancer")
    return read_image_folder(root, group_regex=group_regex, groups_csv=groups_csv)
