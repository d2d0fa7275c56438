"""Leakage guard: a ``ge:`` encoder is never scored, unflagged, on sections/patients it was trained on
(``bench hest`` folds, ``bench linear-probe`` probe sets), and ``export-encoder`` says what it saw."""

from __future__ import annotations

import json

import numpy as np
import pytest
from clitext import flat
from toys import hage_toy as toy
from toys import hest_fixture as hf
from typer.testing import CliRunner

from hagekit.cli.main import app

pytestmark = pytest.mark.usefixtures("one_torch_thread_module")
runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A HAGE run on builtin-encoder features, fold B1 only: its model trained on A1, A2 (patient A)."""
    from hagekit.encoders import create_encoder
    from hagekit.study import StudyInputs
    from hagekit.training.run import train_run

    tmp = tmp_path_factory.mktemp("leak")
    base = create_encoder("builtin")
    root, feats, panel, emb = toy.make_toy(tmp, dim=base.dim, encoder="builtin", sha=base.weights_sha256)
    train_run(inputs=StudyInputs(root, "toy", feats, panel, emb),
              out=tmp / "run", overrides={**toy.FAST, "folds": "B1"})
    return tmp


def test_ge_encoder_records_what_it_was_trained_on(run):
    from hagekit.encoders import create_encoder

    cfg = create_encoder(f"ge:{run / 'run'}:B1:0:force").config
    assert cfg["trained_sections"] == ["A1", "A2", "X9"]  # X9: the gene embeddings' own training section
    assert cfg["trained_patients"] == ["A"]


def test_export_encoder_states_and_stores_the_sections(run):
    from safetensors import safe_open

    out = run / "ge.safetensors"
    res = runner.invoke(app, ["export-encoder", "--run", str(run / "run"), "--out", str(out), "--force"])
    assert res.exit_code == 0, res.output
    text = flat(res.output)
    assert "fold B1 trial 0, trained on sections A1, A2, X9 (patients A; patient unknown for 1 section(s))" in text and "--fold/--trial" in text
    with safe_open(str(out), framework="pt") as fh:
        meta = fh.metadata()
    assert json.loads(meta["trained_sections"]) == ["A1", "A2", "X9"] and meta["fold"] == "B1"


def test_bench_hest_refuses_a_fold_the_encoder_saw(run, tmp_path):
    data = tmp_path / "bd"
    hf.make_task(data, "T1", n=24)
    args = ["bench", "hest", "--data", str(data), "--encoder", "builtin", "--encoder", f"ge:{run / 'ge.safetensors'}:force",
            "--latent-dim", "4", "--cache-dir", str(tmp_path / "c"), "--device", "cpu"]
    if not (run / "ge.safetensors").exists():
        test_export_encoder_states_and_stores_the_sections(run)
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "task T1 fold 0 tests A1, A2, which this encoder was trained on" in flat(res.output)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "o2"), "--allow-leak"])
    assert res.exit_code == 0, res.output
    table = (tmp_path / "o2" / "table.csv").read_text()
    assert table.count("†") == 2  # the task's cell and the average of the ge: column
    rec = json.loads(next((tmp_path / "o2" / "T1").glob("ge*/results.json")).read_text())
    assert rec["leaking_folds"] == [0] and rec["folds"][0]["leak"] == ["A1", "A2"] and rec["folds"][1]["leak"] == []
    comp = (tmp_path / "o2" / "comparison.csv").read_text().splitlines()
    assert comp[1].endswith(",True")


def test_patient_level_leak_when_the_folds_are_patient_disjoint(run, tmp_path):
    """B1's h5ad says patient A (the encoder's training patient): fold 1 (train P1 only) leaks by patient."""
    import anndata as ad

    data = tmp_path / "bd"
    task = hf.make_task(data, "T1", n=24)
    a = ad.read_h5ad(task / "adata" / "B1.h5ad")
    a.obs["patient"] = "A"
    a.write_h5ad(task / "adata" / "B1.h5ad")
    res = runner.invoke(app, ["bench", "hest", "--data", str(data), "--encoder", f"ge:{run / 'run'}:B1:0:force",
                              "--latent-dim", "4", "--cache-dir", str(tmp_path / "c"), "--device", "cpu",
                              "--out", str(tmp_path / "o"), "--allow-leak"])
    assert res.exit_code == 0, res.output
    rec = json.loads(next((tmp_path / "o" / "T1").glob("ge*/results.json")).read_text())
    assert rec["folds"][0]["leak"] == ["A1", "A2"] and rec["folds"][1]["leak"] == ["patient A"]


def test_linear_probe_refuses_a_probe_set_from_a_training_section(run, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    probe = tmp_path / "probe" / "A2"
    for cls, shade in (("high", 90), ("low", 200)):
        (probe / "G1" / cls).mkdir(parents=True)
        for k in range(8):
            img = np.clip(shade + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(probe / "G1" / cls / f"b{k % 4}_{cls}{k}.png")
    (probe / "probe_set.json").write_text(json.dumps({"section": "A2", "patient": "A", "dataset": "toy"}))
    args = ["bench", "linear-probe", "--dataset", "folder", "--data", str(probe / "G1"), "--group-regex", r"^b(\d+)_",
            "--encoder", f"ge:{run / 'run'}:B1:0:force", "--folds", "2", "--epochs", "1", "--device", "cpu",
            "--cache-dir", str(tmp_path / "c")]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "cut from section A2) tests A2" in flat(res.output)
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "o2"), "--allow-leak"])
    assert res.exit_code == 0, res.output
    assert "†leak" in (tmp_path / "o2" / "summary.csv").read_text()
