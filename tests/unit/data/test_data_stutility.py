"""Legacy ST arrays of both kinds (1k, 2k checkerboard) and STUtility's layout, on tiny fixtures."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from toys.raw_formats import GENES, make_stutility
from toys.raw_formats import STUTILITY_IDS as IDS

from hagekit.data.section import read_section, section_info
from hagekit.data.st_array import ST_1K, ST_2K, detect_st_array, pitch_xy_px
from hagekit.data.stutility import prepare_stutility, read_gene_names
from hagekit.errors import DataError


def test_array_kind_from_the_occupied_positions() -> None:
    full = np.array([(x, y) for y in range(10) for x in range(10)])
    checker = full[(full.sum(axis=1) % 2) == 0]
    assert detect_st_array(full) is ST_1K and detect_st_array(checker) is ST_2K
    assert (ST_1K.step_um, ST_2K.step_um) == (200.0, 100.0)
    px = pitch_xy_px(checker.astype(float), checker * np.array([20.0, 24.0]))
    assert px == pytest.approx((20.0, 24.0))


def test_2k_array_pixel_size_and_dropped_spots(tmp_path: Path, caplog) -> None:
    raw = make_stutility(tmp_path / "raw")
    with caplog.at_level(logging.WARNING, logger="hagekit"):
        s = prepare_stutility(raw, tmp_path / "data").sections[0]
    # 20 px per 100 µm array step: 5 µm/px (a 1k reading would say 10)
    assert s.mpp == pytest.approx(5.0)
    assert s.array == "ST 2k, 100 µm"
    # 32 positions (8 selected) all with counts, plus 1 count row without a position
    assert (s.n_spots, s.dropped) == (8, 24 + 1)
    assert ("dropped 25 spot(s): 24 with counts under unselected positions (selected == 0), 1 with counts but no "
            "position, 0 selected positions without counts; 8 kept") in caplog.text
    assert "pitch differ" not in caplog.text
    a = read_section(tmp_path / "data" / "stutility" / "MOB1.h5ad")
    assert a.uns["hagekit"]["dropped_spots"] == {"unselected": 24, "no_position": 1, "no_counts": 0}
    assert section_info(tmp_path / "data" / "stutility" / "MOB1.h5ad").array == "ST 2k, 100 µm"
    assert list(a.var_names) == IDS and list(a.var["gene_ids"]) == IDS


def test_x_and_y_pitch_that_differ_are_warned(tmp_path: Path, caplog) -> None:
    raw = make_stutility(tmp_path / "raw", px_x=20.0, px_y=22.4)
    with caplog.at_level(logging.WARNING, logger="hagekit"):
        s = prepare_stutility(raw, tmp_path / "data").sections[0]
    assert "x and y array pitch differ by 11% (20.0 vs 22.4 px per step)" in caplog.text
    assert s.mpp == pytest.approx(100.0 / 21.2)


def test_gene_ids_get_symbols_from_a_mapping(tmp_path: Path, caplog) -> None:
    raw = make_stutility(tmp_path / "raw")
    # a 10x features.tsv: unversioned ids; one id left out, two ids share a symbol
    lines = [f"{i.split('.')[0]}\t{g}\tGene Expression" for i, g in zip(IDS, GENES, strict=True)][:-1]
    lines[1] = lines[1].split("\t")[0] + f"\t{GENES[0]}\tGene Expression"
    mapping = tmp_path / "features.tsv"
    mapping.write_text("\n".join(lines) + "\n")
    assert read_gene_names(mapping)[IDS[0].split(".")[0]] == GENES[0]
    prepare_stutility(raw, tmp_path / "data", gene_names=mapping)
    a = read_section(tmp_path / "data" / "stutility" / "MOB1.h5ad")
    assert list(a.var_names) == [GENES[0], f"{GENES[0]}-1", *GENES[2:-1], IDS[-1]]
    assert list(a.var["gene_ids"]) == IDS
    assert "1 of 8 gene ids have no symbol" in caplog.text


def test_bad_stutility_inputs(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no alignment_table_<S>.tsv files"):
        prepare_stutility(tmp_path / "empty", tmp_path / "data")
    raw = make_stutility(tmp_path / "raw")
    (raw / "MOB1.tsv").unlink()
    with pytest.raises(DataError, match=r"alignment_table_MOB1.tsv: alignment table with no counts file"):
        prepare_stutility(raw, tmp_path / "data")
    raw = make_stutility(tmp_path / "raw2")
    (tmp_path / "none.tsv").write_text("ENSG1\tA\n")
    with pytest.raises(DataError, match=r"none.tsv: maps none of the 8 gene ids"):
        prepare_stutility(raw, tmp_path / "data", gene_names=tmp_path / "none.tsv")
    with pytest.raises(DataError, match=r"missing.tsv: --gene-names file not found"):
        prepare_stutility(raw, tmp_path / "data", gene_names=tmp_path / "missing.tsv")
    assert not list((tmp_path / "data").rglob("*.h5ad")) if (tmp_path / "data").exists() else True
