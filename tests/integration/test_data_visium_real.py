"""Visium ``outs/`` as Space Ranger writes them: the real CytAssist (Matrix Market, 2.x positions,
lowres only) and Seurat brain (1.x, .h5, blank images) folders, and an ``outs/`` built here from a
HER2ST section (hires PNG + scale factors + 10x .h5) whose truth is known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hagekit.data.section import read_section
from hagekit.data.visium import VisiumSection, prepare_visium
from hagekit.errors import DataError


def _outs(shared_data: Path, name: str) -> Path:
    path = shared_data / name / "outs"
    if not path.is_dir():
        pytest.skip(f"{path} not available")
    return path


def test_cytassist_mtx_folder_and_lowres_image(shared_data: Path, tmp_path: Path, caplog) -> None:
    outs = _outs(shared_data, "visium-cytassist-mouse")
    s = prepare_visium(outs, tmp_path, VisiumSection("cyt")).sections[0]
    assert (s.n_spots, s.n_genes, s.has_image) == (2898, 19465, True)
    # no hires image: the lowres one (scale 0.2) with 55 µm / (14.965 px x 0.2) = 18.4 µm/px
    assert s.mpp == pytest.approx(55.0 / (14.964878633873417 * 0.2))
    assert "is the lowres image (scale factor 0.2)" in caplog.text
    a = read_section(tmp_path / "visium" / "cyt.h5ad")
    np.testing.assert_allclose(a.obsm["spatial"], a.obsm["spatial_fullres"] * 0.2)
    assert a.obsm["spatial"].max() < 600 and a.var["gene_ids"].iloc[0].startswith("ENSMUSG")


def test_cytassist_full_resolution_camera_image_is_recognised(shared_data: Path, tmp_path: Path) -> None:
    outs = _outs(shared_data, "visium-cytassist-mouse")
    cam = outs / "spatial" / "detected_tissue_image.jpg"  # 3000 x 3000: full-res scale (not H&E)
    s = prepare_visium(outs, tmp_path, VisiumSection("cam", image=cam)).sections[0]
    assert s.mpp == pytest.approx(55.0 / 14.964878633873417)


def test_seurat_brain_1x_h5_with_blank_images(shared_data: Path, tmp_path: Path, caplog) -> None:
    outs = _outs(shared_data, "visium-seurat-brain")
    s = prepare_visium(outs, tmp_path, VisiumSection("brain")).sections[0]
    # both PNGs are blank (blanked upstream): counts only, said so; named explicitly: refused
    assert (s.n_spots, s.n_genes, s.has_image) == (2695, 100, False)
    assert "blank image (one colour), not used" in caplog.text
    with pytest.raises(DataError, match=r"tissue_hires_image.png: the image is blank"):
        prepare_visium(outs, tmp_path, VisiumSection("brain2", image=outs / "spatial" / "tissue_hires_image.png"))


def write_10x_h5(path: Path, barcodes: list[str], genes: list[str], counts) -> None:
    """Space Ranger's feature-barcode HDF5 exactly: root attributes, CSC genes x barcodes,
    features with id / name / feature_type / genome and ``_all_tag_keys``."""
    import h5py
    import scipy.sparse as sp

    m = sp.csc_matrix(sp.csr_matrix(counts).T)
    with h5py.File(path, "w") as fh:
        fh.attrs.update({"filetype": "matrix", "version": 2, "library_ids": np.array([b"C2"]),
                         "chemistry_description": "Spatial 3' v1", "original_gem_groups": np.array([1]),
                         "software_version": "spaceranger-1.3.1"})
        g = fh.create_group("matrix")
        g.create_dataset("barcodes", data=np.array(barcodes, dtype="S"), compression="gzip")
        g.create_dataset("data", data=m.data.astype(np.int32), compression="gzip")
        g.create_dataset("indices", data=m.indices.astype(np.int64), compression="gzip")
        g.create_dataset("indptr", data=m.indptr.astype(np.int64), compression="gzip")
        g.create_dataset("shape", data=np.array(m.shape, dtype=np.int32))
        f = g.create_group("features")
        f.create_dataset("_all_tag_keys", data=np.array([b"genome"]))
        f.create_dataset("feature_type", data=np.array([b"Gene Expression"] * len(genes)), compression="gzip")
        f.create_dataset("genome", data=np.array([b"GRCh38"] * len(genes)), compression="gzip")
        f.create_dataset("id", data=np.array([f"ENSG{i:011d}" for i in range(len(genes))], dtype="S"), compression="gzip")
        f.create_dataset("name", data=np.array(genes, dtype="S"), compression="gzip")


def _visium_from_her2st(her2st_raw: Path, outs: Path) -> dict:
    """Space Ranger's layout for HER2ST section C2: 10x .h5, positions in full-res px, a hires
    PNG (longest side 2000, as Space Ranger makes it) and the scale factors."""
    from PIL import Image

    from hagekit.data.her2st import find_her2st_sections

    truth = find_her2st_sections(her2st_raw, ["C2"])[0].build()
    spatial = outs / "spatial"
    spatial.mkdir(parents=True)
    barcodes = [f"{b}-1" for b in truth.obs_names]
    write_10x_h5(outs / "filtered_feature_bc_matrix.h5", barcodes, list(truth.var_names), truth.X.toarray())
    xy = truth.obsm["spatial"]
    rows = [f"{b},1,{ay},{ax},{float(y)!r},{float(x)!r}" for b, ax, ay, (x, y) in
            zip(barcodes, truth.obs["array_x"], truth.obs["array_y"], xy, strict=True)]
    (spatial / "tissue_positions_list.csv").write_text("\n".join(rows) + "\n")
    with Image.open(truth.uns["hagekit"]["image_path"]) as im:
        full = im.size
        scalef = 2000 / max(full)
        hires_size = (round(full[0] * scalef), round(full[1] * scalef))
        im.draft("RGB", (full[0] // 4, full[1] // 4))
        im.convert("RGB").resize(hires_size, Image.LANCZOS).save(spatial / "tissue_hires_image.png")
    mpp = float(truth.uns["hagekit"]["mpp"])
    (spatial / "scalefactors_json.json").write_text(json.dumps({
        "spot_diameter_fullres": 55.0 / mpp, "fiducial_diameter_fullres": 1.6 * 55.0 / mpp,
        "tissue_hires_scalef": scalef, "tissue_lowres_scalef": 600 / max(full),
    }))
    return {"xy": xy, "scalef": scalef, "hires_mpp": mpp * full[0] / hires_size[0], "barcodes": barcodes}


def test_her2st_section_as_space_ranger_outs(her2st_raw: Path, tmp_path: Path) -> None:
    truth = _visium_from_her2st(her2st_raw, tmp_path / "outs")
    s = prepare_visium(tmp_path / "outs", tmp_path / "data", VisiumSection("C2")).sections[0]
    a = read_section(tmp_path / "data" / "visium" / "C2.h5ad")
    order = [truth["barcodes"].index(b) for b in a.obs_names]
    np.testing.assert_allclose(a.obsm["spatial"], truth["xy"][order] * truth["scalef"])
    assert s.mpp == pytest.approx(truth["hires_mpp"], rel=0.02)
    assert a.uns["hagekit"]["image_resolution"] == "hires"
