"""Encoder registry: names, errors, the ge: seam, timm/UNI configs and strict weight loading."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from clitext import flat

from hagekit.encoders import (
    EncoderBundle,
    create_encoder,
    list_encoders,
    register_encoder,
    unregister_encoder,
)
from hagekit.encoders.weights import (
    RANDOM_WEIGHTS_SHA,
    check_keys,
    load_weights,
    read_state_dict,
    sha256_file,
)
from hagekit.errors import EncoderError


def test_list_has_builtins():
    names = list_encoders()
    for name in ("builtin", "uni", "uni2-h", "resnet50-trunc", "timm:<name>", "ge:<run>"):
        assert name in names


def test_unknown_encoder_lists_valid_ones():
    with pytest.raises(EncoderError, match=r"unknown encoder 'nope' \(valid: builtin, .*uni"):
        create_encoder("nope")


def test_timm_prefix_needs_a_name_and_a_real_model():
    with pytest.raises(EncoderError, match="needs a name"):
        create_encoder("timm:")
    with pytest.raises(EncoderError, match="timm has no such model"):
        create_encoder("timm:not_a_model_xyz", random_weights=True)


def test_duplicate_registration_raises_and_custom_encoder_builds():
    with pytest.raises(EncoderError, match="already registered"):
        register_encoder("builtin")(lambda arg, **kw: None)

    @register_encoder("test-mean-rgb", dim=3, input_size=8)
    def _build(arg, *, weights, random_weights, device):
        from hagekit.encoders.transforms import ImageTransform

        class MeanRGB(torch.nn.Module):
            def forward(self, x):
                return x.mean(dim=(2, 3))

        return EncoderBundle("test-mean-rgb", MeanRGB(), ImageTransform(8, (0, 0, 0), (1, 1, 1)), 3, 8, "x", False)

    try:
        b = create_encoder("test-mean-rgb")
        assert b.config["spec"] == "test-mean-rgb"
        x = b.transform(np.full((16, 16, 3), 255, np.uint8))
        assert torch.allclose(b.model(x[None]), torch.ones(1, 3))
    finally:
        unregister_encoder("test-mean-rgb")


def test_weights_and_random_exclude_each_other(tmp_path):
    with pytest.raises(EncoderError, match="exclude each other"):
        create_encoder("timm:vit_tiny_patch16_224", weights=tmp_path / "w.bin", random_weights=True)
    with pytest.raises(EncoderError, match="weights file not found"):
        create_encoder("timm:vit_tiny_patch16_224", weights=tmp_path / "missing.safetensors")


def test_uni_without_weights_or_token_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(EncoderError, match=r"--weights PATH.*HF_TOKEN"):
        create_encoder("uni")


def test_plugins_register_through_the_entry_point_group(tmp_path, monkeypatch):
    """A module named by the ``hagekit.encoders`` entry-point group registers on first use; a
    broken plugin is logged and the other encoders stay available."""
    from toys.plugins import fake_distribution

    from hagekit.encoders import registry

    fake_distribution(tmp_path, "hagekit-test-plugin",
                      "[hagekit.encoders]\nmean = hagekit_test_plugin\nbroken = hagekit_test_missing_module\n")
    (tmp_path / "hagekit_test_plugin.py").write_text(
        "from hagekit.encoders import register_encoder\n"
        "@register_encoder('test-plugin:', dim=3, usage='test-plugin:<x>')\n"
        "def build(arg, *, weights, random_weights, device):\n"
        "    raise RuntimeError(arg)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry.ENCODERS, "_loaded", False)
    try:
        names = list_encoders()
        assert "test-plugin:<x>" in names and "builtin" in names and "ge:<run>" in names
        with pytest.raises(RuntimeError, match="abc"):
            create_encoder("test-plugin:abc")
    finally:
        unregister_encoder("test-plugin:")
        sys.modules.pop("hagekit_test_plugin", None)


def test_ge_refuses_weights_flags(tmp_path):
    with pytest.raises(EncoderError, match="weights come from the run"):
        create_encoder(f"ge:{tmp_path}", random_weights=True)


def test_uni_and_uni2h_configs_on_meta():
    """The model-card architectures, built on the meta device (no 300M-parameter init)."""
    from hagekit.encoders.timm_models import UNI2H_KWARGS, UNI_KWARGS, _create

    uni = _create("vit_large_patch16_224", UNI_KWARGS, device="meta")
    assert uni.num_features == 1024 and uni.patch_embed.patch_size == (16, 16)
    assert sum(p.numel() for p in uni.parameters()) == 303_350_784
    assert uni.blocks[0].ls1.gamma.shape == (1024,)  # LayerScale from init_values
    assert isinstance(uni.head, torch.nn.Identity)
    uni2 = _create("vit_giant_patch14_224", UNI2H_KWARGS, device="meta")
    assert uni2.num_features == 1536 and uni2.num_reg_tokens == 8 and len(uni2.blocks) == 24
    assert 6.0e8 < sum(p.numel() for p in uni2.parameters()) < 7.0e8


@pytest.mark.slow
def test_uni_random_weights_forward_small_input():
    """UNI with --random-weights through create_encoder; dynamic_img_size allows 32 px input."""
    b = create_encoder("uni", random_weights=True)
    assert (b.dim, b.input_size, b.random_weights, b.weights_sha256) == (1024, 224, True, RANDOM_WEIGHTS_SHA)
    assert b.transform.mean == (0.485, 0.456, 0.406)
    with torch.inference_mode():
        out = b.model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 1024) and torch.isfinite(out).all()


@pytest.fixture(scope="module")
def tiny_vit():
    return create_encoder("timm:vit_tiny_patch16_224", random_weights=True)


def test_random_weights_are_seeded(tiny_vit):
    again = create_encoder("timm:vit_tiny_patch16_224", random_weights=True)
    assert torch.equal(again.model.patch_embed.proj.weight, tiny_vit.model.patch_embed.proj.weight)
    assert again.random_weights and again.config["weights_source"] == "random"


@pytest.mark.parametrize("suffix", [".safetensors", ".bin"])
def test_weights_roundtrip_strict(tmp_path, suffix, tiny_vit):
    src = tiny_vit
    state = {k: v.clone() + 0.01 for k, v in src.model.state_dict().items()}
    state["head.weight"] = torch.zeros(10, 192)  # a classifier head the pooled model drops
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    b = create_encoder("timm:vit_tiny_patch16_224", weights=path)
    assert b.weights_sha256 == sha256_file(path) and not b.random_weights
    loaded = b.model.state_dict()
    assert torch.equal(loaded["cls_token"], state["cls_token"])
    x = torch.rand(1, 3, 224, 224)
    with torch.inference_mode():
        assert b.model(x).shape == (1, 192)


def test_key_mismatch_names_missing_unexpected_and_shape(tmp_path, tiny_vit):
    from safetensors.torch import save_file

    model = tiny_vit.model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    del state["norm.weight"]
    state["extra.layer"] = torch.zeros(3)
    state["cls_token"] = torch.zeros(1, 1, 7)
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    with pytest.raises(EncoderError) as err:
        create_encoder("timm:vit_tiny_patch16_224", weights=path)
    msg = str(err.value)
    assert "1 missing keys (norm.weight)" in msg
    assert "1 unexpected keys (extra.layer)" in msg
    assert "cls_token (1, 1, 7) vs (1, 1, 192)" in msg
    assert str(path) in msg


def test_unreadable_and_unknown_weight_files(tmp_path):
    bad = tmp_path / "w.bin"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(EncoderError, match="cannot read weights"):
        read_state_dict(bad)
    odd = tmp_path / "w.onnx"
    odd.write_bytes(b"x")
    with pytest.raises(EncoderError, match="unknown weights format"):
        read_state_dict(odd)


def test_check_keys_ignores_dropped_heads():
    a = {"w": torch.zeros(2)}
    check_keys(a, {"w": torch.zeros(2), "head.weight": torch.zeros(1)}, source="f", ignore_unexpected=("head.",))
    with pytest.raises(EncoderError, match="unexpected"):
        check_keys(a, {"w": torch.zeros(2), "head.weight": torch.zeros(1)}, source="f")


def test_resnet50_trunc_loads_torchvision_style_checkpoint(tmp_path):
    from hagekit.encoders.resnet_trunc import TruncatedResNet50

    state = TruncatedResNet50().state_dict()
    state = {k: v.clone() for k, v in state.items()}
    state["layer4.0.conv1.weight"] = torch.zeros(512, 1024, 1, 1)
    state["fc.weight"] = torch.zeros(1000, 2048)
    path = tmp_path / "resnet50.pth"
    torch.save(state, path)
    b = create_encoder("resnet50-trunc", weights=path)
    assert b.dim == 1024
    with torch.inference_mode():
        assert b.model(torch.rand(1, 3, 64, 64)).shape == (1, 1024)
    load_weights(TruncatedResNet50(), path, ignore_unexpected=("layer4.", "fc."))


def test_cli_encoders_list():
    from typer.testing import CliRunner

    from hagekit.cli.main import app

    r = CliRunner().invoke(app, ["encoders", "list"])
    assert r.exit_code == 0, r.output
    for name in ("builtin", "uni2-h", "resnet50-trunc", "timm:<name>", "1024", "203"):
        assert name in flat(r.output)


@pytest.mark.parametrize("size_hw", [(300, 260), (224, 224), (150, 400)])
def test_uni_transform_matches_the_official_one(size_hw):
    """MahmoodLab/UNI README: Resize(224) (torchvision default: bilinear), CenterCrop(224),
    ToTensor, Normalize(ImageNet), for UNI and UNI2-h alike."""
    from PIL import Image
    from torchvision import transforms

    from hagekit.encoders.timm_models import UNI_INTERPOLATION
    from hagekit.encoders.transforms import IMAGENET_MEAN, IMAGENET_STD, ImageTransform

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (*size_hw, 3), dtype=np.uint8))
    official = transforms.Compose([transforms.Resize(224), transforms.CenterCrop(224), transforms.ToTensor(),
                                   transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)])
    ours = ImageTransform(224, IMAGENET_MEAN, IMAGENET_STD, interpolation=UNI_INTERPOLATION)
    assert UNI_INTERPOLATION == "bilinear"
    torch.testing.assert_close(ours(img), official(img), atol=1e-5, rtol=0)
    if size_hw != (224, 224):  # bicubic (our default for other encoders) differs: the test can fail
        assert not torch.allclose(ImageTransform(224)(img), official(img), atol=1e-3)


def test_uni_bundles_use_the_official_interpolation(monkeypatch):
    import hagekit.encoders.timm_models as tm

    tiny = torch.nn.Linear(2, 2)
    tiny.num_features = 2
    monkeypatch.setattr(tm, "build_timm_model", lambda *a, **k: (tiny, "sha", "test"))  # no weights here
    for build in (tm.build_uni, tm.build_uni2h):
        assert build(None, weights=None, random_weights=True, device="cpu").transform.interpolation == "bilinear"
