"""Whole-slide tiling on the real SVS fixtures: CMU (0.499 µm/px), TCGA (no mpp), broken.svs."""

from __future__ import annotations

import numpy as np
from clitext import flat
from typer.testing import CliRunner


def test_slides_folder_isolates_failures(wsi_dir, tmp_path):
    from hagekit.extract import extract_slides
    from hagekit.io.h5 import read_features

    out = tmp_path / "f"
    s = extract_slides(wsi_dir, out_dir=out, preview=True)
    status = {i.name: i for i in s.items}
    assert status["broken"].status == "failed" and "broken.svs" in status["broken"].reason
    tcga = status["tcga-cr-7395-01a-01-ts1"]
    assert tcga.status == "failed" and "no microns-per-pixel metadata; pass --mpp" in tcga.reason
    cmu = status["cmu-1-small-region"]
    assert cmu.status == "done" and cmu.n_patches > 10
    f = read_features(out / "cmu-1-small-region.h5")
    assert f.features.shape == (cmu.n_patches, 203) and np.isfinite(f.features).all()
    ca = f.coords_attrs
    assert ca["patch_size"] == 256 and ca["patch_size_level0"] == 256  # 0.499 µm/px read as 20x
    assert ca["level0_magnification"] == 20.0 and ca["target_magnification"] == 20.0
    assert (f.coords[:, 0] + 256 <= 2220).all() and (f.coords[:, 1] + 256 <= 2967).all()
    assert (out / "previews" / "cmu-1-small-region.png").is_file()
    assert not (out / "tcga-cr-7395-01a-01-ts1.h5").exists() and not (out / "broken.h5").exists()


def test_tcga_with_mpp_reads_level_1(wsi_dir, tmp_path):
    from hagekit.extract import extract_slides
    from hagekit.io.h5 import read_features

    s = extract_slides(wsi_dir / "tcga-cr-7395-01a-01-ts1.svs", out_dir=tmp_path, mpp=0.25)
    assert s.ok and s.items[0].n_patches > 10
    f = read_features(tmp_path / "tcga-cr-7395-01a-01-ts1.h5")
    assert f.coords_attrs["patch_size_level0"] == 512 and f.coords_attrs["level0_magnification"] == 40.0
    assert f.attrs["mpp"] == 0.25 and f.attrs["target_mpp"] == 0.5


def test_cli_reports_failures_with_exit_code(wsi_dir, tmp_path):
    from hagekit.cli.main import app

    r = CliRunner().invoke(app, ["extract", "--slides", str(wsi_dir), "--out", str(tmp_path / "f")])
    text = flat(r.output)
    assert r.exit_code == 1
    assert "1 done" in text and "2 failed" in text and "--mpp" in text
