"""`extract` says when a section's image is too coarse: MOB (2k ST, ~4.4 µm/px) yes, HER2ST no."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _few_spots(src: Path, root: Path, n: int = 12) -> None:
    """The section ``src`` with its first ``n`` spots only, under ``root`` (a fast real extract)."""
    from hagekit.data.section import read_section, write_section

    a = read_section(src)
    dataset = a.uns["hagekit"]["dataset"]
    write_section(a[:n].copy(), root / dataset / src.name)


def _extract(root: Path, dataset: str, out: Path, caplog):
    from hagekit.extract import EncoderSpec, ExtractionSpec, extract_sections
    from hagekit.io.h5 import read_features

    with caplog.at_level(logging.WARNING, logger="hagekit"):
        summary = extract_sections(root, dataset, encoder=EncoderSpec("builtin", device="cpu", num_workers=0), spec=ExtractionSpec(out_dir=out))
    assert not summary.failed, summary
    (path,) = sorted(out.glob("*.h5"))
    return read_features(path).attrs


def test_mob_coarse_image_is_warned_and_recorded(shared_data: Path, tmp_path: Path, caplog) -> None:
    from hagekit.data.stutility import prepare_stutility

    raw = shared_data / "stutility-mob"
    if not raw.is_dir():
        pytest.skip(f"{raw} not available")
    s = prepare_stutility(raw, tmp_path / "full", sections=["MOB1"], dataset="mob").sections[0]
    _few_spots(s.path, tmp_path / "few")
    attrs = _extract(tmp_path / "few", "mob", tmp_path / "feats", caplog)
    assert "MOB1: the image is coarse (4.38 µm/px)" in caplog.text
    assert caplog.text.count("the image is coarse") == 1
    assert attrs["coarse_source"] and attrs["source_upscale"] == pytest.approx(128 * s.mpp / 112.0)


def test_her2st_image_is_fine(her2st_raw: Path, tmp_path: Path, caplog) -> None:
    from hagekit.data.her2st import prepare_her2st

    s = prepare_her2st(her2st_raw, tmp_path / "full", sections=["C2"]).sections[0]
    _few_spots(s.path, tmp_path / "few")
    attrs = _extract(tmp_path / "few", "her2", tmp_path / "feats", caplog)
    assert "coarse" not in caplog.text
    assert not attrs["coarse_source"] and attrs["source_upscale"] < 1.0
