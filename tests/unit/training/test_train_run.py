"""``train_run`` and ``hagekit train``: run folder, determinism, leak refusal, config precedence."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from clitext import flat
from toys import hage_toy as toy
from typer.testing import CliRunner

from hagekit.cli.main import app
from hagekit.errors import ConfigError, ProvenanceError
from hagekit.study import StudyInputs
from hagekit.training.run import check_embedding_leak, resolve_settings, train_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as fh:
        return [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in csv.DictReader(fh)]


@pytest.mark.slow  # a few seconds: nox -s tests runs it, the fast lane does not
def test_train_run_writes_run_folder_and_same_seed_same_metrics(tmp_path: Path):
    root, feats, panel, emb = toy.make_toy(tmp_path)
    kw = dict(inputs=StudyInputs(root, "toy", feats, panel, emb),
              overrides={**toy.FAST, "folds": "A1,B1", "seed": 3})
    res = train_run(out=tmp_path / "run1", **kw)
    assert [r["section"] for r in res.rows] == ["A1", "B1"]
    assert all(r["pcc_all"] > 0 for r in res.rows)
    run = tmp_path / "run1"
    for f in ("config.json", "splits.json", "metrics.csv", "summary.json", "genes.txt",
              "A1/trial0/model.safetensors", "A1/trial0/estimator.json", "B1/trial0/metrics.json"):
        assert (run / f).is_file(), f
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["config"]["hage"]["d"] == 16 and cfg["protocol"]["features"]["encoder"] == "toy"
    assert cfg["config"]["gene_embeddings"]["training_sections"] == ["X9"]
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["overall"]) >= {"pcc_all", "pcc_heg", "mse", "mae"}
    train_run(out=tmp_path / "run2", **kw)
    assert _rows(run) == _rows(tmp_path / "run2")


def test_embeddings_trained_on_held_out_section_are_refused(tmp_path: Path):
    root, feats, panel, emb = toy.make_toy(tmp_path, emb_sections=("A1", "Z1"))
    with pytest.raises(ProvenanceError, match="held-out section.*A1.*--allow-leak"):
        train_run(inputs=StudyInputs(root, "toy", feats, panel, emb),
                  out=tmp_path / "run", overrides={**toy.FAST, "folds": "A1", "per_fold_embeddings": False})
    assert not (tmp_path / "run").exists()
    # by default the run trains leak-free embeddings on each fold's training sections instead
    res = train_run(inputs=StudyInputs(root, "toy", feats, panel, emb),
                    out=tmp_path / "run", overrides={**toy.FAST, "folds": "A1,B1"})
    assert any("per-fold embeddings" in w for w in res.warnings)
    from hagekit.genes.embeddings import embedding_training_sections

    cached = sorted((emb.parent / "per_fold").glob("*.txt"))
    assert [sorted(embedding_training_sections(c)) for c in cached] == [["A1", "A2"], ["A2", "B1"]]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["gene_embeddings"]["per_fold_cache"]
    # a fold that does not hold out A1 is fine; --allow-leak turns the refusal into a warning
    assert check_embedding_leak(emb, ["B1"], allow_leak=False) == []
    assert check_embedding_leak(emb, ["A1", "B1"], allow_leak=True) == ["A1"]


def test_rerun_checks_finished_trials_without_their_per_fold_embeddings(tmp_path: Path):
    import shutil

    root, feats, panel, emb = toy.make_toy(tmp_path, emb_sections=("A1", "Z1"))
    kw = dict(inputs=StudyInputs(root, "toy", feats, panel, emb),
              out=tmp_path / "run", overrides={**toy.FAST, "folds": "A1,B1"})
    first = train_run(**kw)
    shutil.rmtree(emb.parent / "per_fold")  # e.g. the run folder was copied without the cache
    again = train_run(**kw)
    assert again.rows == first.rows  # every trial was done earlier, its saved model checked
    assert not list((emb.parent / "per_fold").glob("*.txt"))  # and no fold's embeddings trained again


def test_settings_precedence_defaults_file_flags(tmp_path: Path):
    toml = tmp_path / "c.toml"
    toml.write_text('d = 64\nepochs = 2\n[run]\ntrials = 2\nsplit = "patient"\n')
    cfg, run = resolve_settings(toml, {"epochs": 3, "k1": None})
    assert (cfg.d, cfg.epochs, cfg.k1, run.trials, run.split) == (64, 3, 30, 2, "patient")
    yml = tmp_path / "c.yaml"
    yml.write_text("hage:\n  d: 32\n  use_ge: false\nfolds: [A1, B1]\n")
    cfg, run = resolve_settings(yml, {})
    assert (cfg.d, cfg.use_ge, run.folds) == (32, False, ("A1", "B1"))
    bad = tmp_path / "bad.toml"
    bad.write_text("dimension = 3\n")
    with pytest.raises(ConfigError, match="unknown setting.*dimension"):
        resolve_settings(bad)
    with pytest.raises(ConfigError, match="must be .toml"):
        resolve_settings(_touch(tmp_path / "c.ini"))
    broken = tmp_path / "broken.toml"
    broken.write_text("d = = 3\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        resolve_settings(broken)


def _touch(path: Path) -> Path:
    path.write_text("x")
    return path


def test_cli_train_patient_split_and_bad_input(tmp_path: Path):
    root, feats, panel, emb = toy.make_toy(tmp_path)
    runner = CliRunner()
    base = ["train", "--dataset", "toy", "--data-root", str(root), "--features", str(feats),
            "--genes", str(panel), "--gene-embeddings", str(emb)]
    bad = tmp_path / "bad.toml"
    bad.write_text("dimension = 3\n")
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "bad_run"), "--config", str(bad)])
    assert res.exit_code == 2 and "unknown setting" in res.output
    assert not (tmp_path / "bad_run").exists()
    other = ["train", "--dataset", "nope", "--data-root", str(root), "--features", str(feats),
             "--genes", str(tmp_path / "missing_panel.txt"), "--gene-embeddings", str(emb),
             "--out", str(tmp_path / "nope_run")]
    res = runner.invoke(app, other)
    assert res.exit_code == 2 and "no prepared dataset 'nope'" in res.output
    assert not (tmp_path / "nope_run").exists()
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "run"), "--split", "patient", "--folds", "B",
                              "--trials", "1", "--d", "16", "--k1", "3", "--epochs", "2", "--batch-size", "32",
                              "--no-ge", "--single-level"])
    assert res.exit_code == 0, res.output
    assert "mean ± std" in flat(res.output) and "B1" in res.output
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["protocol"]["split"] == "patient"
    assert cfg["config"]["hage"]["use_ge"] is False and cfg["config"]["hage"]["single_level"] is True
    assert (tmp_path / "run" / "B" / "trial0" / "model.safetensors").is_file()
