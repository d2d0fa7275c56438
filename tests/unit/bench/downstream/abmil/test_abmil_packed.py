"""Packed bags: one memory-mapped file gives the same bags as the h5 files, repacks on change."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from toys.abmil_bags import planted_bags

from hagekit.bench.downstream.abmil import (
    ABMILConfig,
    BagStore,
    PackedBags,
    cross_validate_abmil,
    pack_bags,
    read_slide_labels,
)
from hagekit.errors import ConfigError, DataError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def bags(tmp_path):
    feats = tmp_path / "feats"
    planted_bags(feats, n_bags=8)
    return feats, {p.stem: p for p in sorted(feats.glob("*.h5"))}


def test_packed_equals_h5_and_repacks_when_a_source_changes(bags, tmp_path):
    feats, files = bags
    store = BagStore(files)
    packed = pack_bags(files, tmp_path / "pack", dtype="fp32")
    assert isinstance(packed, PackedBags) and packed.check() == store.check() == 16
    for sid in files:
        (f1, c1), (f2, c2) = store.get(sid), packed.get(sid)
        np.testing.assert_array_equal(f1, f2)
        np.testing.assert_array_equal(c1, c2)
        assert f2.flags.writeable and f2.dtype == np.float32
    assert packed.attrs["bag00"]["encoder"] == "planted"
    index = packed.index_path
    mtime = index.stat().st_mtime_ns
    assert pack_bags(files, tmp_path / "pack").index_path == index and index.stat().st_mtime_ns == mtime  # reused
    half = pack_bags(files, tmp_path / "pack", dtype="fp16")
    assert half.nbytes * 2 == packed.nbytes
    np.testing.assert_allclose(half.get("bag03")[0], store.get("bag03")[0], rtol=1e-3, atol=1e-3)
    # a re-extracted slide: the pack is rebuilt
    from hagekit.io.h5 import write_features

    new = np.ones((4, 16), np.float32)
    write_features(files["bag01"], new, np.zeros((4, 2), int), attrs={"encoder": "planted", "patch_size_px": 256})
    os.utime(files["bag01"], ns=(mtime + 10**9, mtime + 10**9))
    again = pack_bags(files, tmp_path / "pack")
    np.testing.assert_array_equal(again.get("bag01")[0], new)
    assert not [p for p in (tmp_path / "pack").iterdir() if ".tmp-" in p.name]
    with pytest.raises(ConfigError, match="--pack"):
        pack_bags(files, tmp_path / "pack", dtype="int8")


def test_packed_training_matches_h5_training(bags, tmp_path):
    feats, files = bags
    labels = read_slide_labels(feats / "labels.csv")
    cfg = ABMILConfig(folds=2, max_epochs=2, min_epochs=1, patience=1, device="cpu")
    a, _ = cross_validate_abmil(labels, BagStore(files), config=cfg)
    b, _ = cross_validate_abmil(labels, pack_bags(files, tmp_path / "p"), config=cfg)
    assert a.folds == b.folds


@pytest.mark.parametrize("damage", ["list", "truncated", "wrong-types", "short-bin"])
def test_a_damaged_pack_is_named_in_one_line_and_repacked(bags, tmp_path, damage):
    feats, files = bags
    index = pack_bags(files, tmp_path / "pack").index_path
    good = json.loads(index.read_text(encoding="utf-8"))
    if damage == "short-bin":  # a pack whose rows were cut short (disk full, copied half)
        rows = index.with_suffix(".bin")
        rows.write_bytes(rows.read_bytes()[: rows.stat().st_size // 2])
    else:
        index.write_text({"list": "[]", "truncated": index.read_text(encoding="utf-8")[:40],
                          "wrong-types": json.dumps({**good, "ids": 3, "files": []})}[damage], encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(index.name)) as exc:
        PackedBags(index)
    assert "\n" not in str(exc.value)
    again = pack_bags(files, tmp_path / "pack")  # the damaged pack is rebuilt, not a traceback
    assert again.index_path == index
    np.testing.assert_array_equal(again.get("bag02")[0], BagStore(files).get("bag02")[0])
