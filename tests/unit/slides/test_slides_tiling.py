"""Slide readers, tissue mask, tile grid, CLAM/TRIDENT coords and the preview."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from PIL import Image

from hagekit.errors import ConfigError, DataError
from hagekit.slides.reader import ImageReader, open_slide
from hagekit.slides.tiling import (
    find_coords_file,
    plan_grid,
    read_coords,
    target_mpp_from,
    tile_tissue_fraction,
)
from hagekit.slides.tissue import tissue_mask


def _slide_png(path, w=1024, h=768):
    """White glass with a pink tissue disc (a small hole inside), plus a tiny speck."""
    img = np.full((h, w, 3), 242, np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    disc = (yy - 384) ** 2 + (xx - 400) ** 2 < 300**2
    img[disc] = (200, 110, 160)
    img[(yy - 384) ** 2 + (xx - 400) ** 2 < 8**2] = 242  # small hole (lumen) inside
    img[700:703, 950:953] = (120, 40, 120)  # a speck of dust
    Image.fromarray(img).save(path)
    return disc


def test_tissue_mask_fills_holes_and_drops_specks(tmp_path):
    disc = _slide_png(tmp_path / "s.png")
    thumb = np.asarray(Image.open(tmp_path / "s.png"))
    mask = tissue_mask(thumb)
    assert mask[384, 400]  # hole filled
    assert not mask[701, 951]  # speck removed
    assert (mask == disc).mean() > 0.99
    assert not tissue_mask(np.full((64, 64, 3), 245, np.uint8)).any()


def test_grid_geometry_and_tissue_filter(tmp_path):
    _slide_png(tmp_path / "s.png")
    reader = open_slide(tmp_path / "s.png", mpp=0.25)
    assert isinstance(reader, ImageReader)
    thumb, scale = reader.thumbnail(512)
    mask = tissue_mask(thumb)
    grid = plan_grid(reader, target_mpp=0.5, tile_size=64, mask=mask, mask_scale=scale, min_tissue=0.5)
    assert grid.patch_size_level0 == 128 and grid.read_level == 0 and grid.read_size == 128
    assert (grid.coords % 128 == 0).all()
    assert (grid.coords[:, 0] + 128 <= 1024).all() and (grid.coords[:, 1] + 128 <= 768).all()
    assert (grid.tissue_fraction >= 0.5).all()
    full = plan_grid(reader, target_mpp=0.5, tile_size=64, mask=None)
    assert len(full) == 8 * 6 and len(grid) < len(full)
    # deterministic row-major order
    assert np.array_equal(full.coords[:3], [[0, 0], [128, 0], [256, 0]])
    attrs = grid.coords_attrs("s", reader)
    assert attrs["patch_size_level0"] == 128 and attrs["level0_magnification"] == 40.0
    assert attrs["target_magnification"] == 20.0 and attrs["patch_level"] == 0


def test_overlap_and_bad_options(tmp_path):
    _slide_png(tmp_path / "s.png", w=256, h=256)
    reader = open_slide(tmp_path / "s.png", mpp=0.5)
    g = plan_grid(reader, tile_size=128, overlap=64)
    assert np.array_equal(np.unique(g.coords[:, 0]), [0, 64, 128])
    with pytest.raises(ConfigError, match="--overlap"):
        plan_grid(reader, tile_size=128, overlap=128)
    with pytest.raises(ConfigError, match="--min-tissue"):
        plan_grid(reader, min_tissue=2.0)
    with pytest.raises(ConfigError, match="--magnification"):
        target_mpp_from(None, 0)
    assert target_mpp_from(None, 40) == 0.25


def test_no_mpp_is_refused(tmp_path):
    _slide_png(tmp_path / "s.png", w=256, h=256)
    reader = open_slide(tmp_path / "s.png")
    assert reader.mpp is None
    with pytest.raises(DataError, match="no microns-per-pixel metadata; pass --mpp"):
        plan_grid(reader)


def test_tissue_fraction_integral():
    mask = np.zeros((10, 10), bool)
    mask[:5, :5] = True
    frac = tile_tissue_fraction(np.array([[0, 0], [50, 0], [0, 50], [25, 25]]), 50, mask, 0.1)
    np.testing.assert_allclose(frac, [1.0, 0.0, 0.0, 0.25])


def test_read_clam_and_trident_coords(tmp_path):
    _slide_png(tmp_path / "s.png", w=512, h=512)
    reader = open_slide(tmp_path / "s.png", mpp=0.25)
    coords = np.array([[0, 0], [256, 256]])
    clam = tmp_path / "clam"
    clam.mkdir()
    with h5py.File(clam / "s.h5", "w") as h5:
        ds = h5.create_dataset("coords", data=coords)
        ds.attrs["patch_size"] = 256
        ds.attrs["patch_level"] = 0
    g = read_coords(find_coords_file(clam, "s"), reader)
    assert g.patch_size_level0 == 256 and g.patch_size == 256 and np.array_equal(g.coords, coords)
    trident = tmp_path / "trident" / "patches"
    trident.mkdir(parents=True)
    with h5py.File(trident / "s_patches.h5", "w") as h5:
        ds = h5.create_dataset("coords", data=coords)
        ds.attrs.update({"patch_size": 256, "patch_size_level0": 512, "level0_magnification": 40, "target_magnification": 20})
    g = read_coords(find_coords_file(tmp_path / "trident", "s"), reader)
    assert g.patch_size_level0 == 512 and g.target_mpp == pytest.approx(0.5)
    with pytest.raises(DataError, match="no coords file for slide 'other'"):
        find_coords_file(clam, "other")
    with h5py.File(clam / "bad.h5", "w") as h5:
        h5.create_dataset("coords", data=coords)
    with pytest.raises(DataError, match="patch_size"):
        read_coords(clam / "bad.h5", reader)


def test_corrupt_and_missing_slides(tmp_path):
    bad = tmp_path / "broken.svs"
    bad.write_bytes(b"II*\x00" + b"\x00" * 500)
    with pytest.raises(DataError, match="broken.svs: truncated or unreadable slide file"):
        open_slide(bad)
    trunc = tmp_path / "t.jpg"
    buf = tmp_path / "full.jpg"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(buf)
    trunc.write_bytes(buf.read_bytes()[:200])
    with pytest.raises(DataError, match=r"t.jpg: truncated image"):
        open_slide(trunc)
    with pytest.raises(DataError, match="not found"):
        open_slide(tmp_path / "nope.svs")


def test_openslide_reader_regions_white_outside(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    img = np.zeros((256, 256, 3), np.uint8)
    tif = tmp_path / "s.tif"
    tifffile.imwrite(tif, img, tile=(128, 128), photometric="rgb")
    reader = open_slide(tif, mpp=0.5)
    region = reader.read_region(200, 200, 0, 100, 100)
    assert region.shape == (100, 100, 3)
    assert (region[:56, :56] == 0).all() and (region[60:, 60:] == 255).all()


def test_preview_png(tmp_path):
    from hagekit.slides.preview import write_preview

    _slide_png(tmp_path / "s.png", w=512, h=384)
    reader = open_slide(tmp_path / "s.png", mpp=0.5)
    thumb, scale = reader.thumbnail(256)
    mask = tissue_mask(thumb)
    grid = plan_grid(reader, tile_size=128, mask=mask, mask_scale=scale)
    out = write_preview(tmp_path / "p" / "s.png", thumb, mask, grid, scale)
    arr = np.asarray(Image.open(out))
    assert arr.shape == thumb.shape
    assert (arr[..., 2] > arr[..., 0] + 80).any()  # blue tile outlines
