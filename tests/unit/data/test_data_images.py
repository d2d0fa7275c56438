"""The one image layer as prepare uses it: size, whole-file check, thumbnail, mpp, bounds check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from toys.raw_formats import write_jpeg, write_pyramid_tiff

from hagekit.errors import DataError
from hagekit.slides.info import open_image_info, thumbnail_from_array
from hagekit.slides.patches import check_spots_inside
from hagekit.slides.reader import ImageReader, OpenSlideReader, mpp_from_properties, open_slide


def test_jpeg_info_and_thumbnail(tmp_path: Path) -> None:
    img = write_jpeg(tmp_path / "a.jpg", size=(1600, 1200))
    info = open_image_info(img, max_side=200)
    assert (info.width, info.height) == (1600, 1200)
    assert info.thumbnail.shape == (150, 200, 3) and info.thumbnail.dtype == np.uint8
    assert info.thumbnail_scale == pytest.approx(200 / 1600)


def test_png(tmp_path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.full((50, 80, 3), 200, np.uint8)).save(tmp_path / "a.png")
    info = open_image_info(tmp_path / "a.png")
    assert (info.width, info.height) == (80, 50) and info.thumbnail.shape == (50, 80, 3)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (lambda b: b[: len(b) // 2], "truncated JPEG"),
        (lambda b: b"garbage" * 20, "not a readable image"),
        (lambda b: b"", "image file is empty"),
    ],
    ids=["truncated", "garbage", "empty"],
)
def test_bad_jpeg(tmp_path: Path, content, match: str) -> None:
    img = write_jpeg(tmp_path / "a.jpg")
    img.write_bytes(content(img.read_bytes()))
    with pytest.raises(DataError, match=rf"a.jpg: {match}"):
        open_image_info(img)


def test_truncated_png(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"a.png: truncated or unreadable image"):
        open_image_info(tmp_path / "a.png")


def test_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"x.jpg: image file not found"):
        open_image_info(tmp_path / "x.jpg")


def test_pyramidal_tiff_with_resolution(tmp_path: Path) -> None:
    info = open_image_info(write_pyramid_tiff(tmp_path / "w.tif", size=(512, 384), mpp=0.25))
    assert (info.width, info.height) == (512, 384)
    assert info.mpp == pytest.approx(0.25, rel=1e-3)
    assert info.thumbnail.shape[2] == 3


def test_centres_inside() -> None:
    check_spots_inside(np.array([[0.0, 0.0], [99.0, 49.0]]), 100, 50, source="img")
    with pytest.raises(DataError, match=r"img: 2 of 3 spot centres lie outside the 100 x 50 px image"):
        check_spots_inside(np.array([[10.0, 10.0], [100.0, 10.0], [np.nan, 3.0]]), 100, 50, source="img")


def test_thumbnail_from_array() -> None:
    thumb, scale = thumbnail_from_array(np.zeros((1000, 2000, 3), np.uint8), max_side=100)
    assert thumb.shape == (50, 100, 3) and scale == pytest.approx(0.05)


def test_one_reader_for_slides_and_sections(tmp_path: Path) -> None:
    """Pyramidal TIFFs go through OpenSlide, JPEGs through PIL, both with the same mpp rules."""
    tif = write_pyramid_tiff(tmp_path / "w.tif", size=(512, 384), mpp=0.25)
    with open_slide(tif) as reader:
        assert isinstance(reader, OpenSlideReader) and reader.mpp == pytest.approx(0.25, rel=1e-3)
    jpg = write_jpeg(tmp_path / "a.jpg", size=(1600, 1200))
    with open_slide(jpg, decode_side=300) as reader:
        assert isinstance(reader, ImageReader) and reader.array.shape[:2] == (300, 400)  # 1/4 decode
        assert reader.dimensions == (1600, 1200) and reader.mpp is None


def test_flat_tiff_falls_back_to_tifffile(tmp_path: Path) -> None:
    """A strip (untiled) TIFF, which OpenSlide refuses, is read by tifffile with its resolution."""
    import tifffile

    arr = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    tif = tmp_path / "flat.tif"
    tifffile.imwrite(tif, arr, photometric="rgb", resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit="CENTIMETER")
    with open_slide(tif) as reader:
        assert isinstance(reader, ImageReader) and reader.mpp == pytest.approx(0.5)
        assert np.array_equal(reader.read_region(10, 5, 0, 20, 10), arr[5:15, 10:30])
    info = open_image_info(tif, max_side=48)
    assert (info.width, info.height) == (96, 64) and info.thumbnail.shape == (32, 48, 3)


@pytest.mark.parametrize(
    ("props", "mpp"),
    [
        ({"openslide.mpp-x": "0.5", "openslide.mpp-y": "0.52"}, 0.51),
        ({"openslide.mpp-x": "500"}, None),  # implausible
        ({"tiff.ResolutionUnit": "centimeter", "tiff.XResolution": "40000"}, 0.25),
        ({"tiff.ResolutionUnit": "inch", "tiff.XResolution": 50800.0}, 0.5),
        ({"tiff.ResolutionUnit": "inch", "tiff.XResolution": "300"}, None),  # a print default, not a scan
        ({"tiff.ResolutionUnit": "inch", "tiff.XResolution": "72"}, None),
        ({"tiff.ResolutionUnit": "none", "tiff.XResolution": "1"}, None),
        ({"openslide.mpp-x": "abc"}, None),
        ({}, None),
    ],
)
def test_mpp_from_properties(props: dict, mpp: float | None) -> None:
    got = mpp_from_properties(props)
    assert got == pytest.approx(mpp) if mpp is not None else got is None


def test_png_dpi_is_a_scan_resolution_only_when_fine(tmp_path: Path) -> None:
    from PIL import Image

    img = Image.fromarray(np.zeros((20, 30, 3), np.uint8))
    img.save(tmp_path / "fine.png", dpi=(50800, 50800))
    img.save(tmp_path / "screen.png", dpi=(96, 96))
    assert open_image_info(tmp_path / "fine.png").mpp == pytest.approx(0.5, rel=1e-3)
    assert open_image_info(tmp_path / "screen.png").mpp is None
