"""The HEST-1k reader on a mini download (st/*.h5ad, wsis/*.tif, metadata/*.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from toys.raw_formats import GENES, make_hest

from hagekit.data.hest import prepare_hest
from hagekit.data.section import read_section
from hagekit.errors import ConfigError, DataError


def test_prepare_hest(tmp_path: Path) -> None:
    raw = make_hest(tmp_path / "hest")
    report = prepare_hest(raw, tmp_path / "data", ids=["TENX1"])
    s = report.sections[0]
    assert (s.section, s.patient, s.n_spots, s.n_genes, s.has_image) == ("TENX1", "patient0", 11, len(GENES), True)
    assert s.mpp == pytest.approx(0.5)  # pixel_size_um_estimated wins over _embedded
    a = read_section(tmp_path / "data" / "hest" / "TENX1.h5ad")
    assert a.uns["hagekit"]["spot_diameter_um"] == 55.0
    assert a.uns["hagekit"]["hest_st_technology"] == "Visium"
    np.testing.assert_allclose(a.obsm["spatial"][0], [150.0, 40.0])  # the first in-tissue spot
    assert a.X.dtype == np.int32
    assert a.uns["spatial"]["TENX1"]["images"]["lowres"].shape[2] == 3


def test_all_ids_and_spatial_from_obs(tmp_path: Path) -> None:
    import anndata as ad

    raw = make_hest(tmp_path / "hest")
    path = raw / "st" / "NCBI2.h5ad"
    a = ad.read_h5ad(path)
    del a.obsm["spatial"]
    a.write_h5ad(path)
    report = prepare_hest(raw, tmp_path / "data")
    assert [s.section for s in report.sections] == ["NCBI2", "TENX1"]
    b = read_section(tmp_path / "data" / "hest" / "NCBI2.h5ad")
    np.testing.assert_allclose(b.obsm["spatial"][0], [150.0, 40.0])


def test_mpp_falls_back_to_tiff_tags(tmp_path: Path) -> None:
    raw = make_hest(tmp_path / "hest", ids=("S1",))
    meta = json.loads((raw / "metadata" / "S1.json").read_text())
    meta.pop("pixel_size_um_estimated")
    meta.pop("pixel_size_um_embedded")
    (raw / "metadata" / "S1.json").write_text(json.dumps(meta))
    assert prepare_hest(raw, tmp_path / "data").sections[0].mpp == pytest.approx(0.5, rel=1e-3)


def test_unknown_id_and_missing_metadata(tmp_path: Path) -> None:
    raw = make_hest(tmp_path / "hest", with_wsi=False)
    with pytest.raises(ConfigError, match=r"--ids: unknown section\(s\) X9 \(valid choices: NCBI2, TENX1\)"):
        prepare_hest(raw, tmp_path / "data", ids=["X9"])
    (raw / "metadata" / "TENX1.json").unlink()
    with pytest.raises(DataError, match=r"TENX1.h5ad: no metadata file"):
        prepare_hest(raw, tmp_path / "data", ids=["TENX1"])


def test_without_wsi_is_counts_only(tmp_path: Path) -> None:
    raw = make_hest(tmp_path / "hest", ids=("S1",), with_wsi=False)
    s = prepare_hest(raw, tmp_path / "data").sections[0]
    assert not s.has_image and np.isnan(s.mpp)


def test_normalised_counts_are_refused(tmp_path: Path) -> None:
    import anndata as ad

    raw = make_hest(tmp_path / "hest", ids=("S1",))
    a = ad.read_h5ad(raw / "st" / "S1.h5ad")
    a.X = a.X * 0.37
    a.write_h5ad(raw / "st" / "S1.h5ad")
    with pytest.raises(DataError, match=r"S1.h5ad: counts are not integers"):
        prepare_hest(raw, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_truncated_wsi(tmp_path: Path) -> None:
    raw = make_hest(tmp_path / "hest", ids=("S1",))
    tif = raw / "wsis" / "S1.tif"
    tif.write_bytes(tif.read_bytes()[:600])
    with pytest.raises(DataError, match=r"S1.tif: truncated or unreadable"):
        prepare_hest(raw, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope: HEST folder not found"):
        prepare_hest(tmp_path / "nope", tmp_path / "data")


@pytest.mark.parametrize("missing", [float("nan"), "", None, "nan"])
def test_missing_patient_falls_back_to_sample_id(tmp_path: Path, caplog, missing) -> None:
    """HEST_v1_1_0.csv has NaN patients (835 of 1,229 rows): each such sample is its own patient."""
    raw = make_hest(tmp_path / "hest")
    for sid in ("TENX1", "NCBI2"):
        path = raw / "metadata" / f"{sid}.json"
        meta = json.loads(path.read_text())
        meta["patient"] = missing
        path.write_text(json.dumps(meta))  # NaN is written as JSON NaN, as pandas' to_json would not
    with caplog.at_level("WARNING"):
        report = prepare_hest(raw, tmp_path / "data")
    assert sorted(s.patient for s in report.sections) == ["NCBI2", "TENX1"]
    assert "no patient in HEST metadata" in caplog.text
    a = read_section(tmp_path / "data" / "hest" / "TENX1.h5ad")
    assert set(a.obs["patient"]) == {"TENX1"} and a.uns["hagekit"]["patient"] == "TENX1"
