"""The Visium reader on a mini Space Ranger ``outs`` folder in the 10x HDF5 schema."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from toys.raw_formats import GENES, make_visium, write_10x_h5

from hagekit.data.section import read_section
from hagekit.data.visium import VisiumSection, prepare_visium, read_10x_h5
from hagekit.errors import DataError


@pytest.mark.parametrize("new_positions", [True, False], ids=["tissue_positions", "tissue_positions_list"])
def test_prepare_visium(tmp_path: Path, new_positions: bool) -> None:
    outs, image = make_visium(tmp_path / "outs", new_positions=new_positions)
    report = prepare_visium(outs, tmp_path / "data", VisiumSection("S1", image=image, patient="P7"))
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
    prepare_visium(outs, tmp_path / "data", VisiumSection("S1", image=image))
    a = read_section(tmp_path / "data" / "visium" / "S1.h5ad")
    order = [barcodes.index(b) for b in a.obs_names]
    np.testing.assert_array_equal(a.X.toarray(), X.toarray()[order])


def test_without_image_is_counts_only(tmp_path: Path) -> None:
    outs, _ = make_visium(tmp_path / "outs")
    s = prepare_visium(outs, tmp_path / "data", VisiumSection("S2")).sections[0]
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
    prepare_visium(outs, tmp_path / "data", VisiumSection("S1", image=image))
    a = read_section(tmp_path / "data" / "visium" / "S1.h5ad")
    assert a.var_names.is_unique and f"{GENES[0]}-1" in a.var_names
    assert "duplicated gene names made unique" in caplog.text


def test_missing_outs_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"outs: Space Ranger outs folder not found"):
        prepare_visium(tmp_path / "outs", tmp_path / "data", VisiumSection("S1"))
    outs, image = make_visium(tmp_path / "outs")
    (outs / "spatial" / "tissue_positions.csv").unlink()
    with pytest.raises(DataError, match=r"spatial: no tissue_positions.csv, tissue_positions_list.csv or tissue_positions.parquet"):
        prepare_visium(outs, tmp_path / "data", VisiumSection("S1", image=image))
    assert not (tmp_path / "data").exists()


def test_not_a_10x_h5(tmp_path: Path) -> None:
    outs, image = make_visium(tmp_path / "outs")
    (outs / "filtered_feature_bc_matrix.h5").write_bytes(b"not hdf5")
    with pytest.raises(DataError, match=r"filtered_feature_bc_matrix.h5: not a readable HDF5 file"):
        prepare_visium(outs, tmp_path / "data", VisiumSection("S1", image=image))


def test_bad_scalefactors(tmp_path: Path) -> None:
    outs, image = make_visium(tmp_path / "outs")
    (outs / "spatial" / "scalefactors_json.json").write_text(json.dumps({"tissue_hires_scalef": 0.2}))
    with pytest.raises(DataError, match=r"scalefactors_json.json: lacks a positive spot_diameter_fullres"):
        prepare_visium(outs, tmp_path / "data", VisiumSection("S1", image=image))


def test_negative_counts(tmp_path: Path) -> None:
    outs, image = make_visium(tmp_path / "outs")
    barcodes, genes, _, X = read_10x_h5(outs / "filtered_feature_bc_matrix.h5")
    dense = X.toarray()
    dense[0, 0] = -3
    write_10x_h5(outs / "filtered_feature_bc_matrix.h5", barcodes, genes, dense)
    with pytest.raises(DataError, match="NaN, negative or non-integer"):
        prepare_visium(outs, tmp_path / "data", VisiumSection("S1", image=image))
    assert not (tmp_path / "data").exists()


def test_barcodes_do_not_match(tmp_path: Path) -> None:
    outs, image = make_visium(tmp_path / "outs")
    barcodes, genes, _, X = read_10x_h5(outs / "filtered_feature_bc_matrix.h5")
    write_10x_h5(outs / "filtered_feature_bc_matrix.h5", [b.replace("-1", "-2") for b in barcodes], genes, X.toarray())
    with pytest.raises(DataError, match="no spot id matches the positions"):
        prepare_visium(outs, tmp_path / "data", VisiumSection("S1", image=image))


def test_spots_outside_the_image(tmp_path: Path) -> None:
    outs, image = make_visium(tmp_path / "outs", image_size=(200, 100))
    with pytest.raises(DataError, match=r"fullres.jpg: 200 x 100 px matches no scale factor .*full-res \(1\): at least 321 x 181"):
        prepare_visium(outs, tmp_path / "data", VisiumSection("S1", image=image))
    assert not (tmp_path / "data").exists()


# Space Ranger's own layouts: Matrix Market counts, hires / lowres images, scale factors -------


def _write_mtx(outs: Path) -> None:
    """Replace the .h5 by the filtered_feature_bc_matrix/ folder Space Ranger writes (gzip)."""
    import gzip

    import scipy.io
    import scipy.sparse as sp

    h5 = outs / "filtered_feature_bc_matrix.h5"
    barcodes, genes, ids, X = read_10x_h5(h5)
    h5.unlink()
    folder = outs / "filtered_feature_bc_matrix"
    folder.mkdir()
    with gzip.open(folder / "matrix.mtx.gz", "wb") as fh:
        scipy.io.mmwrite(fh, sp.coo_matrix(X.T), field="integer")
    with gzip.open(folder / "barcodes.tsv.gz", "wt") as fh:
        fh.write("".join(f"{b}\n" for b in barcodes))
    with gzip.open(folder / "features.tsv.gz", "wt") as fh:
        fh.write("".join(f"{i}\t{g}\tGene Expression\n" for i, g in zip(ids, genes, strict=True)))


def _write_png(path: Path, size: tuple[int, int], value: int | None = None) -> Path:
    from PIL import Image

    rng = np.random.default_rng(1)
    arr = rng.integers(120, 255, (size[1], size[0], 3), dtype=np.uint8) if value is None else np.full((size[1], size[0], 3), value, np.uint8)
    Image.fromarray(arr).save(path)
    return path


def test_matrix_market_folder_gives_the_h5_counts(tmp_path: Path) -> None:
    outs, image = make_visium(tmp_path / "outs")
    barcodes, genes, _, X = read_10x_h5(outs / "filtered_feature_bc_matrix.h5")
    _write_mtx(outs)
    prepare_visium(outs, tmp_path / "data", VisiumSection("S1", image=image))
    a = read_section(tmp_path / "data" / "visium" / "S1.h5ad")
    order = [barcodes.index(b) for b in a.obs_names]
    np.testing.assert_array_equal(a.X.toarray(), X.toarray()[order])
    assert list(a.var_names) == genes


def test_no_counts_names_both_layouts(tmp_path: Path) -> None:
    outs, image = make_visium(tmp_path / "outs")
    (outs / "filtered_feature_bc_matrix.h5").unlink()
    with pytest.raises(DataError, match=r"outs: no 10x counts: neither filtered_feature_bc_matrix.h5 nor a filtered_feature_bc_matrix/ folder"):
        prepare_visium(outs, tmp_path / "data", VisiumSection("S1", image=image))


@pytest.mark.parametrize("which", ["hires", "lowres"])
def test_hires_or_lowres_image_scales_the_spots(tmp_path: Path, caplog, which: str) -> None:
    # full-res 400 x 320 (the fixture's image); hires 0.5 -> 200 x 160, lowres 0.15 -> 60 x 48
    outs, _ = make_visium(tmp_path / "outs")
    _write_png(outs / "spatial" / "tissue_hires_image.png", (200, 160))
    _write_png(outs / "spatial" / "tissue_lowres_image.png", (60, 48))
    scale = {"hires": 0.5, "lowres": 0.15}[which]
    given = outs / "spatial" / f"tissue_{which}_image.png"
    s = prepare_visium(outs, tmp_path / "data", VisiumSection("S1", image=given)).sections[0]
    assert s.mpp == pytest.approx(55.0 / (20.0 * scale))
    a = read_section(tmp_path / "data" / "visium" / "S1.h5ad")
    i = list(a.obs_names).index("AAAC0001GG-1")
    np.testing.assert_allclose(a.obsm["spatial"][i], [110.0 * scale, 60.0 * scale])
    np.testing.assert_allclose(a.obsm["spatial_fullres"][i], [110.0, 60.0])
    assert a.uns["hagekit"]["image_resolution"] == which
    assert f"is the {which} image (scale factor {scale:g})" in caplog.text


def test_default_image_is_hires_then_lowres(tmp_path: Path, caplog) -> None:
    outs, fullres = make_visium(tmp_path / "outs")
    _write_png(outs / "spatial" / "tissue_lowres_image.png", (60, 48))
    s = prepare_visium(outs, tmp_path / "data", VisiumSection("L")).sections[0]
    assert s.has_image and s.mpp == pytest.approx(55.0 / (20.0 * 0.15))
    _write_png(outs / "spatial" / "tissue_hires_image.png", (200, 160))
    s = prepare_visium(outs, tmp_path / "data", VisiumSection("H")).sections[0]
    assert s.mpp == pytest.approx(55.0 / 10.0)
    assert read_section(tmp_path / "data" / "visium" / "H.h5ad").uns["hagekit"]["image_path"].endswith("tissue_hires_image.png")
    caplog.clear()
    s = prepare_visium(outs, tmp_path / "data", VisiumSection("F", image=fullres)).sections[0]
    assert s.mpp == pytest.approx(55.0 / 20.0) and "not full resolution" not in caplog.text


def test_blank_images(tmp_path: Path, caplog) -> None:
    outs, _ = make_visium(tmp_path / "outs")
    hires = _write_png(outs / "spatial" / "tissue_hires_image.png", (200, 160), value=0)
    s = prepare_visium(outs, tmp_path / "data", VisiumSection("S1")).sections[0]
    assert not s.has_image and "blank image (one colour), not used" in caplog.text
    with pytest.raises(DataError, match=r"tissue_hires_image.png: the image is blank"):
        prepare_visium(outs, tmp_path / "data", VisiumSection("S2", image=hires))


def test_image_of_no_known_size(tmp_path: Path) -> None:
    outs, _ = make_visium(tmp_path / "outs")
    _write_png(outs / "spatial" / "tissue_hires_image.png", (200, 160))
    other = _write_png(tmp_path / "other.png", (300, 240))
    pattern = r"other.png: 300 x 240 px matches no scale factor .*full-res \(1\): 400 x 320, hires \(0.5\): 200 x 160, lowres \(0.15\): 60 x 48"
    with pytest.raises(DataError, match=pattern):
        prepare_visium(outs, tmp_path / "data", VisiumSection("S1", image=other))


def test_parquet_positions(tmp_path: Path) -> None:
    import importlib.util

    import pandas as pd

    outs, image = make_visium(tmp_path / "outs")
    csv = outs / "spatial" / "tissue_positions.csv"
    df = pd.read_csv(csv)
    csv.unlink()
    parquet = outs / "spatial" / "tissue_positions.parquet"
    if importlib.util.find_spec("pyarrow") is None:
        parquet.write_bytes(b"PAR1")  # pyarrow absent: the one line must say what is missing
        with pytest.raises(DataError, match=r"tissue_positions.parquet: reading tissue_positions.parquet needs pyarrow"):
            prepare_visium(outs, tmp_path / "data", VisiumSection("S1", image=image))
        return
    df.to_parquet(parquet)
    s = prepare_visium(outs, tmp_path / "data", VisiumSection("S1", image=image)).sections[0]
    assert s.n_spots == 14


def test_matrix_market_folder_missing_a_file(tmp_path: Path) -> None:
    outs, image = make_visium(tmp_path / "outs")
    _write_mtx(outs)
    (outs / "filtered_feature_bc_matrix" / "barcodes.tsv.gz").unlink()
    with pytest.raises(DataError, match=r"filtered_feature_bc_matrix: 10x matrix folder lacks barcodes.tsv\(.gz\)"):
        prepare_visium(outs, tmp_path / "data", VisiumSection("S1", image=image))
