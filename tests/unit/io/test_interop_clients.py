"""Our files as other tools read them, following each tool's documented reading contract
(written from CLAM's, TRIDENT's, scanpy's and squidpy's documented behaviour; no code copied).

- CLAM: ``<dir>/pt_files/<slide>.pt`` loads as an (N, D) tensor; ``<dir>/h5_files/<slide>.h5``
  holds ``features`` and ``coords``; patch readers read ``patch_size`` px at ``patch_level``
  from each integer top-left coord.
- TRIDENT: ``coords`` (N, 2) int with ``patch_size`` (at ``target_magnification``),
  ``level0_magnification``, ``target_magnification``, ``overlap``, ``name``, ``savetodir``,
  ``level0_width``, ``level0_height``; ``features`` with ``name``, ``encoder``, ``savetodir``.
- scanpy ``sc.pl.spatial`` picks ``images["hires"]`` (else ``lowres``) with the matching
  ``tissue_<key>_scalef``; squidpy's ``spatial_scatter`` defaults to ``img_res_key="hires"``.
"""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from PIL import Image

from hagekit.data.section import (
    SectionImage,
    SectionLabels,
    make_section,
    read_section,
    section_image_path,
    write_section,
)
from hagekit.extract import EncoderSpec, ExtractionSpec, extract_sections
from hagekit.io.clam import clam_coords, export_clam

TRIDENT_COORDS = ("patch_size", "patch_size_level0", "level0_magnification", "target_magnification", "overlap",
                  "name", "savetodir", "level0_width", "level0_height")


def _section(root, name="A1", *, mpp=0.8, thumbnail=True):
    rng = np.random.default_rng(0)
    folder = root / "toy"
    img_path = folder / "images" / f"{name}.png"
    img_path.parent.mkdir(parents=True, exist_ok=True)
    img = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(img).save(img_path)
    centres = np.array([[100.3, 120.6], [200.5, 150.5], [300.9, 180.2]])
    thumb = np.asarray(Image.fromarray(img).resize((100, 75))) if thumbnail else None
    adata = make_section(rng.integers(0, 5, (3, 4)), ["s0", "s1", "s2"], ["G1", "G2", "G3", "G4"], centres,
        SectionLabels(dataset="toy", section=name, patient="A"),
        image=SectionImage(path=img_path, mpp=mpp, thumbnail=thumb, thumbnail_scale=0.25 if thumbnail else None))
    write_section(adata, folder / f"{name}.h5ad")
    return root, img, centres


@pytest.fixture()
def spot_feats(tmp_path):
    root, img, centres = _section(tmp_path / "data")
    out = tmp_path / "feats"
    assert extract_sections(root, "toy", encoder=EncoderSpec(num_workers=0), spec=ExtractionSpec(out_dir=out)).ok
    return out, img, centres


def test_spot_features_trident_contract(spot_feats):
    out, img, centres = spot_feats
    with h5py.File(out / "A1.h5") as h5:
        c, ca, fa = h5["coords"], dict(h5["coords"].attrs), dict(h5["features"].attrs)
        assert c.dtype.kind == "i" and c.shape == (3, 2)  # TRIDENT: custom_coords must be (N, 2) int
        assert set(TRIDENT_COORDS) <= set(ca)
        assert (ca["level0_width"], ca["level0_height"]) == (400, 300)
        assert fa["encoder"] == "builtin" and fa["name"] == "A1" and fa["savetodir"] == str(out.resolve())
        np.testing.assert_allclose(h5["centres"][:], centres)
        # TRIDENT: patch_size px at target_magnification cover patch_size_level0 level-0 px
        size0 = ca["patch_size"] * ca["level0_magnification"] / ca["target_magnification"]
        assert size0 == pytest.approx(ca["patch_size_level0"]) and ca["patch_size_level0"] == round(112 / 0.8)


def test_spot_features_clam_reads_the_encoded_tissue(spot_feats):
    """CLAM reads patch_size px at patch_level from the top-left coord: the 112 µm box around each spot."""
    out, img, centres = spot_feats
    with h5py.File(out / "A1.h5") as h5:
        coords, ca = h5["coords"][:], dict(h5["coords"].attrs)
    assert ca["patch_level"] == 0
    size = int(ca["patch_size"])
    assert abs(size - 112 / 0.8) <= 0.5  # the tissue size at level 0, not the encoder's 128 px input
    np.testing.assert_allclose(coords + size / 2, centres, atol=1.0)  # box centred on the spot (<= 1 px)
    x, y = coords[0]
    patch = img[y:y + size, x:x + size]  # what CLAM's read_region(coord, 0, (size, size)) returns
    assert patch.shape == (size, size, 3)


def test_clam_layout_loads_as_clams_datasets(spot_feats, tmp_path):
    import torch

    from hagekit.io.h5 import read_features

    out, _, _ = spot_feats
    clam = tmp_path / "clam"
    res = export_clam(out, clam)
    assert res.written == ["A1"]
    ours = read_features(out / "A1.h5")
    feats = torch.load(clam / "pt_files" / "A1.pt", weights_only=True)  # Generic_MIL_Dataset, use_h5=False
    assert isinstance(feats, torch.Tensor) and tuple(feats.shape) == (3, ours.dim)
    np.testing.assert_array_equal(feats.numpy(), ours.features)
    with h5py.File(clam / "h5_files" / "A1.h5") as h5:  # use_h5=True
        np.testing.assert_array_equal(h5["features"][:], ours.features)
        np.testing.assert_array_equal(h5["coords"][:], ours.coords)
        assert h5["coords"].attrs["patch_level"] == 0 and h5["coords"].attrs["patch_size"] == ours.coords_attrs["patch_size_level0"]
    assert export_clam(out, clam).skipped == ["A1"]  # kept unless --overwrite


def test_clam_layout_of_a_slide_without_a_matching_level(tmp_path):
    """A 40x tile (512 level-0 px encoded as 256 at 20x) read at level 0: CLAM's meaning is 512."""
    from hagekit.io.h5 import write_features

    src = tmp_path / "flat"
    attrs = {"patch_size": 256, "patch_size_level0": 512, "patch_level": 0, "downsample": [1.0, 1.0],
             "level0_magnification": 40.0, "target_magnification": 20.0, "name": "s"}
    write_features(src / "s.h5", np.ones((2, 4)), np.array([[0, 0], [512, 0]]), attrs={"encoder": "builtin"}, coords_attrs=attrs)
    export_clam(src, tmp_path / "clam")
    with h5py.File(tmp_path / "clam" / "h5_files" / "s.h5") as h5:
        a = h5["coords"].attrs
        assert (a["patch_level"], a["patch_size"], a["custom_downsample"]) == (0, 512, 2)


def test_cli_layout_clam_and_export_features(tmp_path):
    from clitext import flat
    from typer.testing import CliRunner

    from hagekit.cli.main import app

    root, _, _ = _section(tmp_path / "data")
    out = tmp_path / "f"
    r = CliRunner().invoke(app, ["extract", "--dataset", "toy", "--data-root", str(root), "--out", str(out),
                                 "--num-workers", "0", "--layout", "clam"])
    assert r.exit_code == 0, r.output
    assert (out / "A1.h5").is_file() and (out / "h5_files" / "A1.h5").is_file() and (out / "pt_files" / "A1.pt").is_file()
    r = CliRunner().invoke(app, ["export-features", str(out), "--to", "clam", "--out", str(tmp_path / "c")])
    assert r.exit_code == 0 and "1 written" in flat(r.output)
    r = CliRunner().invoke(app, ["export-features", str(out), "--to", "trident"])
    assert r.exit_code == 2 and "--to: unknown layout 'trident'" in flat(r.stderr)


def test_section_images_under_default_keys(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import scanpy as sc

    root, _, _ = _section(tmp_path / "data")
    a = read_section(root / "toy" / "A1.h5ad")
    lib = a.uns["spatial"]["A1"]
    for key in ("hires", "lowres"):  # squidpy img_res_key="hires"; scanpy takes hires first
        assert lib["images"][key].shape == (75, 100, 3) and lib["scalefactors"][f"tissue_{key}_scalef"] == 0.25
    sc.pl.spatial(a, color="G1", show=False)  # default img_key, library_id
    bare = make_section(np.ones((1, 1), int), ["s"], ["G"], np.zeros((1, 2)),
        SectionLabels(dataset="t", section="S", patient="P"))
    assert "tissue_hires_scalef" not in bare.uns["spatial"]["S"]["scalefactors"]  # no scale without its image


def test_image_path_is_relative_and_survives_a_move(tmp_path):
    root, _, _ = _section(tmp_path / "data")
    import anndata as ad

    stored = ad.read_h5ad(root / "toy" / "A1.h5ad")
    assert stored.uns["hagekit"]["image_path"] == "images/A1.png"  # relative to the section file
    moved = tmp_path / "elsewhere"
    shutil.move(str(tmp_path / "data"), moved)
    a = read_section(moved / "toy" / "A1.h5ad")
    assert a.uns["hagekit"]["image_path"] == str((moved / "toy" / "images" / "A1.png").resolve())
    assert extract_sections(moved, "toy", encoder=EncoderSpec(num_workers=0), spec=ExtractionSpec(out_dir=tmp_path / "f")).ok
    # an older file with an absolute path still reads
    a.uns["hagekit"]["image_path"] = str((moved / "toy" / "images" / "A1.png").resolve())
    a.write_h5ad(moved / "toy" / "old.h5ad")
    old = read_section(moved / "toy" / "old.h5ad")
    assert section_image_path(old, tmp_path / "anywhere.h5ad") == (moved / "toy" / "images" / "A1.png").resolve()


def test_spot_centres_of_new_old_and_foreign_files(spot_feats, tmp_path):
    from hagekit.io.h5 import read_features, write_features

    out, _, centres = spot_feats
    np.testing.assert_allclose(read_features(out / "A1.h5").spot_centres, centres)
    old = write_features(tmp_path / "old.h5", np.ones((3, 2)), centres, attrs={"encoder": "builtin"},
                         coords_attrs={"anchor": "centre", "patch_size_level0": 140})
    np.testing.assert_allclose(read_features(old).spot_centres, centres)  # older files: coords were centres
    tiles = write_features(tmp_path / "t.h5", np.ones((1, 2)), np.array([[0, 512]]), attrs={"encoder": "x"},
                           coords_attrs={"patch_size_level0": 512})
    np.testing.assert_allclose(read_features(tiles).spot_centres, [[256.0, 768.0]])
    # an older spot file converts to CLAM's top-left corners
    coords, attrs = clam_coords(read_features(old).coords, read_features(old).coords_attrs)
    np.testing.assert_array_equal(coords, np.round(centres - 70).astype(np.int64))
    assert attrs["anchor"] == "top-left" and attrs["patch_size"] == 140
