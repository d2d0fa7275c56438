"""The synthetic ST generator: layout contract, determinism, learnability, co-expression."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hagekit.data.section import list_sections, read_section
from hagekit.data.synthetic import REGIONS, SynthConfig, section_names, synthesize_dataset
from hagekit.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    synthesize_dataset(root, SynthConfig.resolve(n_sections=4, n_spots=144, n_genes=80, seed=3))
    return root


def _patch_features(adata) -> np.ndarray:
    """Colour/texture statistics of a 112 µm patch around each spot (what a ridge can learn from)."""
    from PIL import Image

    im = np.asarray(Image.open(adata.uns["hagekit"]["image_path"]).convert("RGB"), dtype=np.float32)
    half = int(56 / adata.uns["hagekit"]["mpp"])
    rows = []
    for x, y in adata.obsm["spatial"].astype(int):
        p = im[y - half : y + half, x - half : x + half]
        g = p.mean(2)
        rows.append(
            np.r_[
                p.mean((0, 1)),
                p.std((0, 1)),
                np.abs(np.diff(g, axis=1)).mean(),
                np.abs(np.diff(g, axis=0)).mean(),
                (g < 120).mean(),
                (g > 220).mean(),
            ]
        )
    return np.asarray(rows)


def _log_norm(adata) -> np.ndarray:
    x = adata.X.toarray().astype(np.float64)
    return np.log1p(x / x.sum(1, keepdims=True) * 1e4)


def test_layout_contract(synth_root: Path) -> None:
    infos = list_sections(synth_root)
    assert [i.section for i in infos] == ["A1", "A2", "B1", "B2"]
    assert {i.patient for i in infos} == {"A", "B"}
    for info in infos:
        assert (info.dataset, info.n_spots, info.n_genes) == ("synth", 144, 80)
        assert info.has_image and info.mpp == 1.0 and info.spot_diameter_um == 55.0
        assert Path(info.image_path).is_file()
    a = read_section(synth_root / "synth" / "A1.h5ad")
    assert a.X.dtype == np.int32 and a.X.nnz > 0
    assert {"array_x", "array_y", "label"} <= set(a.obs.columns)
    assert set(a.obs["label"]) <= set(REGIONS)
    # grid: 100 µm pitch at 1 µm/px, array coordinates consistent with pixels
    xy = a.obsm["spatial"]
    np.testing.assert_allclose(np.diff(np.unique(xy[:, 0])), 100.0)
    np.testing.assert_allclose(xy[:, 0] - xy[:, 0].min(), 100.0 * a.obs["array_x"].to_numpy())
    assert a.obs_names[0] == f"{a.obs['array_x'].iloc[0]}x{a.obs['array_y'].iloc[0]}"
    lib = a.uns["spatial"]["A1"]
    thumb = lib["images"]["lowres"]
    assert thumb.ndim == 3 and thumb.shape[2] == 3 and max(thumb.shape[:2]) <= 600
    assert lib["scalefactors"]["spot_diameter_fullres"] == pytest.approx(55.0)
    assert 0 < lib["scalefactors"]["tissue_lowres_scalef"] <= 1


def test_deterministic_and_seed_dependent(synth_root: Path, tmp_path: Path) -> None:
    again = synthesize_dataset(tmp_path / "a", SynthConfig.resolve(n_sections=1, n_spots=144, n_genes=80, seed=3))
    other = synthesize_dataset(tmp_path / "b", SynthConfig.resolve(n_sections=1, n_spots=144, n_genes=80, seed=4))
    ref = read_section(synth_root / "synth" / "A1.h5ad")
    same = read_section(again[0])
    diff = read_section(other[0])
    assert (ref.X != same.X).nnz == 0
    assert list(ref.var_names) == list(same.var_names)
    assert (ref.X != diff.X).nnz > 0
    img_a = Path(ref.uns["hagekit"]["image_path"]).read_bytes()
    img_b = Path(same.uns["hagekit"]["image_path"]).read_bytes()
    assert img_a == img_b


def test_expression_learnable_from_image(synth_root: Path) -> None:
    from sklearn.linear_model import Ridge

    secs = [read_section(p) for p in sorted((synth_root / "synth").glob("*.h5ad"))]
    feats = [_patch_features(a) for a in secs]
    ys = [_log_norm(a) for a in secs]
    scores = []
    for i in range(len(secs)):
        xtr = np.vstack([f for j, f in enumerate(feats) if j != i])
        ytr = np.vstack([y for j, y in enumerate(ys) if j != i])
        mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
        pred = Ridge(alpha=1.0).fit((xtr - mu) / sd, ytr).predict((feats[i] - mu) / sd)
        y = ys[i]
        keep = y.std(0) > 0
        pc = [np.corrcoef(pred[:, g], y[:, g])[0, 1] for g in np.flatnonzero(keep)]
        scores.append(float(np.mean(pc)))
    assert np.mean(scores) > 0.3, scores


def test_gene_modules_co_vary(synth_root: Path) -> None:
    a = read_section(synth_root / "synth" / "B1.h5ad")
    y = _log_norm(a)
    corr = np.corrcoef(y.T)
    names = list(a.var_names)
    tumour = [names.index(g) for g in ("ERBB2", "KRT8", "KRT18") if g in names]
    fat = [names.index(g) for g in ("ADIPOQ", "PLIN1", "FABP4") if g in names]
    assert len(tumour) >= 2 and len(fat) >= 2
    within = np.mean([corr[i, j] for i in tumour for j in tumour if i < j])
    across = np.mean([corr[i, j] for i in tumour for j in fat])
    assert within > 0.3 and within > across + 0.3


def test_rerun_keeps_and_settings_change_is_refused(tmp_path: Path) -> None:
    first = synthesize_dataset(tmp_path, SynthConfig.resolve(n_sections=1, n_spots=16, n_genes=20))
    mtime = first[0].stat().st_mtime_ns
    assert synthesize_dataset(tmp_path, SynthConfig.resolve(n_sections=1, n_spots=16, n_genes=20)) == first
    assert first[0].stat().st_mtime_ns == mtime
    with pytest.raises(DataError, match="other synthetic settings"):
        synthesize_dataset(tmp_path, SynthConfig.resolve(n_sections=1, n_spots=16, n_genes=30))
    redone = synthesize_dataset(tmp_path, SynthConfig.resolve(n_sections=1, n_spots=16, n_genes=30), overwrite=True)
    assert read_section(redone[0]).n_vars == 30


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"n_spots": 2}, "--spots"),
        ({"n_genes": 5}, "--genes"),
        ({"n_sections": 0}, "--sections"),
        ({"n_sections": 2, "n_patients": 3}, "--patients"),
    ],
)
def test_bad_settings_name_the_option(tmp_path: Path, kwargs: dict, option: str) -> None:
    with pytest.raises(ConfigError, match=option):
        synthesize_dataset(tmp_path, SynthConfig.resolve(**kwargs))
    assert not any(tmp_path.iterdir())


def test_section_names_follow_patients() -> None:
    assert section_names(5, 2) == [("A1", "A"), ("A2", "A"), ("A3", "A"), ("B1", "B"), ("B2", "B")]
