"""STUtility's mouse olfactory bulb (2k ST array, 1905 px H&E at ~4.4 µm/px), read as published."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from hagekit.data.section import list_sections, read_section
from hagekit.data.stutility import prepare_stutility


@pytest.fixture(scope="module")
def mob_raw(shared_data: Path) -> Path:
    path = shared_data / "stutility-mob"
    if not (path / "alignment_table_MOB1.tsv").is_file():
        pytest.skip(f"STUtility MOB data not available at {path}")
    return path


def test_mob_is_a_2k_array_at_4_4_um_per_px(mob_raw: Path, tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="hagekit"):
        report = prepare_stutility(mob_raw, tmp_path, sections=["MOB1", "MOB2"], dataset="mob")
    for s in report.sections:
        assert s.mpp == pytest.approx(4.4, rel=0.10)
        assert s.array == "ST 2k, 100 µm"
        # the table's number is the warning's number, and the reasons add up to it
        m = re.search(rf"{s.section}: dropped (\d+) spot\(s\): (\d+) with counts under unselected positions "
                      r"\(selected == 0\), (\d+) with counts but no position, (\d+) selected positions without counts; "
                      r"(\d+) kept", caplog.text)
        assert m is not None, caplog.text
        total, *reasons, kept = (int(v) for v in m.groups())
        assert total == s.dropped == sum(reasons) and kept == s.n_spots
        a = read_section(s.path)
        assert a.uns["hagekit"]["n_dropped_spots"] == total
        assert sum(a.uns["hagekit"]["dropped_spots"].values()) == total
    # MOB1: 1,934 spots with counts = 379 kept + 1,544 under unselected positions + 11 without one
    assert (report.sections[0].n_spots, report.sections[0].dropped) == (379, 1555)
    assert "x and y array pitch differ by 11%" in caplog.text
    assert {i.array for i in list_sections(tmp_path, "mob")} == {"ST 2k, 100 µm"}


def test_her2st_is_a_1k_array(her2st_raw: Path, tmp_path: Path, caplog) -> None:
    from hagekit.data.her2st import prepare_her2st

    with caplog.at_level(logging.WARNING, logger="hagekit"):
        s = prepare_her2st(her2st_raw, tmp_path, sections=["C2"]).sections[0]
    assert s.array == "ST 1k, 200 µm" and "pitch differ" not in caplog.text
