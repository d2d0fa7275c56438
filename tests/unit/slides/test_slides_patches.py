"""Spot patch geometry: a known pattern lands at the patch centre, mpp scaling, white edges."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hagekit.errors import DataError
from hagekit.slides.patches import (
    SpotPatcher,
    check_spots_inside,
    choose_reduce,
    crop_patch,
    patch_size_px,
)
from hagekit.slides.reader import ImageReader, open_slide


def _square_image(w=400, h=300, x0=200, y0=120, side=10, value=0):
    img = np.full((h, w, 3), 255, np.uint8)
    img[y0 : y0 + side, x0 : x0 + side] = value
    return img


def test_pattern_lands_at_patch_centre():
    img = _square_image()
    # the square covers pixels [200, 210) x [120, 130): its centre is (205, 125)
    patch = crop_patch(img, 205.0, 125.0, 40.0, 40)
    dark = np.argwhere(patch[:, :, 0] < 128)
    assert dark.min(0).tolist() == [15, 15] and dark.max(0).tolist() == [24, 24]
    assert (patch[:15] == 255).all() and (patch[25:] == 255).all()


@pytest.mark.parametrize("mpp,side_px", [(0.5, 40), (1.0, 20), (2.0, 10)])
def test_mpp_scaling_keeps_physical_size(mpp, side_px):
    """A 10 µm square in a 40 µm patch fills a quarter of the side, whatever the mpp."""
    size = patch_size_px(40.0, mpp)
    img = _square_image(x0=200, y0=120, side=side_px // 2)
    cx, cy = 200 + side_px / 4, 120 + side_px / 4
    patch = crop_patch(img, cx, cy, size, 64)
    dark = patch[:, :, 0] < 128
    assert abs(dark.sum() - 16 * 16) <= 2 * 16 + 4  # 16 x 16 px of 64 (one boundary row of blur)
    ys, xs = np.nonzero(dark)
    assert abs(ys.mean() - 31.5) < 0.6 and abs(xs.mean() - 31.5) < 0.6


def test_edge_patches_are_padded_white():
    img = np.zeros((100, 100, 3), np.uint8)  # black image
    patch = crop_patch(img, 2.0, 3.0, 40.0, 40)
    assert (patch[:, :18] == 255).all()  # left of x=0 (patch column 18 == image x 0)
    assert (patch[:17, :] == 255).all()  # above y=0
    assert (patch[17:, 18:] == 0).all()


def test_spots_outside_image_are_counted():
    c = np.array([[10, 10], [50, 50], [-1, 5], [99, 200], [np.nan, 3]], float)
    with pytest.raises(DataError, match=r"3 of 5 spot centres lie outside the 100 x 100 px image, e.g. s2 at \(-1, 5\)"):
        check_spots_inside(c, 100, 100, source="img.jpg", barcodes=[f"s{i}" for i in range(5)])
    check_spots_inside(c[:2], 100, 100, source="img.jpg")


def test_patch_size_validation():
    with pytest.raises(DataError, match="mpp"):
        patch_size_px(112, float("nan"))
    with pytest.raises(DataError, match="--patch-um"):
        patch_size_px(-1, 0.5)
    assert patch_size_px(112, 0.5) == 224


def test_choose_reduce():
    assert choose_reduce(145, 224) == 1
    assert choose_reduce(448, 224) == 2
    assert choose_reduce(1000, 128) == 4
    assert choose_reduce(5000, 128) == 8


def test_spot_patcher_jpeg_reduced_decode_matches_full(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (60, 80, 3)).astype(np.uint8)
    img = np.asarray(Image.fromarray(base).resize((800, 600), Image.Resampling.BICUBIC))
    path = tmp_path / "section.jpg"
    Image.fromarray(img).save(path, quality=95)
    centres = np.array([[400.0, 300.0], [100.0, 120.0], [790.0, 590.0]])
    full = SpotPatcher(path, centres, mpp=0.5, patch_um=100.0, out_size=100,
                       reader=ImageReader(path, mpp=0.5, reduce=1))
    reduced = SpotPatcher(path, centres, mpp=0.5, patch_um=100.0, out_size=100)
    assert reduced.reduce == 2 and reduced._reader.array.shape[:2] == (300, 400)
    for i in range(3):
        a, b = full.patch(i).astype(float), reduced.patch(i).astype(float)
        assert a.shape == b.shape == (100, 100, 3)
        assert np.abs(a - b).mean() < 12
    assert (reduced.patch(2)[60:, 60:] == 255).all()  # beyond the bottom-right corner


def test_spot_patcher_reads_pyramidal_tiff_like_plain_image(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    rng = np.random.default_rng(1)
    img = np.asarray(Image.fromarray(rng.integers(0, 255, (32, 32, 3)).astype(np.uint8)).resize((512, 512)))
    tif = tmp_path / "section.tif"
    with tifffile.TiffWriter(tif) as tw:
        tw.write(img, tile=(128, 128), photometric="rgb", compression=None)
        tw.write(img[::2, ::2], tile=(128, 128), photometric="rgb", compression=None)
    png = tmp_path / "section.png"
    Image.fromarray(img).save(png)
    reader = open_slide(tif, mpp=0.5)
    centres = np.array([[256.0, 256.0], [20.0, 500.0]])
    a = SpotPatcher(tif, centres, mpp=0.5, patch_um=64.0, out_size=64, reader=reader)
    b = SpotPatcher(png, centres, mpp=0.5, patch_um=64.0, out_size=64)
    assert type(a._reader).__name__ == "OpenSlideReader"
    for i in range(2):
        assert np.abs(a.patch(i).astype(float) - b.patch(i).astype(float)).mean() < 8


def test_spot_patcher_refuses_outside_spots(tmp_path):
    path = tmp_path / "s.png"
    Image.fromarray(np.zeros((50, 60, 3), np.uint8)).save(path)
    with pytest.raises(DataError, match="1 of 2 spot centres lie outside the 60 x 50 px image"):
        SpotPatcher(path, np.array([[10.0, 10.0], [70.0, 10.0]]), mpp=1.0, patch_um=10.0, out_size=10)
