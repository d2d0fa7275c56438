"""Spot extraction end to end on tiny sections: outputs, provenance, resume, failures, CLI."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from clitext import flat
from PIL import Image
from typer.testing import CliRunner

from hagekit.data.section import SectionImage, SectionLabels, make_section, write_section
from hagekit.errors import ConfigError, DataError
from hagekit.extract import EncoderSpec, ExtractionSpec, encode_images, extract_sections
from hagekit.io.h5 import read_features

runner = CliRunner()


def _write_section(root, name, *, image=True, centres=None, mpp=1.0, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "toy"
    folder.mkdir(parents=True, exist_ok=True)
    img_path = None
    if image:
        img = np.full((300, 400, 3), 240, np.uint8)
        img[50:250, 60:340] = rng.integers(80, 220, (200, 280, 3))
        img_path = folder / "images" / f"{name}.png"
        img_path.parent.mkdir(exist_ok=True)
        Image.fromarray(img).save(img_path)
    if centres is None:
        centres = np.array([[100.0, 100.0], [200.0, 150.0], [300.0, 200.0], [5.0, 5.0], [150.0, 80.0]])
    n = len(centres)
    barcodes = [f"{name}_{i:02d}" for i in range(n)][::-1]  # non-sorted order must be kept
    adata = make_section(rng.integers(0, 5, (n, 3)), barcodes, ["G1", "G2", "G3"], centres,
        SectionLabels(dataset="toy", section=name, patient=name[0]),
        image=SectionImage(path=img_path, mpp=mpp if image else None))
    write_section(adata, folder / f"{name}.h5ad")
    return barcodes


@pytest.fixture()
def toy(tmp_path):
    root = tmp_path / "data"
    _write_section(root, "A1", seed=1)
    _write_section(root, "A2", seed=2, mpp=0.5)
    _write_section(root, "B1", image=False)
    return root


def test_outputs_provenance_and_resume(toy, tmp_path):
    out = tmp_path / "feats"
    s = extract_sections(toy, "toy", encoder=EncoderSpec(batch_size=2, num_workers=0), spec=ExtractionSpec(out_dir=out))
    assert [(i.name, i.status) for i in s.items] == [("A1", "done"), ("A2", "done"), ("B1", "skipped")]
    assert s.ok and s.n_patches == 10 and s.items[2].reason == "no image"
    f = read_features(out / "A1.h5")
    assert f.features.shape == (5, 203)
    assert list(f.barcodes) == [f"A1_{i:02d}" for i in range(5)][::-1]
    np.testing.assert_allclose(f.centres[0], [100.0, 100.0])  # spot centre; coords: integer top-left
    assert f.coords.dtype == np.int64 and f.coords[0].tolist() == [44, 44]
    assert f.coords_attrs["patch_size_level0"] == 112 and f.coords_attrs["patch_level"] == 0
    a = f.attrs
    assert a["encoder"] == "builtin" and a["feature_dim"] == 203 and a["input_size"] == 128
    assert a["patch_size_um"] == 112.0 and a["patch_size_px"] == 112.0 and a["mpp"] == 1.0
    assert a["dataset"] == "toy" and a["section"] == "A1" and a["random_weights"] is False
    assert len(a["encoder_weights_sha256"]) == 64 and a["hagekit_version"]
    assert read_features(out / "A2.h5").attrs["patch_size_px"] == 224.0  # 112 µm at 0.5 µm/px
    assert not list(out.glob(".*tmp*"))
    mtime = (out / "A1.h5").stat().st_mtime_ns
    again = extract_sections(toy, "toy", encoder=EncoderSpec(num_workers=0), spec=ExtractionSpec(out_dir=out))
    assert [i.status for i in again.items] == ["skipped", "skipped", "skipped"]
    assert (out / "A1.h5").stat().st_mtime_ns == mtime
    redo = extract_sections(toy, "toy", encoder=EncoderSpec(num_workers=0), spec=ExtractionSpec(out_dir=out, overwrite=True), sections=["A1"])
    assert [i.status for i in redo.items] == ["done"]
    np.testing.assert_allclose(read_features(out / "A1.h5").features, f.features, rtol=1e-5, atol=1e-7)


def test_workers_give_the_same_features(toy, tmp_path):
    a = extract_sections(toy, "toy", encoder=EncoderSpec(batch_size=2, num_workers=0), spec=ExtractionSpec(out_dir=tmp_path / "a"), sections=["A1"])
    b = extract_sections(toy, "toy", encoder=EncoderSpec(batch_size=2, num_workers=1), spec=ExtractionSpec(out_dir=tmp_path / "b"), sections=["A1"])
    assert a.ok and b.ok
    np.testing.assert_allclose(
        read_features(tmp_path / "a" / "A1.h5").features, read_features(tmp_path / "b" / "A1.h5").features, rtol=1e-5, atol=1e-6
    )


def test_outside_spots_fail_alone(toy, tmp_path):
    _write_section(toy, "C1", centres=np.array([[10.0, 10.0], [500.0, 20.0], [20.0, 900.0]]))
    s = extract_sections(toy, "toy", encoder=EncoderSpec(num_workers=0), spec=ExtractionSpec(out_dir=tmp_path / "f"), sections=["A1", "C1"])
    status = {i.name: i for i in s.items}
    assert status["C1"].status == "failed" and "2 of 3 spot centres lie outside the 400 x 300 px image" in status["C1"].reason
    assert status["A1"].status == "done" and not s.ok
    assert not (tmp_path / "f" / "C1.h5").exists()


def test_existing_file_from_another_encoder_is_not_reused(toy, tmp_path):
    out = tmp_path / "f"
    extract_sections(toy, "toy", encoder=EncoderSpec(num_workers=0), spec=ExtractionSpec(out_dir=out), sections=["A1"])
    s = extract_sections(toy, "toy", encoder=EncoderSpec(num_workers=0), spec=ExtractionSpec(out_dir=out, patch_um=56.0), sections=["A1"])
    assert s.items[0].status == "failed" and "patch_size_um=112.0, not 56.0" in s.items[0].reason


def test_bad_options(toy, tmp_path):
    with pytest.raises(ConfigError, match=r"--sections: unknown Z9 \(valid: A1, A2, B1\)"):
        extract_sections(toy, "toy", spec=ExtractionSpec(out_dir=tmp_path / "f"), sections=["Z9"])
    with pytest.raises(ConfigError, match="--patch-um"):
        extract_sections(toy, "toy", spec=ExtractionSpec(out_dir=tmp_path / "f", patch_um=0))
    with pytest.raises(DataError, match="no prepared dataset"):
        extract_sections(toy, "other", spec=ExtractionSpec(out_dir=tmp_path / "f"))
    with pytest.raises(ConfigError, match="--device"):
        extract_sections(toy, "toy", encoder=EncoderSpec(device="tpu"), spec=ExtractionSpec(out_dir=tmp_path / "f"))
    assert not (tmp_path / "f").exists()


def test_dump_patches_hest_layout(toy, tmp_path):
    out = tmp_path / "f"
    extract_sections(toy, "toy", encoder=EncoderSpec(num_workers=0), spec=ExtractionSpec(out_dir=out, dump_patches=True), sections=["A1"])
    with h5py.File(out / "patches" / "A1.h5") as h5:
        # HEST's layout whatever the encoder's input size (128 here): 224 px at 0.5 µm/px
        assert h5["img"].shape == (5, 224, 224, 3) and h5["img"].dtype == np.uint8
        assert h5["coords"].shape == (5, 2) and h5["coords"].dtype.kind == "i" and h5["barcode"].shape == (5, 1)
        assert h5["img"].attrs["patch_size_target"] == 224 and h5["img"].attrs["patch_size_src"] == 112  # 112 µm at 1 µm/px
        assert h5["barcode"][0, 0].decode() == "A1_04"
        assert h5["coords"][0].tolist() == [44, 44]  # centre (100, 100) - src // 2, as HEST
        corner = h5["img"][3]  # spot at (5, 5): 112 µm patch mostly off the image -> white
        assert (corner[:90, :90] == 255).all()


def test_timm_vit_same_code_path_random_weights(toy, tmp_path):
    out = tmp_path / "vit"
    vit = EncoderSpec("timm:vit_tiny_patch16_224", random_weights=True, num_workers=0)
    s = extract_sections(toy, "toy", encoder=vit, spec=ExtractionSpec(out_dir=out), sections=["A1"])
    assert s.ok
    f = read_features(out / "A1.h5")
    assert f.features.shape == (5, 192)
    assert f.attrs["random_weights"] is True and f.attrs["encoder_weights_sha256"] == "random-init"
    assert f.attrs["encoder"] == "timm:vit_tiny_patch16_224" and f.attrs["input_size"] == 224


def test_encode_images_matches_batches():
    from hagekit.encoders import create_encoder

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (5, 96, 96, 3)).astype(np.uint8)
    b = create_encoder("builtin")
    a = encode_images(b, imgs, batch_size=2)
    c = encode_images(b, list(imgs), batch_size=5)
    assert a.shape == (5, 203) and a.dtype == np.float32
    np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="images"):
        encode_images(b, imgs[..., 0])


def test_cli_extract_spots(toy, tmp_path):
    from hagekit.cli.main import app

    out = tmp_path / "f"
    r = runner.invoke(app, ["extract", "--data-root", str(toy), "--dataset", "toy", "--out", str(out), "--num-workers", "0"])
    assert r.exit_code == 0, r.output
    assert "2 done, 1 skipped, 0 failed" in flat(r.output)
    r = runner.invoke(app, ["extract", "--data-root", str(toy), "--dataset", "toy", "--out", str(out)])
    assert r.exit_code == 0 and "0 done, 3 skipped" in r.output


def test_cli_workspace_default_output(tmp_path):
    from hagekit.cli.main import app

    ws = tmp_path / "ws"
    _write_section(ws / "data", "A1")
    r = runner.invoke(app, ["extract", "--workspace", str(ws), "--dataset", "toy", "--sections", "A1", "--num-workers", "0"])
    assert r.exit_code == 0, r.output
    assert (ws / "features" / "toy" / "builtin" / "A1.h5").is_file()


def test_cli_bad_input_exit_2(toy, tmp_path):
    from hagekit.cli.main import app

    out = tmp_path / "f"
    cases = [
        (["extract", "--out", str(out)], "either --dataset"),
        (["extract", "--dataset", "toy", "--data-root", str(toy), "--preview", "--out", str(out)], "--preview: only apply with --slides"),
        (["extract", "--dataset", "toy", "--data-root", str(toy), "--encoder", "nope", "--out", str(out)], "unknown encoder 'nope'"),
        (["extract", "--dataset", "toy", "--data-root", str(toy), "--sections", "Q", "--out", str(out)], "--sections: unknown Q"),
    ]
    for args, msg in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert msg in flat(r.output)
    assert not out.exists()


def test_cli_failed_section_exit_1(toy, tmp_path):
    from hagekit.cli.main import app

    _write_section(toy, "C1", centres=np.array([[10.0, 10.0], [500.0, 20.0]]))
    r = runner.invoke(
        app, ["extract", "--data-root", str(toy), "--dataset", "toy", "--sections", "A1,C1", "--out", str(tmp_path / "f"), "--num-workers", "0"]
    )
    assert r.exit_code == 1
    assert "failed" in r.output and "1 of 2 spot centres" in flat(r.output)


def test_interrupted_run_resumes(toy, tmp_path):
    """A crash leaves only a hidden temporary file; the rerun computes the section."""
    out = tmp_path / "f"
    out.mkdir()
    (out / ".A1.tmp-99999.h5").write_bytes(b"partial")
    s = extract_sections(toy, "toy", encoder=EncoderSpec(num_workers=0), spec=ExtractionSpec(out_dir=out), sections=["A1"])
    assert s.items[0].status == "done"
    assert read_features(out / "A1.h5").features.shape == (5, 203)
