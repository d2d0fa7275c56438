"""Image opening on the real slide fixtures: SVS size and mpp, a slide without mpp, a broken file."""

from __future__ import annotations

from pathlib import Path

import pytest

from hagekit.errors import DataError
from hagekit.slides.info import open_image_info


def test_real_svs(wsi_dir: Path) -> None:
    info = open_image_info(wsi_dir / "cmu-1-small-region.svs")
    assert (info.width, info.height) == (2220, 2967)
    assert info.mpp == pytest.approx(0.499, abs=1e-3)
    assert max(info.thumbnail.shape[:2]) == 600


def test_svs_without_mpp(wsi_dir: Path) -> None:
    info = open_image_info(wsi_dir / "tcga-cr-7395-01a-01-ts1.svs")
    assert (info.width, info.height) == (4443, 3567) and info.mpp is None


def test_broken_svs_is_a_clear_error(wsi_dir: Path) -> None:
    with pytest.raises(DataError, match=r"broken.svs: truncated or unreadable slide file"):
        open_image_info(wsi_dir / "broken.svs")


def test_her2st_jpeg_is_checked_without_a_full_decode(her2st_raw: Path) -> None:
    import time

    img = next((her2st_raw / "data" / "ST-imgs" / "C" / "C2").glob("*.jpg"))
    t = time.perf_counter()
    info = open_image_info(img)
    elapsed = time.perf_counter() - t
    assert (info.width, info.height) == (9274, 9911)
    assert elapsed < 5.0  # a full decode of this 92 Mpx JPEG takes several seconds
