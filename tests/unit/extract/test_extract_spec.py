"""The extraction value objects: validation, the options each mode owns, the library's default folder."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from hagekit.errors import ConfigError, DataError
from hagekit.extract import EncoderSpec, ExtractionSpec, TilingSpec, extract_slides


def test_encoder_spec_from_a_name_and_its_checks():
    assert EncoderSpec.of(" uni ") == EncoderSpec(name=" uni ") and EncoderSpec.of("uni").key == "uni"
    spec = EncoderSpec("builtin", batch_size=8)
    assert EncoderSpec.of(spec) is spec
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.batch_size = 4  # type: ignore[misc]
    EncoderSpec().validate()
    for bad, flag in ((EncoderSpec(batch_size=0), "--batch-size"), (EncoderSpec(precision="int8"), "--precision"),
                      (EncoderSpec(num_workers=-1), "--num-workers")):
        with pytest.raises(ConfigError, match=flag):
            bad.validate()


def test_tiling_spec_checks_and_resolution(tmp_path):
    assert TilingSpec().resolved_target_mpp() == 0.5
    assert TilingSpec(target_mpp=1.0).resolved_target_mpp() == 1.0
    assert TilingSpec(magnification=40).resolved_target_mpp() == 0.25
    TilingSpec().validate()
    cases = [(TilingSpec(tile_size=4), "--tile-size"), (TilingSpec(tile_size=64, overlap=64), "--overlap"),
             (TilingSpec(min_tissue=1.5), "--min-tissue"), (TilingSpec(mpp=0), "--mpp")]
    for bad, flag in cases:
        with pytest.raises(ConfigError, match=flag):
            bad.validate()
    with pytest.raises(DataError, match="--coords folder not found"):
        TilingSpec(coords_dir=tmp_path / "nope").validate()


def test_each_mode_names_the_options_it_does_not_take():
    assert TilingSpec().options_given() == [] and ExtractionSpec().spot_options_given() == []
    tiling = TilingSpec(mpp=0.25, tile_size=512, min_tissue=0.5, preview=True)
    assert tiling.options_given() == ["--mpp", "--preview", "--tile-size", "--min-tissue"]
    assert ExtractionSpec(patch_um=56.0, dump_patches=True).spot_options_given() == ["--dump-patches", "--patch-um"]
    assert ExtractionSpec(patch_um=112.0).spot_options_given() == []


def test_slides_default_to_the_workspace_folder(tmp_path):
    rng = np.random.default_rng(0)
    img = np.full((192, 192, 3), 243, np.uint8)
    img[32:160, 32:160] = rng.integers(90, 210, (128, 128, 3))
    img[32:160, 32:160, 1] //= 2
    Image.fromarray(img).save(tmp_path / "s.png")
    spec = ExtractionSpec(tiling=TilingSpec(mpp=0.5, tile_size=64))
    s = extract_slides(tmp_path / "s.png", encoder=EncoderSpec(num_workers=0), spec=spec, workspace=tmp_path / "ws")
    assert s.ok and s.out_dir == tmp_path / "ws" / "features" / "slides" / "builtin"
    assert (s.out_dir / "s.h5").is_file()
