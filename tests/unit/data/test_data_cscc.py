"""The cSCC reader on a mini GSE144240_RAW folder (flat, GSM-prefixed files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from toys.raw_formats import GENES, grid_spots, make_cscc, write_counts_tsv, write_jpeg

from hagekit.data.cscc import prepare_cscc
from hagekit.data.section import list_sections, read_section
from hagekit.errors import ConfigError, DataError


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    return make_cscc(tmp_path / "GSE144240_RAW")


def test_prepare_finds_sections_patients_and_images(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    report = prepare_cscc(raw, out)
    assert [s.section for s in report.sections] == ["P10_ST_rep1", "P2_ST_rep1", "P2_ST_rep2"]
    infos = {i.section: i for i in list_sections(out, "cscc")}
    assert {i.patient for i in infos.values()} == {"P2", "P10"}
    assert all(i.has_image for i in infos.values())
    assert infos["P2_ST_rep1"].mpp == pytest.approx(4.0, rel=1e-3)
    a = read_section(out / "cscc" / "P2_ST_rep2.h5ad")
    assert a.n_obs == len(grid_spots()) and list(a.var_names) == GENES
    assert a.uns["hagekit"]["source"] == "GEO GSE144240"
    assert a.obs["array_x"].tolist()[:2] == [2, 3]


def test_sections_option(raw: Path, tmp_path: Path) -> None:
    report = prepare_cscc(raw, tmp_path / "data", sections=["P2_ST_rep2"])
    assert [s.section for s in report.sections] == ["P2_ST_rep2"]
    with pytest.raises(ConfigError, match="valid choices: P10_ST_rep1, P2_ST_rep1, P2_ST_rep2"):
        prepare_cscc(raw, tmp_path / "data", sections=["P3_ST_rep1"])


def test_missing_image_gives_counts_only(raw: Path, tmp_path: Path) -> None:
    next(raw.glob("*_P2_ST_rep1.jpg")).unlink()
    report = prepare_cscc(raw, tmp_path / "data", sections=["P2_ST_rep1"])
    assert not report.sections[0].has_image and np.isnan(report.sections[0].mpp)


def test_counts_without_spot_file(raw: Path, tmp_path: Path) -> None:
    next(raw.glob("*spot*P2_ST_rep2.tsv.gz")).unlink()
    with pytest.raises(DataError, match=r"P2_ST_rep2_stdata.tsv.gz: counts file with no matching spot file"):
        prepare_cscc(raw, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_section_named_twice(raw: Path, tmp_path: Path) -> None:
    ids = [f"{x}x{y}" for x, y in grid_spots()]
    write_counts_tsv(raw / "GSM9999999_P2_ST_rep1_stdata.tsv", ids, GENES, np.ones((len(ids), len(GENES)), int))
    with pytest.raises(DataError, match="section 'P2_ST_rep1' named twice"):
        prepare_cscc(raw, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_two_images_for_one_section(raw: Path, tmp_path: Path) -> None:
    write_jpeg(raw / "extra_P2_ST_rep1.jpg")
    with pytest.raises(DataError, match="has two images"):
        prepare_cscc(raw, tmp_path / "data")


def test_not_a_geo_folder(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    with pytest.raises(DataError, match=r"raw: no \*<name>_stdata.tsv\(.gz\) counts files"):
        prepare_cscc(tmp_path / "raw", tmp_path / "data")
