"""HAGERegressor: learning, determinism, calibration, checkpoint round trip, input checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hagekit.errors import ConfigError, DataError, ProvenanceError
from hagekit.hage.estimator import HAGERegressor, calibration
from hagekit.hage.model import HAGEConfig
from hagekit.metrics import evaluate_section, pearson_per_gene

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(seed: int = 0, n: int = 300, d: int = 12, g: int = 10):
    rng = np.random.default_rng(seed)
    w = np.random.default_rng(99).normal(size=(d, g))
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = np.log1p(np.exp(x @ w / 2 + 0.3 * rng.normal(size=(n, g)))).astype(np.float32)
    return x, y


CFG = HAGEConfig(d=32, n_heads=4, k1=4, k2=2, epochs=6, batch_size=64, lr=1e-3)
EMB = np.random.default_rng(3).normal(size=(10, 6)).astype(np.float32)


@pytest.fixture(scope="module")
def fitted():
    x, y = _data()
    torch.set_num_threads(1)
    est = HAGERegressor(CFG, EMB, random_state=1).fit(x[:200], y[:200], X_val=x[200:250], Y_val=y[200:250])
    return est, x, y


def test_learns_and_keeps_best_epoch(fitted):
    est, x, y = fitted
    pred = est.predict(x[250:])
    assert pred.shape == (50, 10) and pred.dtype == np.float32
    m = evaluate_section(y[250:], pred)
    assert m.pcc_all > 0.5
    assert 1 <= est.best_epoch_ <= len(est.history_)
    vals = [h["val_pcc"] for h in est.history_]
    assert est.best_val_pcc_ == pytest.approx(max(vals))
    assert {"loss", "cyclip", "clip_local", "clip_global", "pcc", "seconds"} <= set(est.history_[0])
    assert est.embed(x[:3]).shape == (3, CFG.d)


def test_same_seed_same_numbers_other_seed_differs(fitted):
    est, x, y = fitted
    again = HAGERegressor(CFG, EMB, random_state=1).fit(x[:200], y[:200], X_val=x[200:250], Y_val=y[200:250])
    np.testing.assert_array_equal(est.predict(x[250:]), again.predict(x[250:]))
    other = HAGERegressor(CFG, EMB, random_state=2).fit(x[:200], y[:200], X_val=x[200:250], Y_val=y[200:250])
    assert not np.array_equal(est.predict(x[250:]), other.predict(x[250:]))


def test_checkpoint_round_trip(fitted, tmp_path: Path):
    est, x, _ = fitted
    est.save(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"model.safetensors", "estimator.json"}
    meta = json.loads((tmp_path / "m" / "estimator.json").read_text())
    assert meta["config"]["d"] == 32 and meta["n_features_in"] == 12 and meta["best_epoch"] == est.best_epoch_
    back = HAGERegressor.load(tmp_path / "m")
    np.testing.assert_array_equal(back.predict(x[250:]), est.predict(x[250:]))
    assert back.config == est.config
    with pytest.raises(DataError, match="not found"):
        HAGERegressor.load(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "estimator.json").write_text("{not json")
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"")
    with pytest.raises(DataError, match="not valid JSON"):
        HAGERegressor.load(tmp_path / "bad")


def test_calibration_keeps_pcc_and_fits_scale():
    rng = np.random.default_rng(0)
    y = rng.normal(loc=5, scale=2, size=(100, 4))
    raw = 0.01 * y + rng.normal(scale=0.01, size=y.shape)
    raw[:, 3] = -raw[:, 3]  # anti-correlated gene: slope floored at a tiny positive value
    a, b = calibration(raw, y)
    cal = raw * a + b
    np.testing.assert_allclose(pearson_per_gene(y, cal)[0], pearson_per_gene(y, raw)[0], atol=1e-6)
    assert (a > 0).all()
    assert np.mean((cal[:, :3] - y[:, :3]) ** 2) < 0.5 * np.mean((y[:, :3] - y[:, :3].mean(0)) ** 2)
    np.testing.assert_allclose(cal[:, 3], y[:, 3].mean(), atol=1e-3)


def test_bad_inputs_are_refused(fitted):
    est, x, y = fitted
    with pytest.raises(ProvenanceError, match="expects"):
        est.predict(x[:, :5])
    with pytest.raises(ProvenanceError, match="gene embeddings"):
        HAGERegressor(CFG, EMB[:4]).fit(x, y)
    with pytest.raises(DataError, match="NaN"):
        bad = x.copy()
        bad[0, 0] = np.nan
        HAGERegressor(CFG, EMB).fit(bad, y)
    with pytest.raises(ConfigError, match="not fitted"):
        HAGERegressor(CFG, EMB).predict(x)
    with pytest.raises(ConfigError, match="names"):
        HAGERegressor(CFG, EMB, genes=["a"]).fit(x, y)


class _Recorder:
    """A Reporter that keeps every status it is sent."""

    def __init__(self) -> None:
        self.statuses: list[str] = []
        self.descriptions: list[str] = []

    def task(self, description, total=None, **fields):
        self.descriptions.append(description)
        rec = self

        class _T:
            def advance(self, n=1, **f):
                rec.statuses.append(f.get("status", ""))

            def update(self, *, description=None, total=None, **f):
                rec.statuses.append(f.get("status", ""))

            def close(self):
                pass

        return _T()

    def message(self, text):
        pass


def test_progress_shows_live_loss_and_validation_pcc():
    x, y = _data(n=120)
    rec = _Recorder()
    cfg = HAGEConfig(d=16, n_heads=4, k1=3, epochs=2, batch_size=32, lr=1e-3)
    HAGERegressor(cfg, EMB, label="C2 trial 0").fit(x[:90], y[:90], X_val=x[90:], Y_val=y[90:], progress=rec)
    assert rec.descriptions == ["C2 trial 0"]
    assert any("loss" in s for s in rec.statuses) and any("val PCC" in s for s in rec.statuses)


@pytest.mark.gpu
def test_cuda_fit_predict_and_load_on_cpu(tmp_path: Path):
    x, y = _data(n=200)
    est = HAGERegressor(CFG, EMB, random_state=0, device="cuda").fit(x[:150], y[:150], X_val=x[150:], Y_val=y[150:])
    assert next(est.model_.parameters()).is_cuda
    pred = est.predict(x[150:])
    assert np.isfinite(pred).all() and evaluate_section(y[150:], pred).pcc_all > 0.2
    est.save(tmp_path / "m")
    np.testing.assert_allclose(HAGERegressor.load(tmp_path / "m").predict(x[150:]), pred, rtol=1e-4, atol=1e-4)


def test_whole_cluster_centroid_modes_are_wired_into_training():
    x, y = _data(n=160)
    curves = {}
    for mode in ("batch", "memory", "epoch"):
        cfg = HAGEConfig(d=16, n_heads=4, k1=3, k2=2, epochs=2, batch_size=32, lr=1e-3, centroids=mode)
        est = HAGERegressor(cfg, EMB).fit(x[:120], y[:120], X_val=x[120:], Y_val=y[120:])
        curves[mode] = [h["clip_global"] for h in est.history_]
    assert curves["memory"] != curves["batch"] and curves["epoch"] != curves["batch"]
