"""Image opening for prepare: size, whole-file check, thumbnail, pixel size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_data_fixtures import write_jpeg, write_pyramid_tiff

from hagekit.data.images import check_centres_inside, open_image_info, thumbnail_from_array
from hagekit.errors import DataError


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
    check_centres_inside(np.array([[0.0, 0.0], [99.0, 49.0]]), 100, 50, source="img")
    with pytest.raises(DataError, match=r"img: 2 of 3 spot centres lie outside the 100 x 50 px image"):
        check_centres_inside(np.array([[10.0, 10.0], [100.0, 10.0], [np.nan, 3.0]]), 100, 50, source="img")


def test_thumbnail_from_array() -> None:
    thumb, scale = thumbnail_from_array(np.zeros((1000, 2000, 3), np.uint8), max_side=100)
    assert thumb.shape == (50, 100, 3) and scale == pytest.approx(0.05)
