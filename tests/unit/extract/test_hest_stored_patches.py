"""A HEST sample with ``patches/<id>.h5`` and no WSI prepares with its H&E and extracts from the
stored patches (not "counts only", not "skipped")."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from toys.raw_formats import make_hest
from typer.testing import CliRunner

from hagekit.cli.main import app
from hagekit.data.hest import prepare_hest

pytestmark = pytest.mark.usefixtures("one_torch_thread")
runner = CliRunner()


def _write_patches(raw: Path, sid: str, *, drop: int) -> list[str]:
    """HEST's patch file for every in-tissue spot but the ``drop``-th: img, barcode (N, 1), coords."""
    import anndata as ad

    a = ad.read_h5ad(raw / "st" / f"{sid}.h5ad")
    keep = [b for i, b in enumerate(a.obs_names) if a.obs["in_tissue"].iloc[i] == 1 and i != drop]
    rng = np.random.default_rng(1)
    (raw / "patches").mkdir(exist_ok=True)
    with h5py.File(raw / "patches" / f"{sid}.h5", "w") as h5:
        h5.create_dataset("img", data=rng.integers(40, 230, (len(keep), 224, 224, 3), dtype=np.uint8))
        h5.create_dataset("barcode", data=np.array(keep, dtype="S")[:, None])
        h5.create_dataset("coords", data=np.arange(2 * len(keep), dtype=np.int64).reshape(-1, 2))
    return keep


def test_patches_without_wsi_prepare_and_extract(tmp_path: Path) -> None:
    import torch

    from hagekit.encoders import create_encoder
    from hagekit.io.h5 import read_features

    raw = make_hest(tmp_path / "hest", ids=("S1",), with_wsi=False)
    keep = _write_patches(raw, "S1", drop=3)
    rep = prepare_hest(raw, tmp_path / "ws" / "data")
    s = rep.sections[0]
    assert s.has_image and s.n_spots == len(keep) and s.mpp == pytest.approx(0.5)
    res = runner.invoke(app, ["extract", "--dataset", "hest", "--workspace", str(tmp_path / "ws"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "skipped" not in res.output.lower() or "0 skipped" in res.output
    ff = read_features(tmp_path / "ws" / "features" / "hest" / "builtin" / "S1.h5")
    assert list(ff.barcodes) == keep
    enc = create_encoder("builtin")
    with h5py.File(raw / "patches" / "S1.h5") as h5:
        imgs = h5["img"][:]
    with torch.inference_mode():
        direct = enc.model(torch.stack([enc.transform(im) for im in imgs])).numpy()
    np.testing.assert_allclose(ff.features, direct, rtol=1e-4, atol=1e-4)
    assert json.loads(json.dumps(str(ff.attrs.get("source", "")))) == "stored patches"


def test_patches_without_img_are_one_line(tmp_path: Path) -> None:
    raw = make_hest(tmp_path / "hest", ids=("S1",), with_wsi=False)
    _write_patches(raw, "S1", drop=3)
    with h5py.File(raw / "patches" / "S1.h5", "a") as h5:
        del h5["img"]
    res = runner.invoke(app, ["data", "prepare", "hest", "--raw", str(raw), "--workspace", str(tmp_path / "ws")])
    assert res.exit_code == 2 and "S1.h5: stored patches need 'img'" in " ".join(res.output.split())
