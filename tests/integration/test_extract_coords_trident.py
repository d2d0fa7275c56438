"""`extract --coords` follows a TRIDENT coords file: 512 px at 20x gives features of 512 px regions."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _trident_coords(job_dir: Path, name: str, coords: np.ndarray, *, patch_size: int, mag: int, target_mag: int) -> Path:
    """A coords file as TRIDENT's ``extract_tissue_coords`` saves it: ``<job>/patches/<name>_patches.h5``,
    dataset ``coords`` with its attributes (patch_size at target_magnification, patch_size_level0, ...)."""
    import h5py

    path = job_dir / "patches" / f"{name}_patches.h5"
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as h5:
        ds = h5.create_dataset("coords", data=np.asarray(coords, dtype=np.int64))
        ds.attrs.update({"patch_size": patch_size, "patch_size_level0": patch_size * mag // target_mag,
                         "level0_magnification": mag, "target_magnification": target_mag, "overlap": 0,
                         "name": name, "savetodir": str(job_dir)})
    return path


def test_trident_512_px_at_20x(wsi_dir: Path, tmp_path: Path, caplog) -> None:
    from hagekit.extract import EncoderSpec, ExtractionSpec, TilingSpec, extract_slides
    from hagekit.io.h5 import read_features

    slide = wsi_dir / "cmu-1-small-region.svs"  # 0.499 µm/px: 20x at level 0
    coords = np.array([[0, 0], [512, 512], [1024, 1536], [1536, 2048]])
    _trident_coords(tmp_path / "job", slide.stem, coords, patch_size=512, mag=20, target_mag=20)
    runs = {}
    for label, tile in (("file", None), ("same", 512), ("other", 256)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="hagekit"):
            tiling = TilingSpec(tile_size=tile, coords_dir=tmp_path / "job")
            s = extract_slides(slide, encoder=EncoderSpec(device="cpu", num_workers=0),
                               spec=ExtractionSpec(out_dir=tmp_path / label, tiling=tiling))
        assert not s.failed
        runs[label] = (read_features(tmp_path / label / f"{slide.stem}.h5"), caplog.text)
    f, log_text = runs["file"]
    np.testing.assert_array_equal(f.coords, coords)
    a = f.coords_attrs
    assert (a["patch_size"], a["patch_size_level0"], a["read_size"]) == (512, 512, 512)
    assert a["target_magnification"] == 20.0 and a["level0_magnification"] == 20.0
    assert f.attrs["patch_size_px"] == 512 and "disagrees" not in log_text
    # the same as asking for 512 explicitly; 256 reads the same regions, shrunk, and says so
    np.testing.assert_array_equal(runs["same"][0].features, f.features)
    other, other_log = runs["other"]
    assert other.coords_attrs["patch_size"] == 256 and other.coords_attrs["patch_size_level0"] == 512
    assert other.coords_attrs["target_magnification"] == 10.0  # what an unasked 256 used to record silently
    assert "--tile-size 256 disagrees with the coords file's patch_size 512" in other_log
