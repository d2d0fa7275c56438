"""Spot features for the real her2st sections C2..C6 (full-resolution JPEGs) with builtin."""

from __future__ import annotations

import numpy as np
import pytest

SECTIONS = ["C2", "C3", "C4", "C5", "C6"]


@pytest.fixture(scope="module")
def her2_features(her2_root, her2_builtin_features):
    """The session's C2..C6 features (conftest), and a rerun that must skip every section."""
    from hagekit.extract import EncoderSpec, ExtractionSpec, extract_sections

    rerun = extract_sections(her2_root, "her2", encoder=EncoderSpec(num_workers=0), spec=ExtractionSpec(out_dir=her2_builtin_features))
    return her2_root, her2_builtin_features, rerun


def test_c2_to_c6_spot_features(her2_features):
    from hagekit.data.section import read_section
    from hagekit.encoders.builtin import BuiltinDescriptor
    from hagekit.io.h5 import read_features

    root, out, summary = her2_features
    imaged = [(i.name, i.status) for i in summary.items if i.reason != "no image"]
    assert imaged == [(s, "skipped") for s in SECTIONS], summary.items
    assert not summary.failed
    names = BuiltinDescriptor.feature_names()
    tissue = names.index("tissue_fraction")
    for s in SECTIONS:
        adata = read_section(root / "her2" / f"{s}.h5ad", backed=True)
        f = read_features(out / f"{s}.h5")
        assert list(f.barcodes) == list(adata.obs_names)
        np.testing.assert_allclose(f.centres, adata.obsm["spatial"])
        assert f.coords.dtype == np.int64  # integer top-left corners, as every WSI tool
        np.testing.assert_allclose(f.coords + f.coords_attrs["patch_size_level0"] / 2, adata.obsm["spatial"], atol=1.0)
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
    from hagekit.extract import ExtractionSpec, extract_sections

    root, out, _ = her2_features
    again = extract_sections(root, "her2", spec=ExtractionSpec(out_dir=out), sections=SECTIONS)
    assert [i.status for i in again.items] == ["skipped"] * 5 and again.seconds < 5
