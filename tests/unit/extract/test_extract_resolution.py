"""The source-resolution check of extraction: upscale factor, one warning when coarse."""

from __future__ import annotations

import logging

import pytest

from hagekit.extract.resolution import source_resolution_attrs


def test_coarse_source_warns_with_the_factor(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="hagekit"):
        # 112 µm at 4 µm/px: 28 source px into 224 encoder px
        attrs = source_resolution_attrs("MOB1", source_px=112 / 4.0, out_px=224, source_mpp=4.0)
    assert attrs["source_upscale"] == pytest.approx(8.0) and attrs["coarse_source"] is True
    assert "MOB1: the image is coarse (4.00 µm/px): each patch is 28 source px upscaled 8.0x to 224 px" in caplog.text
    assert "<= 1.00 µm/px keeps the upscale within 2x" in caplog.text
    assert caplog.text.count("coarse") == 1


def test_fine_source_is_quiet(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="hagekit"):
        attrs = source_resolution_attrs("C2", source_px=112 / 0.77, out_px=224, source_mpp=0.77)
        edge = source_resolution_attrs("edge", source_px=112.0, out_px=224, source_mpp=1.0)  # exactly 2x: fine
    assert attrs["coarse_source"] is False and attrs["source_upscale"] == pytest.approx(1.54)
    assert edge["coarse_source"] is False
    assert caplog.text == ""
