"""The her2st reader and the shared prepare driver, on a mini almaan/her2st layout."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pytest
from toys.raw_formats import GENES, grid_spots, make_her2st, write_counts_tsv, write_spot_tsv

from hagekit.data.her2st import prepare_her2st
from hagekit.data.section import list_sections, read_section
from hagekit.errors import ConfigError, DataError


def _h5ads(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*.h5ad"))


def _leftovers(root: Path) -> list[str]:
    """Temporary or partial files left behind anywhere under root."""
    return sorted(p.name for p in root.rglob("*") if ".tmp" in p.name or p.name.endswith(".part"))


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    return make_her2st(tmp_path / "her2st")


def test_prepare_all_sections(raw: Path, tmp_path: Path, caplog) -> None:
    out = tmp_path / "data"
    report = prepare_her2st(raw, out)
    assert report.dataset == "her2"
    assert [s.section for s in report.sections] == ["A1", "B1", "B2"]
    infos = {i.section: i for i in list_sections(out)}
    assert {i.dataset for i in infos.values()} == {"her2"}
    assert not infos["A1"].has_image and np.isnan(infos["A1"].mpp)
    assert infos["B1"].has_image and infos["B1"].mpp == pytest.approx(200.0 / 50.0, rel=1e-3)
    assert infos["B1"].spot_diameter_um == 100.0
    assert infos["B2"].patient == "B" and infos["A1"].patient == "A"
    a = read_section(out / "her2" / "B1.h5ad")
    assert a.n_obs == 12 and list(a.var_names) == GENES
    assert a.obs_names[0] == "2x3"
    assert a.obs["array_x"].iloc[0] == 2 and a.obs["array_y"].iloc[0] == 3
    # spot centres are the spot file's pixel_x / pixel_y
    np.testing.assert_allclose(a.obsm["spatial"][0], [40 + 1.02 * 50, 30 + 1.97 * 50], atol=0.01)
    assert a.uns["spatial"]["B1"]["images"]["lowres"].shape[2] == 3
    assert a.uns["spatial"]["B1"]["scalefactors"]["spot_diameter_fullres"] == pytest.approx(25.0, rel=1e-3)
    # pathologist labels joined on rounded x, y where available
    labels = read_section(out / "her2" / "A1.h5ad").obs["label"]
    assert labels.iloc[0] == "connective tissue" and labels.iloc[1] == "invasive cancer"
    assert labels.iloc[-1] == ""
    assert _leftovers(tmp_path) == []


def test_counts_match_the_files_exactly(raw: Path, tmp_path: Path) -> None:
    import pandas as pd

    prepare_her2st(raw, tmp_path / "data", sections=["B2"])
    a = read_section(tmp_path / "data" / "her2" / "B2.h5ad")
    df = pd.read_csv(raw / "data" / "ST-cnts" / "B2.tsv.gz", sep="\t", index_col=0)
    np.testing.assert_array_equal(a.X.toarray(), df.loc[list(a.obs_names), list(a.var_names)].to_numpy())


def test_sections_subset_dataset_name_and_resume(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    report = prepare_her2st(raw, out, sections=["B2"], dataset="her2st")
    assert report.folder == out / "her2" and _h5ads(out) == ["B2.h5ad"]
    mtime = (out / "her2" / "B2.h5ad").stat().st_mtime_ns
    again = prepare_her2st(raw, out)
    assert {s.section: s.status for s in again.sections} == {"A1": "written", "B1": "written", "B2": "kept"}
    assert (out / "her2" / "B2.h5ad").stat().st_mtime_ns == mtime
    redo = prepare_her2st(raw, out, sections=["B2"], overwrite=True)
    assert redo.sections[0].status == "written"


def test_unknown_or_repeated_section_is_refused(raw: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--sections: unknown section\(s\) Z9 \(valid choices: A1, B1, B2\)"):
        prepare_her2st(raw, tmp_path / "data", sections=["Z9"])
    with pytest.raises(ConfigError, match="named twice"):
        prepare_her2st(raw, tmp_path / "data", sections=["B1", "B1"])
    assert not (tmp_path / "data").exists()


def test_section_named_twice_by_two_counts_files(raw: Path, tmp_path: Path) -> None:
    src = raw / "data" / "ST-cnts" / "B1.tsv.gz"
    (raw / "data" / "ST-cnts" / "B1.tsv").write_bytes(gzip.decompress(src.read_bytes()))
    with pytest.raises(DataError, match="section 'B1' named twice"):
        prepare_her2st(raw, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_dropped_spots_are_reported(raw: Path, tmp_path: Path, caplog) -> None:
    spots = grid_spots()
    # two positions without counts, one count row without a position
    ids = [f"{x}x{y}" for x, y in spots[:-2]] + ["40x40"]
    write_counts_tsv(raw / "data" / "ST-cnts" / "B1.tsv.gz", ids, GENES, np.ones((len(ids), len(GENES)), int))
    with caplog.at_level(logging.WARNING, logger="hagekit"):
        report = prepare_her2st(raw, tmp_path / "data", sections=["B1"])
    assert report.sections[0].n_spots == len(spots) - 2
    assert report.sections[0].dropped == 3
    assert ("dropped 3 spot(s): 0 with counts under unselected positions (selected == 0), 1 with counts but no "
            "position, 2 selected positions without counts; 10 kept") in caplog.text
    assert caplog.text.count("dropped") == 1  # one warning, the table's number


# bad inputs: one-line error naming the file, nothing written ------------------------------


def _expect_error(raw: Path, out: Path, match: str, sections=None) -> None:
    with pytest.raises(DataError, match=match) as info:
        prepare_her2st(raw, out, sections=sections)
    assert "\n" not in str(info.value)
    assert not list(out.rglob("*.h5ad")) if out.exists() else True
    assert _leftovers(out.parent) == []


def test_missing_folder(tmp_path: Path) -> None:
    _expect_error(tmp_path / "nope", tmp_path / "data", r"nope: her2st folder not found")


def test_folder_without_counts(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _expect_error(tmp_path / "empty", tmp_path / "data", r"empty: no ST-cnts folder \(expected the almaan/her2st layout")


def test_counts_without_spot_file(raw: Path, tmp_path: Path) -> None:
    (raw / "data" / "ST-spotfiles" / "B2_selection.tsv").unlink()
    _expect_error(raw, tmp_path / "data", r"ST-cnts/B2.tsv.gz: counts file with no matching spot file")


def test_no_barcode_matches(raw: Path, tmp_path: Path) -> None:
    write_spot_tsv(raw / "data" / "ST-spotfiles" / "B1_selection.tsv", [(30 + i, 30) for i in range(4)], pitch=50.0)
    _expect_error(raw, tmp_path / "data", r"B1.tsv.gz: no spot id matches the positions in .*B1_selection.tsv", ["B1"])


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("abc", r"B1.tsv.gz: non-numeric count 'abc' at spot '2x3', gene 'KRT8'"),
        ("-2", r"B1.tsv.gz: negative count -2 at spot '2x3', gene 'KRT8'"),
        ("nan", r"B1.tsv.gz: NaN or infinite count nan at spot '2x3', gene 'KRT8'"),
        ("", r"B1.tsv.gz: non-numeric count '<empty>' at spot '2x3', gene 'KRT8'"),
        ("1.5", r"B1.tsv.gz: non-integer count 1.5 at spot '2x3', gene 'KRT8'"),
    ],
)
def test_bad_count_values(raw: Path, tmp_path: Path, value: str, match: str) -> None:
    spots = grid_spots()
    rows: list[list[object]] = [[1] * len(GENES) for _ in spots]
    rows[0][1] = value
    write_counts_tsv(raw / "data" / "ST-cnts" / "B1.tsv.gz", [f"{x}x{y}" for x, y in spots], GENES, rows)
    _expect_error(raw, tmp_path / "data", match, ["B1"])


def test_ragged_counts_row(raw: Path, tmp_path: Path) -> None:
    path = raw / "data" / "ST-cnts" / "B1.tsv.gz"
    text = gzip.decompress(path.read_bytes()).decode().splitlines()
    text[2] = text[2].rsplit("\t", 1)[0]
    path.write_bytes(gzip.compress(("\n".join(text) + "\n").encode()))
    _expect_error(raw, tmp_path / "data", r"B1.tsv.gz: line 3 has 7 values but the header names 8 genes", ["B1"])


def test_duplicated_gene_names_made_unique(raw: Path, tmp_path: Path, caplog) -> None:
    spots = grid_spots()
    genes = GENES[:-1] + ["ERBB2"]
    write_counts_tsv(raw / "data" / "ST-cnts" / "B1.tsv.gz", [f"{x}x{y}" for x, y in spots], genes, np.ones((len(spots), len(genes)), int))
    with caplog.at_level(logging.WARNING, logger="hagekit"):
        prepare_her2st(raw, tmp_path / "data", sections=["B1"])
    a = read_section(tmp_path / "data" / "her2" / "B1.h5ad")
    assert a.var_names.is_unique and "ERBB2-1" in a.var_names
    assert "duplicated gene names made unique" in caplog.text


def test_truncated_image(raw: Path, tmp_path: Path) -> None:
    img = next((raw / "data" / "ST-imgs" / "B" / "B1").glob("*.jpg"))
    img.write_bytes(img.read_bytes()[: img.stat().st_size // 2])
    _expect_error(raw, tmp_path / "data", r"HE_B1.jpg: truncated JPEG \(no end-of-image marker\)", ["B1"])


def test_unreadable_image(raw: Path, tmp_path: Path) -> None:
    img = next((raw / "data" / "ST-imgs" / "B" / "B1").glob("*.jpg"))
    img.write_bytes(b"this is not an image at all" * 10)
    _expect_error(raw, tmp_path / "data", r"HE_B1.jpg: not a readable image", ["B1"])


def test_spot_centres_outside_image(raw: Path, tmp_path: Path) -> None:
    write_spot_tsv(raw / "data" / "ST-spotfiles" / "B1_selection.tsv", grid_spots(), pitch=150.0)
    _expect_error(raw, tmp_path / "data", r"HE_B1.jpg: \d+ of 12 spot centres lie outside the 400 x 320 px image", ["B1"])


def test_error_mid_run_keeps_finished_sections_complete(raw: Path, tmp_path: Path) -> None:
    """Sections before a bad one are complete files (resume); the bad one leaves nothing."""
    (raw / "data" / "ST-imgs" / "B" / "B2" / "HE_B2.jpg").write_bytes(b"garbage")
    out = tmp_path / "data"
    with pytest.raises(DataError, match="HE_B2.jpg"):
        prepare_her2st(raw, out)
    assert _h5ads(out) == ["A1.h5ad", "B1.h5ad"]
    assert read_section(out / "her2" / "B1.h5ad").n_obs == 12
    assert _leftovers(tmp_path) == []
