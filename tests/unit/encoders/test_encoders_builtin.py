"""The weights-free builtin descriptor: deterministic, skimage-exact HED, tissue-informative."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hagekit.encoders import create_encoder


@pytest.fixture(scope="module")
def builtin():
    return create_encoder("builtin")


def _tissue(kind: str, seed: int, size: int = 128) -> np.ndarray:
    """Tumour-like: dense dark-purple round nuclei on pale pink; stroma-like: pink fibres, few nuclei."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    img = np.empty((size, size, 3), np.float32)
    if kind == "tumour":
        img[:] = (215, 170, 200)
        for _ in range(70):
            cy, cx, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(3, 6)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = (75, 40, 120)
    else:
        angle = rng.uniform(0, np.pi)
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) / 2.5 + phase)
        img[:] = (235, 150, 180)
        img[wave > 0.3] = (210, 90, 140)
        for _ in range(4):
            cy, cx = rng.uniform(0, size, 2)
            img[((yy - cy) / 1.5) ** 2 + ((xx - cx) / 5) ** 2 < 1] = (90, 50, 120)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _features(bundle, images):
    x = torch.stack([bundle.transform(im) for im in images])
    with torch.inference_mode():
        return bundle.model(x).numpy()


def test_dimension_and_determinism(builtin):
    imgs = [_tissue("tumour", s) for s in range(3)] + [_tissue("stroma", s) for s in range(3)]
    a = _features(builtin, imgs)
    b = _features(builtin, imgs)
    assert a.shape == (6, builtin.dim) and builtin.dim == 203
    assert np.array_equal(a, b)
    one = _features(create_encoder("builtin"), imgs[:1])  # a fresh instance, another batch size
    np.testing.assert_allclose(one[0], a[0], rtol=1e-4, atol=1e-5)
    assert np.isfinite(a).all()
    assert create_encoder("builtin").weights_sha256 == builtin.weights_sha256


def test_separates_tumour_from_stroma(builtin):
    tumour = _features(builtin, [_tissue("tumour", s) for s in range(4)])
    stroma = _features(builtin, [_tissue("stroma", s) for s in range(10, 14)])
    allf = np.concatenate([tumour, stroma])
    z = (allf - allf.mean(0)) / (allf.std(0) + 1e-6)
    zt, zs = z[:4], z[4:]
    within = max(np.linalg.norm(zt[i] - zt[j]) for i in range(4) for j in range(4))
    within = max(within, max(np.linalg.norm(zs[i] - zs[j]) for i in range(4) for j in range(4)))
    between = min(np.linalg.norm(zt[i] - zs[j]) for i in range(4) for j in range(4))
    assert between > within  # every cross-class pair is farther apart than any same-class pair


def test_hed_matches_skimage(builtin):
    from skimage.color import rgb2hed

    img = _tissue("tumour", 5)
    hed = rgb2hed(img)
    feats = _features(builtin, [img])[0]
    # layout: 21 RGB stats (mean, std, 5 quantiles per channel), then 21 HED stats
    names = builtin.model.feature_names()
    assert len(names) == builtin.dim and len(set(names)) == len(names)
    hed_means = feats[[names.index(f"hed_{c}_mean") for c in "HED"]]
    np.testing.assert_allclose(hed_means, np.clip(hed, 0, None).reshape(-1, 3).mean(0), rtol=1e-3, atol=1e-5)


def test_white_patch_is_background(builtin):
    white = np.full((128, 128, 3), 250, np.uint8)
    tumour = _tissue("tumour", 1)
    f_white, f_tumour = _features(builtin, [white, tumour])
    names = builtin.model.feature_names()
    assert f_white[names.index("white_fraction")] == 1.0 and f_white[names.index("tissue_fraction")] == 0.0
    assert f_tumour[names.index("tissue_fraction")] > 0.9
    # nuclei: more haematoxylin and a stronger blob response in the tumour-like patch
    assert f_tumour[names.index("hed_H_mean")] > f_white[names.index("hed_H_mean")] + 0.02
    assert f_tumour[names.index("log_H_s1_mean")] > f_white[names.index("log_H_s1_mean")]


def test_builtin_refuses_weights(tmp_path):
    from hagekit.errors import EncoderError

    with pytest.raises(EncoderError, match="no weights to randomise"):
        create_encoder("builtin", random_weights=True)
