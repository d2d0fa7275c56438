"""Metrics, targets and splits: the definitions every method is judged by."""

from __future__ import annotations

import numpy as np
import pytest

from hagekit.errors import ConfigError
from hagekit.metrics import evaluate_section, pearson_per_gene, summarize
from hagekit.targets import expression_targets
from hagekit.training.splits import make_folds, train_val_split, trial_seed


def test_pearson_matches_numpy_and_handles_constants():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(40, 5))
    p = t + rng.normal(scale=0.5, size=t.shape)
    t[:, 3] = 2.0  # constant truth -> excluded (NaN)
    p[:, 4] = 1.0  # constant prediction -> 0
    r, tc, pc = pearson_per_gene(t, p)
    for j in range(3):
        assert r[j] == pytest.approx(np.corrcoef(t[:, j], p[:, j])[0, 1], abs=1e-12)
    assert np.isnan(r[3]) and tc.tolist() == [False, False, False, True, False]
    assert r[4] == 0.0 and pc.tolist() == [False, False, False, False, True]


def test_evaluate_section_hand_computed():
    t = np.array([[0.0, 1.0, 5.0], [1.0, 3.0, 5.0], [2.0, 2.0, 5.0]])
    p = np.array([[0.0, 3.0, 4.0], [1.0, 1.0, 4.0], [2.0, 2.0, 4.0]])
    m = evaluate_section(t, p, n_heg=1)
    # gene 0: r = 1; gene 1: r = -1; gene 2: constant truth, excluded
    assert m.pcc_all == pytest.approx(0.0)
    assert m.n_constant_genes == 1
    # HEG top-1 among non-constant genes by mean truth: gene 1 (mean 2) -> r = -1
    assert m.pcc_heg == pytest.approx(-1.0)
    diff = t - p
    assert m.mse == pytest.approx(np.mean(diff**2))
    assert m.mae == pytest.approx(np.mean(np.abs(diff)))


def test_mean_prediction_scores_zero():
    rng = np.random.default_rng(1)
    t = rng.normal(size=(30, 8))
    m = evaluate_section(t, np.tile(t.mean(0), (30, 1)))
    assert m.pcc_all == 0.0 and m.n_constant_pred == 8


def test_summarize_ignores_nan():
    s = summarize([{"pcc_all": 0.2, "pcc_heg": 1, "mse": 1, "mae": 1},
                   {"pcc_all": float("nan"), "pcc_heg": 3, "mse": 1, "mae": 1}])
    assert s["pcc_all"] == {"mean": 0.2, "std": 0.0, "n": 1}
    assert s["pcc_heg"]["mean"] == 2.0 and s["pcc_heg"]["std"] == 1.0


def test_targets_log1p_norm():
    counts = np.array([[1, 3, 0], [0, 0, 0]])
    y = expression_targets(counts)
    assert y[0].tolist() == pytest.approx(np.log1p([2500.0, 7500.0, 0.0]).tolist(), rel=1e-6)
    assert y[1].tolist() == [0, 0, 0]
    assert expression_targets(counts, kind="log1p")[0, 1] == pytest.approx(np.log1p(3))
    with pytest.raises(ConfigError, match="unknown target"):
        expression_targets(counts, kind="zscore")


def test_folds_section_and_patient():
    patients = {"A1": "A", "A2": "A", "B1": "B", "B2": "B", "C1": "C"}
    folds = make_folds(patients, split="section")
    assert [f.name for f in folds] == ["A1", "A2", "B1", "B2", "C1"]
    assert folds[0].same_patient_in_train == ("A2",)
    pf = make_folds(patients, split="patient", folds=["B2"])
    assert len(pf) == 1 and pf[0].name == "B" and pf[0].test_sections == ("B1", "B2")
    assert pf[0].same_patient_in_train == ()
    with pytest.raises(ConfigError, match="choose from"):
        make_folds(patients, split="section", folds=["Z9"])
    with pytest.raises(ConfigError, match="unknown split"):
        make_folds(patients, split="slide")


def test_train_val_split_is_seeded_and_disjoint():
    a = train_val_split(100, seed=3, fold="A1", trial=2)
    b = train_val_split(100, seed=3, fold="A1", trial=2)
    c = train_val_split(100, seed=3, fold="A1", trial=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])
    tr, va = a
    assert len(va) == 20 and len(tr) == 80 and not set(tr) & set(va)
    assert trial_seed(0, "A1", 0) == trial_seed(0, "A1", 0) != trial_seed(1, "A1", 0)
