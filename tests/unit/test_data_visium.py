"""The Visium reader on a mini Space Ranger ``outs`` folder in the 10x HDF5 schema."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_data_fixtures import GENES, make_visium, write_10x_h5

from hagekit.data.section import read_section
from hagekit.data.visium import prepare_visium, read_10x_h5
from hagekit.errors import DataError


@pytest.mark.parametrize("new_positions", [True, False], ids=["tissue_positions", "tissue_positions_list"])
def test_prepare_visium(tmp_path: Path, new_positions: bool) -> None:
    outs, image = make_visium(tmp_path / "outs", new_positions=new_positions)
    report = prepare_visium(outs, tmp_path / "data", name="S1", image=image, patient="P7")
    s = report.sections[0]
    assert (s.section, s.patient, s.n_spots, s.n_genes, s.has_image) == ("S1", "P7", 14, len(GENES), True)
    assert s.mpp == pytest.approx(55.0 / 20.0)
    a = read_section(tmp_path / "data" / "visium" / "S1.h5ad")
    # x = pxl_col_in_fullres, y = pxl_row_in_fullres; barcode AAAC0001GG-1 is row 0, col 1
    i = list(a.obs_names).index("AAAC0001GG-1")
    np.testing.assert_allclose(a.obsm["spatial"][i], [110.0, 60.0])
    assert a.obs["array_y"].iloc[i] == 0 and a.obs["array_x"].iloc[i] == 2
    assert a.uns["spatial"]["S1"]["scalefactors"]["spot_diameter_fullres"] == pytest.approx(20.0)
    assert a.var["gene_ids"].iloc[0].startswith("ENSG")


def test_counts_match_the_h5(tmp_path: Path) -> None:
    outs, image = make_visium(tmp_path / "outs")
    barcodes, genes, _, X = read_10x_h5(outs / "filtered_feature_bc_matrix.h5")
    prepare_visium(outs, tmp_path / "data", name="S1", image=image)
    a = read_section(tmp_path / "data" / "visium" / "S1.h5ad")
    order = [barcodes.index(b) for b in a.obs_names]
    np.testing.assert_array_equal(a.X.toarray(), X.toarray()[order])


def test_without_image_is_counts_only(tmp_path: Path) -> None:
    outs, _ = make_visium(tmp_path / "outs")
    s = prepare_visium(outs, tmp_path / "data", name="S2").sections[0]
    assert not s.has_image and np.isnan(s.mpp)


def test_non_gene_features_are_dropped(tmp_path: Path) -> None:
    h5 = write_10x_h5(
        tmp_path / "m.h5", ["A-1", "B-1"], ["G1", "CD3_TotalSeqB"], np.array([[1, 5], [2, 6]]),
        feature_types=["Gene Expression", "Antibody Capture"],
    )
    _, genes, _, X = read_10x_h5(h5)
    assert genes == ["G1"] and X.toarray().tolist() == [[1], [2]]


def test_duplicated_gene_symbols_made_unique(tmp_path: Path, caplog) -> None:
    outs, image = make_visium(tmp_path / "outs")
    barcodes, _, _, X = read_10x_h5(outs / "filtered_feature_bc_matrix.h5")
    write_10x_h5(outs / "filtered_feature_bc_matrix.h5", barcodes, GENES[:-1] + [GENES[0]], X.toarray())
    prepare_visium(outs, tmp_path / "data", name="S1", image=image)
    a = read_section(tmp_path / "data" / "visium" / "S1.h5ad")
    assert a.var_names.is_unique and f"{GENES[0]}-1" in a.var_names
    assert "duplicated gene names made unique" in caplog.text


def test_missing_outs_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"outs: Space Ranger outs folder not found"):
        prepare_visium(tmp_path / "outs", tmp_path / "data", name="S1")
    outs, image = make_visium(tmp_path / "outs")
    (outs / "spatial" / "tissue_positions.csv").unlink()
    with pytest.raises(DataError, match=r"spatial: no tissue_positions.csv or tissue_positions_list.csv"):
        prepare_visium(outs, tmp_path / "data", name="S1", image=image)
    assert not (tmp_path / "data").exists()


def test_not_a_10x_h5(tmp_path: Path) -> None:
    outs, image = make_visium(tmp_path / "outs")
    (outs / "filtered_feature_bc_matrix.h5").write_bytes(b"not hdf5")
    with pytest.raises(DataError, match=r"filtered_feature_bc_matrix.h5: not a readable HDF5 file"):
        prepare_visium(outs, tmp_path / "data", name="S1", image=image)


def test_bad_scalefactors(tmp_path: Path) -> None:
    outs, image = make_visium(tmp_path / "outs")
    (outs / "spatial" / "scalefactors_json.json").write_text(json.dumps({"tissue_hires_scalef": 0.2}))
    with pytest.raises(DataError, match=r"scalefactors_json.json: lacks a positive spot_diameter_fullres"):
        prepare_visium(outs, tmp_path / "data", name="S1", image=image)


def test_negative_counts(tmp_path: Path) -> None:
    outs, image = make_visium(tmp_path / "outs")
    barcodes, genes, _, X = read_10x_h5(outs / "filtered_feature_bc_matrix.h5")
    dense = X.toarray()
    dense[0, 0] = -3
    write_10x_h5(outs / "filtered_feature_bc_matrix.h5", barcodes, genes, dense)
    with pytest.raises(DataError, match="NaN, negative or non-integer"):
        prepare_visium(outs, tmp_path / "data", name="S1", image=image)
    assert not (tmp_path / "data").exists()


def test_barcodes_do_not_match(tmp_path: Path) -> None:
    outs, image = make_visium(tmp_path / "outs")
    barcodes, genes, _, X = read_10x_h5(outs / "filtered_feature_bc_matrix.h5")
    write_10x_h5(outs / "filtered_feature_bc_matrix.h5", [b.replace("-1", "-2") for b in barcodes], genes, X.toarray())
    with pytest.raises(DataError, match="no spot id matches the positions"):
        prepare_visium(outs, tmp_path / "data", name="S1", image=image)


def test_spots_outside_the_image(tmp_path: Path) -> None:
    outs, image = make_visium(tmp_path / "outs", image_size=(200, 100))
    with pytest.raises(DataError, match=r"fullres.jpg: \d+ of 14 spot centres lie outside the 200 x 100 px image"):
        prepare_visium(outs, tmp_path / "data", name="S1", image=image)
    assert not (tmp_path / "data").exists()
