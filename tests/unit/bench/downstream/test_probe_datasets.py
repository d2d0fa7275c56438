"""Patch-dataset readers (PCAM h5, class folders, SkinCancer) on fixtures in the published formats.

The images are real H&E crops of a HER2ST section when ``../shared/data`` is present (random
noise otherwise), written exactly as PCAM / heiDATA publish them.
"""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from toys.patches import he_crops, write_pcam

from hagekit.bench.downstream.patch_datasets import (
    PCAM_PREFIX,
    open_patch_dataset,
    read_image_folder,
    read_pcam,
    read_skincancer,
)
from hagekit.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    return he_crops(36)


def test_pcam_reads_splits_labels_groups_and_pixels(tmp_path, crops):
    y = np.arange(36) % 2
    write_pcam(tmp_path, "train", crops[:24], y[:24], [f"tumor_{i // 4:03d}" for i in range(24)])
    write_pcam(tmp_path, "valid", crops[24:], y[24:], [f"normal_{i // 4:03d}" for i in range(12)])
    ds = read_pcam(tmp_path)
    assert ds.n == 36 and ds.class_names == ["normal", "tumor"]
    assert ds.meta["splits"] == "train,valid"
    np.testing.assert_array_equal(ds.labels, y)
    assert ds.groups is not None and ds.groups[0] == "tumor_000" and ds.groups[30] == "normal_001"
    # any order, across split files, contiguous or not
    idx = np.array([30, 2, 3, 25, 0, 30])
    np.testing.assert_array_equal(ds.read(idx), crops[idx])
    np.testing.assert_array_equal(ds.read(np.arange(5, 9)), crops[5:9])
    batches = list(ds.iter_batches(np.arange(36), 10))
    assert [len(b[0]) for b in batches] == [10, 10, 10, 6]
    # one split only; fingerprint differs
    only = read_pcam(tmp_path, splits=["valid"])
    assert only.n == 12 and only.fingerprint() != ds.fingerprint()
    np.testing.assert_array_equal(only.read([0]), crops[24:25])


def test_pcam_without_meta_has_no_groups(tmp_path, crops):
    write_pcam(tmp_path, "test", crops[:8], np.arange(8) % 2)
    ds = open_patch_dataset("pcam", tmp_path)
    assert ds.groups is None and ds.n == 8


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda r: (r / f"{PCAM_PREFIX}train_y.h5").unlink(), "labels for split"),
        (lambda r: (r / f"{PCAM_PREFIX}train_x.h5").rename(r / f"{PCAM_PREFIX}train_x.h5.gz"), "gunzip"),
        (lambda r: _rewrite(r / f"{PCAM_PREFIX}train_y.h5", "y", np.zeros((3, 1, 1, 1))), "3 labels for 8 images"),
        (lambda r: _rewrite(r / f"{PCAM_PREFIX}train_x.h5", "x", np.zeros((8, 96, 96), np.uint8)), "(N, H, W, 3)"),
        (lambda r: _rewrite(r / f"{PCAM_PREFIX}train_x.h5", "img", np.zeros((8, 96, 96, 3), np.uint8)), "no 'x' dataset"),
        (lambda r: (r / f"{PCAM_PREFIX}train_meta.csv").write_text(",coord_y\n0,1\n"), "no 'wsi' column"),
    ],
)
def test_pcam_bad_inputs_fail_clearly(tmp_path, crops, break_it, message):
    write_pcam(tmp_path, "train", crops[:8], np.arange(8) % 2, [f"s{i}" for i in range(8)])
    break_it(tmp_path)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_pcam(tmp_path)


def _rewrite(path: Path, name: str, data: np.ndarray) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset(name, data=data)


def test_pcam_missing_folder_and_unknown_split(tmp_path):
    with pytest.raises(DataError, match="no PCAM files"):
        read_pcam(tmp_path)
    with pytest.raises(ConfigError, match="unknown PCAM split"):
        read_pcam(tmp_path, splits=["training"])
    with pytest.raises(ConfigError, match="unknown patch dataset"):
        open_patch_dataset("camelyon", tmp_path)


def write_class_folders(root: Path, crops: np.ndarray, classes=("stroma", "tumor"), per_slide: int = 3) -> None:
    """One folder per class; file names carry a slide id (``slideNN_k.ext``); png/jpg/tif mixed."""
    exts = (".png", ".tif", ".jpg")
    for i, img in enumerate(crops):
        c = classes[i % len(classes)]
        d = root / c
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"slide{i // (per_slide * len(classes)):02d}_{i}{exts[i % 3]}")


def test_folder_reader_classes_groups_and_images(tmp_path, crops):
    write_class_folders(tmp_path, crops[:24])
    (tmp_path / "notes").mkdir()  # a folder without images is not a class
    ds = read_image_folder(tmp_path, group_regex=r"^(slide\d+)_")
    assert ds.class_names == ["stroma", "tumor"] and ds.n == 24
    assert np.bincount(ds.labels).tolist() == [12, 12]
    assert set(ds.groups) == {f"slide{i:02d}" for i in range(4)}
    i_png = next(i for i, f in enumerate(ds.files) if f.suffix == ".png")
    src = int(ds.files[i_png].stem.split("_")[1])
    np.testing.assert_array_equal(ds.read([i_png])[0], crops[src])  # png is lossless
    assert ds.read([0, 1])[0].shape == (96, 96, 3)


def test_folder_groups_csv_and_errors(tmp_path, crops):
    write_class_folders(tmp_path, crops[:8])
    ds = read_image_folder(tmp_path)
    assert ds.groups is None
    gcsv = tmp_path / "groups.csv"
    gcsv.write_text("file,group\n" + "".join(f"{f.relative_to(tmp_path)},p{j % 3}\n" for j, f in enumerate(ds.files)))
    grouped = read_image_folder(tmp_path, groups_csv=gcsv)
    assert set(grouped.groups) == {"p0", "p1", "p2"}
    gcsv.write_text("file,group\nnot-there.png,p0\n")
    with pytest.raises(DataError, match="no group for"):
        read_image_folder(tmp_path, groups_csv=gcsv)
    with pytest.raises(ConfigError, match="invalid regular expression"):
        read_image_folder(tmp_path, group_regex="(")
    with pytest.raises(DataError, match="does not match --group-regex"):
        read_image_folder(tmp_path, group_regex=r"^patient\d+")
    with pytest.raises(ConfigError, match="only for --dataset folder"):
        open_patch_dataset("pcam", tmp_path, group_regex="x")


def test_folder_needs_two_classes(tmp_path, crops):
    write_class_folders(tmp_path, crops[:4], classes=("only",))
    with pytest.raises(DataError, match="found 1 class"):
        read_image_folder(tmp_path)


def write_skincancer(root: Path, crops: np.ndarray, *, with_csv: bool = True) -> list[str]:
    """heiDATA data.zip layout: data/tiles/<class>/<class>_ws_<case>_<k>.jpg + data/tiles-v2.csv."""
    classes = ("nontumor_skin_dermis_dermis", "tumor_skin_epithelial_bcc", "tumor_skin_melanoma_melanoma")
    rows = []
    for i, img in enumerate(crops):
        c = classes[i % 3]
        case = 10 + i // 6
        rel = f"data/tiles/{c}/{c}_ws_{case}_{i}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / rel, quality=90)
        rows.append((rel, c, "Train" if case < 12 else "Test", "tumor" if c.startswith("tumor") else "nontumor"))
    if with_csv:
        with open(root / "data" / "tiles-v2.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["", "file", "class", "malignicy", "set"])
            for j, (rel, c, s, m) in enumerate(rows):
                w.writerow([j, rel, c, m, s])
    return [r[0] for r in rows]


def test_skincancer_csv_cases_and_sets(tmp_path, crops):
    write_skincancer(tmp_path, crops[:18])
    ds = read_skincancer(tmp_path)
    assert ds.n == 18 and len(ds.class_names) == 3
    assert sorted(set(ds.groups)) == ["10", "11", "12"]
    test_only = read_skincancer(tmp_path / "data", sets=["Test"])
    assert test_only.n == 6 and set(test_only.groups) == {"12"}
    assert test_only.read([0])[0].shape == (96, 96, 3)
    with pytest.raises(ConfigError, match="unknown set"):
        read_skincancer(tmp_path, sets=["Holdout"])


def test_skincancer_without_csv_and_missing_tiles(tmp_path, crops):
    rels = write_skincancer(tmp_path, crops[:9], with_csv=False)
    ds = read_skincancer(tmp_path)
    assert ds.n == 9 and set(ds.groups) == {"10", "11"}
    write_skincancer(tmp_path, crops[:9])
    (tmp_path / rels[4]).unlink()
    with pytest.raises(DataError, match="1 listed tile"):
        read_skincancer(tmp_path)
    with pytest.raises(DataError, match="SkinCancer layout not found"):
        read_skincancer(tmp_path / "data" / "tiles")
