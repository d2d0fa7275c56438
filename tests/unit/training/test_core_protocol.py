"""Dataset assembly and the shared cross-validation protocol."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from toys.protocol_toy import GENES, LinearEstimator, LoadableEstimator, write_toy_section

from hagekit.errors import DataError, ProvenanceError
from hagekit.training.dataset import load_dataset
from hagekit.training.protocol import ProtocolSettings, run_protocol


@pytest.fixture()
def toy(tmp_path: Path):
    root, feats = tmp_path / "data", tmp_path / "feats"
    for i, (s, p) in enumerate([("A1", "A"), ("A2", "A"), ("B1", "B")]):
        write_toy_section(root, feats, s, p, i)
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
    write_toy_section(root, feats, "B2", "B", 9, feat_section="B1")
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
