"""Linear probe: learns separable embeddings, is at chance on shuffled labels, folds and report."""

from __future__ import annotations

import numpy as np
import pytest

from hagekit.bench.downstream.linear_probe import (
    ProbeConfig,
    make_probe_folds,
    probe_embeddings,
    subsample_indices,
)
from hagekit.bench.downstream.report import (
    DownstreamResult,
    EncoderScores,
    classification_metrics,
    write_downstream_report,
)
from hagekit.errors import ConfigError, DataError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def blobs(n: int = 600, d: int = 32, k: int = 3, sep: float = 1.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    centers = rng.normal(size=(k, d)) * sep
    return (centers[y] + rng.normal(size=(n, d))).astype(np.float32), y


def test_probe_learns_separable_embeddings():
    x, y = blobs()
    s = probe_embeddings(x, y, config=ProbeConfig(seed=1))
    assert len(s.folds) == 5
    assert s.mean["accuracy"] > 0.95 and s.mean["auc"] > 0.98 and s.mean["recall"] > 0.95
    assert sum(f["n_test"] for f in s.folds) == 600


def test_probe_is_at_chance_on_shuffled_labels():
    x, y = blobs(k=2)
    y_shuffled = np.random.default_rng(5).permutation(y)
    s = probe_embeddings(x, y_shuffled, config=ProbeConfig(seed=2))
    assert 0.4 < s.mean["auc"] < 0.6
    assert s.mean["accuracy"] < 0.65


def test_probe_is_seeded():
    x, y = blobs(n=200, sep=0.3)
    a = probe_embeddings(x, y, config=ProbeConfig(seed=3))
    b = probe_embeddings(x, y, config=ProbeConfig(seed=3))
    c = probe_embeddings(x, y, config=ProbeConfig(seed=4))
    assert a.folds == b.folds
    assert a.folds != c.folds


def test_grouped_folds_keep_slides_apart():
    rng = np.random.default_rng(0)
    groups = np.repeat([f"slide{i}" for i in range(12)], 10).astype(object)
    y = np.repeat(rng.integers(0, 2, 12), 10)
    y[::7] = 1 - y[::7]
    folds = make_probe_folds(y, groups, n_folds=4, seed=0)
    assert len(folds) == 4
    seen = set()
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te])
        seen |= set(te.tolist())
    assert seen == set(range(120))
    with pytest.raises(ConfigError, match="at least 5 slides/patients, found 3"):
        make_probe_folds(y[:30], groups[:30], n_folds=5, seed=0)
    with pytest.raises(DataError, match="at least 2 classes"):
        make_probe_folds(np.zeros(20, dtype=int), None, n_folds=5, seed=0)


def test_probe_rejects_bad_embeddings_and_settings():
    x, y = blobs(n=50)
    x[3, 2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        probe_embeddings(x, y)
    with pytest.raises(ConfigError, match="--folds"):
        probe_embeddings(np.zeros((50, 4)), y, config=ProbeConfig(folds=1))
    with pytest.raises(ConfigError, match="--epochs"):
        ProbeConfig(epochs=0).validate()


def test_metrics_binary_multiclass_and_missing_class():
    from sklearn.metrics import roc_auc_score

    y = np.array([0, 0, 1, 1, 1])
    p1 = np.array([0.1, 0.6, 0.4, 0.8, 0.9])
    m = classification_metrics(y, np.stack([1 - p1, p1], 1))
    assert m["auc"] == pytest.approx(roc_auc_score(y, p1))
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["recall"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    # 3 classes, class 2 absent from this fold: macro OvR over the classes present
    y3 = np.array([0, 0, 1, 1])
    p3 = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.1, 0.5, 0.4]])
    m3 = classification_metrics(y3, p3)
    expected = np.mean([roc_auc_score(y3 == 0, p3[:, 0]), roc_auc_score(y3 == 1, p3[:, 1])])
    assert m3["auc"] == pytest.approx(expected)
    assert np.isnan(classification_metrics(np.zeros(3, int), np.full((3, 2), 0.5))["auc"])


def test_subsample_is_stratified_and_seeded():
    y = np.array([0] * 900 + [1] * 100)
    idx = subsample_indices(y, 100, seed=0)
    assert idx.size == 100 and np.all(np.diff(idx) > 0)
    assert np.bincount(y[idx]).tolist() == [90, 10]
    np.testing.assert_array_equal(idx, subsample_indices(y, 100, seed=0))
    assert subsample_indices(y, None, seed=0).size == 1000


def test_report_writes_table_csv_json_and_figure(tmp_path):
    x, y = blobs(n=150)
    a = probe_embeddings(x, y, config=ProbeConfig(folds=3), encoder="uni")
    b = probe_embeddings(x + np.random.default_rng(1).normal(size=x.shape) * 3, y, config=ProbeConfig(folds=3), encoder="ge:run")
    result = DownstreamResult("linear-probe", "synthetic", [a, b], config={"folds": 3})
    paths = write_downstream_report(result, tmp_path)
    lines = (tmp_path / "summary.csv").read_text().splitlines()
    assert lines[0].startswith("encoder,accuracy_mean,accuracy_std,auc_mean")
    assert [ln.split(",")[0] for ln in lines[1:]] == ["uni", "ge:run"]
    assert len((tmp_path / "folds.csv").read_text().splitlines()) == 1 + 6
    png = paths["figure"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert not list(tmp_path.glob(".*tmp*"))
    s = EncoderScores("e", [{"accuracy": 0.5, "auc": float("nan"), "recall": 0.5}])
    assert s.std["accuracy"] == 0.0 and np.isnan(s.mean["auc"])


def test_probe_on_the_shared_loop_matches_the_plain_adam_loop():
    """fit_linear_probe runs on learn.loop; same seed, same weights as a plain epoch loop."""
    import torch

    from hagekit.bench.downstream.linear_probe import ProbeConfig, fit_linear_probe

    rng = np.random.default_rng(0)
    x = rng.normal(size=(301, 17)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 1)
    cfg = ProbeConfig(epochs=3, batch_size=64, standardize=False, device="cpu")
    got = fit_linear_probe(x, y, 3, cfg, seed=5)
    layer = torch.nn.Linear(17, 3)
    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    opt = torch.optim.Adam(layer.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(5)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(3):
        perm = torch.randperm(301, generator=gen)
        for s in range(0, 301, 64):
            idx = perm[s : s + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(layer(xt[idx]), yt[idx]).backward()
            opt.step()
    np.testing.assert_allclose(got.weight, layer.weight.detach().numpy(), rtol=1e-6, atol=1e-7)
