"""Dataset assembly and the shared cross-validation protocol."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hagekit.data.section import SectionLabels, make_section, write_section
from hagekit.errors import DataError, ProvenanceError
from hagekit.io.h5 import write_features
from hagekit.training.dataset import load_dataset
from hagekit.training.protocol import ProtocolSettings, run_protocol

GENES = [f"G{i}" for i in range(6)]


def _make(root: Path, feats: Path, name: str, patient: str, seed: int, *, feat_section=None):
    rng = np.random.default_rng(seed)
    n = 60
    latent = rng.normal(size=(n, 3))
    loadings = np.random.default_rng(100).normal(scale=0.6, size=(3, len(GENES)))
    rates = np.exp(1.5 + latent @ loadings)
    counts = rng.poisson(rates)
    barcodes = [f"{i}x{j}" for i in range(6) for j in range(10)]
    xy = np.array([[100 + 10 * int(b.split("x")[0]), 100 + 10 * int(b.split("x")[1])] for b in barcodes])
    ad = make_section(counts, barcodes, GENES, xy,
        SectionLabels(dataset="toy", section=name, patient=patient))
    write_section(ad, root / "toy" / f"{name}.h5ad")
    f = np.concatenate([latent, rng.normal(scale=0.1, size=(n, 5))], axis=1)
    write_features(feats / f"{name}.h5", f, xy, barcodes=barcodes,
                   attrs={"encoder": "toy", "section": feat_section or name})


class LinearEstimator:
    """A plain least-squares regressor used to exercise the protocol."""

    calls = 0

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def fit(self, X, Y, *, X_val=None, Y_val=None):
        type(self).calls += 1
        A = np.c_[X, np.ones(len(X))]
        self.W, *_ = np.linalg.lstsq(A, Y, rcond=None)
        return self

    def predict(self, X):
        return np.c_[X, np.ones(len(X))] @ self.W

    def save(self, d: Path) -> None:
        np.save(d / "w.npy", self.W)


class LoadableEstimator(LinearEstimator):
    """Loads itself back from its folder, like HAGERegressor (so resume can check the model)."""

    @classmethod
    def load(cls, d: Path) -> LoadableEstimator:
        est = cls(0)
        est.W = np.load(d / "w.npy")
        est.n_features_in_ = est.W.shape[0] - 1
        return est


@pytest.fixture()
def toy(tmp_path: Path):
    root, feats = tmp_path / "data", tmp_path / "feats"
    for i, (s, p) in enumerate([("A1", "A"), ("A2", "A"), ("B1", "B")]):
        _make(root, feats, s, p, i)
    return root, feats


def test_protocol_runs_writes_and_resumes(toy, tmp_path: Path):
    root, feats = toy
    data = load_dataset(root, "toy", feats, GENES)
    assert list(data.sections) == ["A1", "A2", "B1"] and data.feature_dim == 8
    assert data.sections["A1"].array_xy is None
    out = tmp_path / "run"
    LinearEstimator.calls = 0
    res = run_protocol(data, lambda ctx: LinearEstimator(ctx.seed),
                       ProtocolSettings(trials=2, seed=0, out_dir=out, method="linear"))
    assert len(res.rows) == 6 and LinearEstimator.calls == 6
    assert all(r["pcc_all"] > 0.5 for r in res.rows)
    for f in ("config.json", "splits.json", "metrics.csv", "summary.json", "genes.txt",
              "A1/trial0/metrics.json", "A1/trial1/w.npy"):
        assert (out / f).is_file(), f
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overall"]["pcc_all"]["n"] == 6
    # rerun: everything skipped, same numbers
    res2 = run_protocol(data, lambda ctx: LinearEstimator(ctx.seed),
                        ProtocolSettings(trials=2, seed=0, out_dir=out, method="linear"))
    assert LinearEstimator.calls == 6
    assert [r["pcc_all"] for r in res2.rows] == [r["pcc_all"] for r in res.rows]
    with pytest.raises(ProvenanceError, match=r"other settings \(seed\)"):
        run_protocol(data, lambda ctx: LinearEstimator(ctx.seed),
                     ProtocolSettings(trials=2, seed=1, out_dir=out, method="linear"))
    # a setting recorded as unset (None) by an older run equals one a newer run leaves out
    cfg = json.loads((out / "config.json").read_text())
    cfg["config"]["config_file"] = None
    (out / "config.json").write_text(json.dumps(cfg))
    run_protocol(data, lambda ctx: LinearEstimator(ctx.seed),
                 ProtocolSettings(trials=2, seed=0, out_dir=out, method="linear"))
    assert LinearEstimator.calls == 6
    with pytest.raises(ProvenanceError, match=r"other settings \(config_file\)"):
        run_protocol(data, lambda ctx: LinearEstimator(ctx.seed),
                     ProtocolSettings(trials=2, seed=0, out_dir=out, method="linear", config={"config_file": "a.toml"}))


def test_patient_split_tests_every_section_of_the_patient(toy):
    root, feats = toy
    data = load_dataset(root, "toy", feats, GENES)
    res = run_protocol(data, lambda ctx: LinearEstimator(ctx.seed),
                       ProtocolSettings(split="patient", trials=1))
    assert sorted((r["fold"], r["section"]) for r in res.rows) == [("A", "A1"), ("A", "A2"), ("B", "B1")]


def test_dataset_refuses_mismatches(toy, tmp_path: Path):
    root, feats = toy
    with pytest.raises(DataError, match="panel genes absent"):
        load_dataset(root, "toy", feats, GENES + ["NOPE"])
    _make(root, feats, "B2", "B", 9, feat_section="B1")
    with pytest.raises(ProvenanceError, match="features are of section 'B1'"):
        load_dataset(root, "toy", feats, GENES)
    with pytest.raises(DataError, match="unknown sections"):
        load_dataset(root, "toy", feats, GENES, sections=["Z1"])
    with pytest.raises(DataError, match="feature folder not found"):
        load_dataset(root, "toy", tmp_path / "nofeats", GENES)


def test_resume_checks_saved_models_without_building_estimators(toy, tmp_path: Path):
    root, feats = toy
    data = load_dataset(root, "toy", feats, GENES)
    out, built = tmp_path / "run", []
    LoadableEstimator.calls = 0

    def factory(ctx):
        built.append((ctx.fold, ctx.trial))
        return LoadableEstimator(ctx.seed)

    kw = ProtocolSettings(trials=2, out_dir=out, method="linear")
    first = run_protocol(data, factory, kw, estimator_type=LoadableEstimator)
    assert len(built) == 6
    np.save(out / "A2" / "trial1" / "w.npy", np.zeros((4, len(GENES))))  # a model of another feature width
    built.clear()
    again = run_protocol(data, factory, kw, estimator_type=LoadableEstimator)
    assert built == [("A2", 1)]  # only the damaged trial is built, and trained again
    assert [r["pcc_all"] for r in again.rows] == [r["pcc_all"] for r in first.rows]
    assert LoadableEstimator.load(out / "A2" / "trial1").n_features_in_ == data.feature_dim
    built.clear()
    run_protocol(data, factory, kw)  # without the class: one estimator built per finished trial to learn it
    assert len(built) == 6 and LoadableEstimator.calls == 7
