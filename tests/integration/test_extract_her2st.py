"""Spot features for the real her2st sections C2..C6 (full-resolution JPEGs) with builtin."""

from __future__ import annotations

import numpy as np
import pytest

SECTIONS = ["C2", "C3", "C4", "C5", "C6"]


@pytest.fixture(scope="module")
def her2_features(her2st_raw, tmp_path_factory):
    from hagekit.data.her2st import prepare_her2st
    from hagekit.extract import extract_sections

    root = tmp_path_factory.mktemp("her2")
    prepare_her2st(her2st_raw, root / "data", sections=SECTIONS)
    out = root / "features"
    summary = extract_sections(root / "data", "her2", out_dir=out)
    return root, out, summary


def test_c2_to_c6_spot_features(her2_features):
    from hagekit.data.section import read_section
    from hagekit.encoders.builtin import BuiltinDescriptor
    from hagekit.io.h5 import read_features

    root, out, summary = her2_features
    assert [(i.name, i.status) for i in summary.items] == [(s, "done") for s in SECTIONS], summary.items
    names = BuiltinDescriptor.feature_names()
    tissue = names.index("tissue_fraction")
    for s in SECTIONS:
        adata = read_section(root / "data" / "her2" / f"{s}.h5ad", backed=True)
        f = read_features(out / f"{s}.h5")
        assert list(f.barcodes) == list(adata.obs_names)
        np.testing.assert_allclose(f.coords, adata.obsm["spatial"])
        mpp = float(adata.uns["hagekit"]["mpp"])
        adata.file.close()
        assert 0.6 < mpp < 0.9
        assert f.features.shape == (len(f.barcodes), 203) and np.isfinite(f.features).all()
        assert f.attrs["patch_size_px"] == pytest.approx(112.0 / mpp)
        assert f.attrs["section"] == s and f.attrs["dataset"] == "her2"
        # spots sit on tissue: most patches are mostly stained, and spots differ from each other
        assert np.median(f.features[:, tissue]) > 0.5
        assert (f.features.std(0) > 0).sum() > 150


def test_rerun_skips_without_building_the_encoder(her2_features):
    from hagekit.extract import extract_sections

    root, out, _ = her2_features
    again = extract_sections(root / "data", "her2", out_dir=out)
    assert [i.status for i in again.items] == ["skipped"] * 5 and again.seconds < 5
