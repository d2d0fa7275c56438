"""Whole-slide extraction on small synthetic slides: tiles, coords reuse, failures, CLI."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from hagekit.errors import ConfigError, DataError
from hagekit.extract import EncoderSpec, ExtractionSpec, TilingSpec, extract_slides
from hagekit.io.h5 import read_features

runner = CliRunner()
NO_WORKERS = EncoderSpec(num_workers=0)


def _slide(path, w=384, h=320, seed=0):
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 243, np.uint8)
    img[64 : h - 64, 64 : w - 64] = rng.integers(90, 210, (h - 128, w - 128, 3))
    img[64 : h - 64, 64 : w - 64, 1] //= 2  # pinkish: saturated
    Image.fromarray(img).save(path)


@pytest.fixture()
def slides(tmp_path):
    d = tmp_path / "slides"
    d.mkdir()
    _slide(d / "s1.png", seed=1)
    _slide(d / "s2.png", seed=2, w=256, h=256)
    (d / "broken.svs").write_bytes(b"II*\x00" + b"\x01" * 1000)
    return d


def test_tiles_coords_attrs_and_failure_isolation(slides, tmp_path):
    out = tmp_path / "f"
    s = extract_slides(slides, encoder=NO_WORKERS, spec=ExtractionSpec(out_dir=out, tiling=TilingSpec(mpp=0.5, tile_size=64, preview=True)))
    status = {i.name: i for i in s.items}
    assert [i.name for i in s.items] == ["broken", "s1", "s2"]
    assert status["broken"].status == "failed" and "truncated or unreadable slide file" in status["broken"].reason
    assert status["s1"].status == "done" and status["s2"].status == "done" and not s.ok
    f = read_features(out / "s1.h5")
    assert f.features.shape[1] == 203 and f.features.shape[0] == status["s1"].n_patches > 0
    ca = f.coords_attrs
    assert ca["patch_size"] == 64 and ca["patch_size_level0"] == 64 and ca["patch_level"] == 0
    assert ca["level0_magnification"] == 20.0 and ca["target_magnification"] == 20.0 and ca["name"] == "s1"
    assert (f.coords >= 64 - 64).all() and f.attrs["encoder"] == "builtin"
    assert (out / "previews" / "s1.png").is_file()
    # tiles cover tissue only: the 64 px border of glass is excluded
    assert f.coords[:, 0].min() >= 0 and f.coords[:, 0].max() <= 384 - 64 - 64 + 32


def test_no_mpp_refused_then_accepted(slides, tmp_path):
    s = extract_slides(slides / "s2.png", encoder=NO_WORKERS, spec=ExtractionSpec(out_dir=tmp_path / "f"))
    assert s.items[0].status == "failed" and "pass --mpp" in s.items[0].reason
    s = extract_slides([slides / "s2.png"], encoder=NO_WORKERS, spec=ExtractionSpec(out_dir=tmp_path / "f", tiling=TilingSpec(mpp=0.25)))
    assert s.ok
    f = read_features(tmp_path / "f" / "s2.h5")
    assert f.coords_attrs["patch_size_level0"] == 512 and f.coords_attrs["level0_magnification"] == 40.0
    assert len(f.coords) == 0 and f.features.shape == (0, 203)  # a 256 px slide holds no 512 px tile


def test_coords_reuse(slides, tmp_path):
    a = tmp_path / "a"
    extract_slides(slides / "s1.png", encoder=NO_WORKERS, spec=ExtractionSpec(out_dir=a, tiling=TilingSpec(mpp=0.5, tile_size=64)))
    b = tmp_path / "b"
    s = extract_slides(slides / "s1.png", encoder=NO_WORKERS, spec=ExtractionSpec(out_dir=b, tiling=TilingSpec(mpp=0.5, coords_dir=a)))
    assert s.ok
    fa, fb = read_features(a / "s1.h5"), read_features(b / "s1.h5")
    np.testing.assert_array_equal(fa.coords, fb.coords)
    np.testing.assert_allclose(fa.features, fb.features, rtol=1e-4, atol=1e-5)


def test_resume_and_bad_inputs(slides, tmp_path):
    out = tmp_path / "f"
    extract_slides(slides / "s1.png", encoder=NO_WORKERS, spec=ExtractionSpec(out_dir=out, tiling=TilingSpec(mpp=0.5)))
    again = extract_slides(slides / "s1.png", encoder=NO_WORKERS, spec=ExtractionSpec(out_dir=out, tiling=TilingSpec(mpp=0.5)))
    assert again.items[0].status == "skipped"
    with pytest.raises(DataError, match="not found"):
        extract_slides(tmp_path / "missing.svs", spec=ExtractionSpec(out_dir=out))
    with pytest.raises(ConfigError, match="--batch-size"):
        extract_slides(slides / "s1.png", encoder=EncoderSpec(batch_size=0), spec=ExtractionSpec(out_dir=out))
    with pytest.raises(DataError, match="--coords folder not found"):
        extract_slides(slides / "s1.png", spec=ExtractionSpec(out_dir=out, tiling=TilingSpec(coords_dir=tmp_path / "nope")))


def test_cli_slides_exit_codes(slides, tmp_path):
    from hagekit.cli.main import app

    out = tmp_path / "f"
    r = runner.invoke(app, ["extract", "--slides", str(slides / "s1.png"), "--mpp", "0.5", "--out", str(out), "--num-workers", "0"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["extract", "--slides", str(slides), "--mpp", "0.5", "--out", str(out), "--num-workers", "0"])
    assert r.exit_code == 1 and "broken" in r.output and "1 failed" in r.output
    r = runner.invoke(app, ["extract", "--slides", str(slides), "--dump-patches", "--out", str(out)])
    assert r.exit_code == 2 and "--dump-patches: only apply with --dataset" in r.output
