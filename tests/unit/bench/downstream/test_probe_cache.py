"""The embedding cache of the linear probe, on a PCAM fixture (real H&E crops, published h5 layout)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from toys.patches import he_crops, write_pcam

from hagekit.bench.downstream import linear_probe as lp
from hagekit.bench.downstream.patch_datasets import read_pcam

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pcam(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pcam")
    crops = he_crops(40, seed=3)
    y = np.arange(40) % 2
    crops[y == 1] = crops[y == 1][..., ::-1]  # "tumour" patches: stains swapped, separable
    write_pcam(root, "train", crops[:30], y[:30], [f"tumor_{i // 5:03d}" for i in range(30)])
    write_pcam(root, "valid", crops[30:], y[30:], [f"normal_{i // 5:03d}" for i in range(10)])
    return root


@pytest.fixture(scope="module")
def builtin():
    from hagekit.encoders import create_encoder

    return create_encoder("builtin")


def test_cache_matches_direct_encoding_and_fills_incrementally(tmp_path, pcam, builtin, monkeypatch):
    from hagekit.extract import encode_images

    ds = read_pcam(pcam)
    direct = encode_images(builtin, ds.read(np.arange(ds.n)))
    calls: list[int] = []
    real = lp._encode_rows

    def counting(dataset, bundle, rows, **kw):
        calls.append(len(rows))
        return real(dataset, bundle, rows, **kw)

    monkeypatch.setattr(lp, "_encode_rows", counting)
    first = lp.embed_patch_dataset(ds, builtin, np.arange(0, 40, 2), cache_dir=tmp_path,
                                   settings=lp.EmbedSettings(chunk=8))
    np.testing.assert_allclose(first, direct[::2], rtol=1e-5, atol=1e-6)
    assert sum(calls) == 20
    # a wider request encodes only what is missing; repeated/unsorted indices come back in order
    idx = np.array([39, 1, 0, 1, 38])
    again = lp.embed_patch_dataset(ds, builtin, idx, cache_dir=tmp_path, settings=lp.EmbedSettings(chunk=8))
    np.testing.assert_allclose(again, direct[idx], rtol=1e-5, atol=1e-6)
    assert sum(calls) == 20 + 2
    path = lp.embedding_cache_path(tmp_path, ds, builtin)
    with h5py.File(path, "r") as h5:
        assert int(h5["done"][:].sum()) == 22 and h5.attrs["encoder"] == "builtin"


def test_broken_or_mismatched_cache_is_rebuilt(tmp_path, pcam, builtin):
    ds = read_pcam(pcam, splits=["valid"])
    path = lp.embedding_cache_path(tmp_path, ds, builtin)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an h5 file")  # an interrupted write
    x = lp.embed_patch_dataset(ds, builtin, cache_dir=tmp_path)
    assert x.shape == (10, builtin.dim)
    with h5py.File(path, "a") as h5:
        h5.attrs["dataset_fingerprint"] = "something else"
    y = lp.embed_patch_dataset(ds, builtin, cache_dir=tmp_path)
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_run_linear_probe_on_pcam_groups_by_slide(tmp_path, pcam):
    ds = read_pcam(pcam)
    result = lp.run_linear_probe(
        ds, ["builtin"], out_dir=tmp_path / "out",
        config=lp.ProbeConfig(folds=4, batch_size=8, lr=1e-2, seed=0),
        options=lp.ProbeRunOptions(cache_dir=tmp_path / "cache", limit=32),
    )
    s = result.scores[0]
    assert s.mean["auc"] > 0.8  # 8 test patches per fold; some crops are mostly background
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["grouped"] and config["n_items"] == 32 and config["class_counts"] == [16, 16]
    assert config["n_groups"] == 8
