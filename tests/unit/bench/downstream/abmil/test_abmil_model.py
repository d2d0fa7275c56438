"""AB-MIL learns a planted "positive instance" task and its attention finds the planted tiles."""

from __future__ import annotations

import json

import numpy as np
import pytest
from toys.abmil_bags import planted_bags
from typer.testing import CliRunner

from hagekit.bench.downstream.abmil import (
    ABMILConfig,
    BagStore,
    GatedAttentionMIL,
    LabelledBags,
    predict_bag,
    read_attention,
    train_abmil,
)
from hagekit.cli.main import app

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow  # a few seconds: nox -s tests runs it, the fast lane does not
def test_abmil_learns_planted_instances_and_attends_to_them(tmp_path):
    feats = tmp_path / "feats"
    planted = planted_bags(feats)
    out = tmp_path / "out"
    res = runner.invoke(app, [
        "bench", "abmil", "--dataset", "csv", "--labels", str(feats / "labels.csv"),
        "--features", f"planted={feats}", "--folds", "4", "--epochs", "20", "--patience", "5",
        "--lr", "1e-3", "--seed", "0", "--out", str(out),
    ])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    scores = summary["encoders"][0]
    assert scores["encoder"] == "planted" and len(scores["folds"]) == 4
    assert scores["mean"]["auc"] > 0.9
    assert "AUC" in res.output and "planted" in res.output
    # every slide was a test slide once; attention ranks planted tiles at the top
    preds = (out / "planted" / "predictions.csv").read_text().splitlines()
    assert len(preds) == 1 + 32
    hits = []
    for sid, rows in planted.items():
        att, coords, attrs = read_attention(out / "planted" / "attention" / f"{sid}.h5")
        assert att.shape[0] == coords.shape[0] and att.sum() == pytest.approx(1.0, abs=1e-4)
        assert float(attrs["patch_size_level0"]) == 256.0
        hits.append(len(set(np.argsort(-att)[:3].tolist()) & set(rows.tolist())) / 3)
    assert np.mean(hits) > 0.8
    assert (out / "figure3.png").stat().st_size > 1000
    # no overwrite unless asked
    again = runner.invoke(app, [
        "bench", "abmil", "--dataset", "csv", "--labels", str(feats / "labels.csv"),
        "--features", str(feats), "--folds", "4", "--out", str(out),
    ])
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_gated_attention_shapes_and_seeded_training(tmp_path):
    feats = tmp_path / "feats"
    planted_bags(feats, n_bags=6)
    files = {p.stem: p for p in feats.glob("*.h5")}
    store = BagStore(files)
    assert store.check() == 16
    ids = sorted(files)
    y = np.array([i % 2 for i in range(6)])
    cfg = ABMILConfig(max_epochs=3, patience=2, min_epochs=1)
    a = train_abmil(store, LabelledBags(ids[:4], y[:4]), LabelledBags(ids[4:], y[4:]), n_classes=2, in_dim=16,
                    config=cfg, seed=7)
    b = train_abmil(store, LabelledBags(ids[:4], y[:4]), LabelledBags(ids[4:], y[4:]), n_classes=2, in_dim=16,
                    config=cfg, seed=7)
    assert a.history == b.history and len(a.history) == 3
    p, att = predict_bag(a.model, store.get(ids[0])[0])
    p2, att2 = predict_bag(b.model, store.get(ids[0])[0])
    np.testing.assert_allclose(p, p2)
    np.testing.assert_allclose(att, att2)
    assert p.shape == (2,) and p.sum() == pytest.approx(1.0)
    model = GatedAttentionMIL(16, 3, hidden_dim=8, attention_dim=4)
    import torch

    logits, attn = model(torch.zeros(5, 16))
    assert tuple(logits.shape) == (3,) and tuple(attn.shape) == (5,)
