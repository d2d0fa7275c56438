"""Whole-slide tiling on the real SVS fixtures: CMU (0.499 µm/px), TCGA (no mpp), broken.svs."""

from __future__ import annotations

import numpy as np
from clitext import flat
from typer.testing import CliRunner


def test_slides_folder_isolates_failures(wsi_dir, tmp_path):
    from hagekit.extract import ExtractionSpec, TilingSpec, extract_slides
    from hagekit.io.h5 import read_features

    out = tmp_path / "f"
    s = extract_slides(wsi_dir, spec=ExtractionSpec(out_dir=out, tiling=TilingSpec(preview=True)))
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
    from hagekit.extract import ExtractionSpec, TilingSpec, extract_slides
    from hagekit.io.h5 import read_features

    s = extract_slides(wsi_dir / "tcga-cr-7395-01a-01-ts1.svs", spec=ExtractionSpec(out_dir=tmp_path, tiling=TilingSpec(mpp=0.25)))
    assert s.ok and s.items[0].n_patches > 10
    f = read_features(tmp_path / "tcga-cr-7395-01a-01-ts1.h5")
    assert f.coords_attrs["patch_size_level0"] == 512 and f.coords_attrs["level0_magnification"] == 40.0
    assert f.attrs["mpp"] == 0.25 and f.attrs["target_mpp"] == 0.5
    _check_clam_reads_the_encoded_tissue(wsi_dir / "tcga-cr-7395-01a-01-ts1.svs", tmp_path / "tcga-cr-7395-01a-01-ts1.h5")


def _check_clam_reads_the_encoded_tissue(slide, h5_path):
    """CLAM (Whole_Slide_Bag_FP): read ``patch_size`` px at ``patch_level`` from each top-left
    coord. On the 40x slide that must be the 512 level-0 px we encoded (level 1, 256 px), not
    a quarter of it; TRIDENT's attrs say the same (256 px at 20x = 512 level-0 px)."""
    import h5py
    import openslide
    from PIL import Image

    with h5py.File(h5_path) as h5:
        coords, ca = h5["coords"][:], dict(h5["coords"].attrs)
        fa = dict(h5["features"].attrs)
    assert coords.dtype.kind == "i" and {"level0_width", "level0_height", "savetodir"} <= set(ca)
    assert {"name", "encoder", "savetodir"} <= set(fa)
    assert (ca["level0_width"], ca["level0_height"]) == (4443, 3567)
    assert ca["patch_size"] * ca["level0_magnification"] / ca["target_magnification"] == ca["patch_size_level0"]
    level, size = int(ca["patch_level"]), int(ca["patch_size"])
    with openslide.OpenSlide(str(slide)) as osr:
        ds = osr.level_downsamples[level]
        assert (level, size) == (1, 256) and abs(size * ds - ca["patch_size_level0"]) <= 0.01 * ca["patch_size_level0"]
        x, y = (int(v) for v in coords[len(coords) // 2])
        clam = np.asarray(osr.read_region((x, y), level, (size, size)).convert("RGB"), dtype=np.float32)
        full = osr.read_region((x, y), 0, (int(ca["patch_size_level0"]),) * 2).convert("RGB")
        ref = np.asarray(full.resize((size, size), Image.Resampling.BOX), dtype=np.float32)
    assert np.abs(clam - ref).mean() < 12.0  # same tissue (a quarter-size read would differ wholesale)
    quarter = np.asarray(Image.fromarray(ref.astype(np.uint8)).crop((0, 0, size // 2, size // 2)).resize((size, size)),
                         dtype=np.float32)
    assert np.abs(clam - ref).mean() < np.abs(quarter - ref).mean()


def test_clam_layout_of_a_single_level_40x_slide(wsi_dir, tmp_path):
    """No pyramid level at 20x: our file keeps TRIDENT's meaning, the CLAM layout CLAM's."""
    import h5py
    import torch

    from hagekit.extract import ExtractionSpec, TilingSpec, extract_slides
    from hagekit.io.clam import export_clam

    s = extract_slides(wsi_dir / "cmu-1-small-region.svs", spec=ExtractionSpec(out_dir=tmp_path / "f", tiling=TilingSpec(mpp=0.25, min_tissue=0.5)))
    assert s.ok
    export_clam(tmp_path / "f", tmp_path / "clam")
    with h5py.File(tmp_path / "clam" / "h5_files" / "cmu-1-small-region.h5") as h5:
        a = h5["coords"].attrs
        assert (a["patch_level"], a["patch_size"], a["custom_downsample"]) == (0, 512, 2)
        n = h5["features"].shape[0]
    assert torch.load(tmp_path / "clam" / "pt_files" / "cmu-1-small-region.pt", weights_only=True).shape[0] == n


def test_cli_reports_failures_with_exit_code(wsi_dir, tmp_path):
    from hagekit.cli.main import app

    r = CliRunner().invoke(app, ["extract", "--slides", str(wsi_dir), "--out", str(tmp_path / "f")])
    text = flat(r.output)
    assert r.exit_code == 1
    assert "1 done" in text and "2 failed" in text and "--mpp" in text
