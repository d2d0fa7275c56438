"""``hagekit bench tune``: nested validation never reads a test section; chosen config written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from toys import hage_toy as toy
from typer.testing import CliRunner

from hagekit.cli.main import app
from hagekit.errors import ConfigError


def test_bench_tune_nested_and_writes_the_chosen_config(tmp_path: Path):
    import tomllib

    torch.set_num_threads(1)  # tiny models; the CLI runner does not restore it, nothing else here needs more
    root, feats, panel, emb = toy.make_toy(tmp_path)
    cfg = tmp_path / "base.toml"
    cfg.write_text("[hage]\nd = 16\nn_heads = 4\nk1 = 3\nbatch_size = 32\nmin_steps = 12\nepochs = 1\n")
    out = tmp_path / "tune"
    res = CliRunner().invoke(app, ["bench", "tune", "--data-root", str(root), "--dataset", "toy", "--features",
                                   str(feats), "--genes", str(panel), "--gene-embeddings", str(emb),
                                   "--config", str(cfg), "--space", "lr=1e-3,3e-3;centroids=batch,memory",
                                   "--min-gain", "0", "--out", str(out)])
    assert res.exit_code == 0, res.output
    info = json.loads((out / "tune.json").read_text())
    for f in info["inner_folds"]:  # the outer fold's test section is never trained on nor validated on
        assert f["outer"] not in f["train"] and f["validate"] != f["outer"] and f["validate"] not in f["train"]
    assert len(info["inner_folds"]) == 3
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert rows[0]["stage"] == "base" and {r["stage"] for r in rows} <= {"base", "lr", "centroids"}
    assert len(rows) >= 3
    chosen = tomllib.loads((out / "chosen.toml").read_text())["hage"]
    healthy = [r for r in rows if r["collapsed"] == "False"]  # collapsed configurations are never chosen
    for r in rows:  # the default score is the mean of PCC(all) and PCC(HEG)
        assert r["metric"] == "mean"
        assert float(r["score"]) == pytest.approx((float(r["pcc_all"]) + float(r["pcc_heg"])) / 2)
    best = max(healthy, key=lambda r: float(r["score"])) if healthy else rows[0]
    assert chosen["lr"] == pytest.approx(float(best["lr"])) and chosen["d"] == 16
    # the chosen file is a valid --config for train
    from hagekit.training.run import resolve_settings

    assert resolve_settings(out / "chosen.toml")[0].lr == chosen["lr"]


def test_parse_space_rejects_unknown_settings():
    from hagekit.bench.expression.tune import parse_space

    assert parse_space("lr=1e-3,3e-3;min_steps=0,100") == {"lr": (1e-3, 3e-3), "min_steps": (0, 100)}
    with pytest.raises(ConfigError, match="--space"):
        parse_space("speed=1,2")


def test_tune_metric_and_repeats(tmp_path: Path):
    """``metric`` decides the score; ``repeats`` fits each inner fold on that many 4:1 splits."""
    from hagekit.bench.expression.tune import Search, TuneTask, inner_folds, score_config, tune
    from hagekit.config import RunSettings
    from hagekit.genes.embeddings import load_gene_embeddings
    from hagekit.hage.model import HAGEConfig
    from hagekit.training.dataset import load_dataset

    torch.set_num_threads(1)
    root, feats, panel, emb = toy.make_toy(tmp_path)
    data = load_dataset(root, "toy", feats, genes=toy.GENES)
    vec = load_gene_embeddings(emb).vectors
    base = HAGEConfig(d=16, n_heads=4, k1=3, batch_size=32, min_steps=6, epochs=1)
    inner = inner_folds(data)[:1]
    one = score_config(TuneTask(data, vec, inner, repeats=1), base)
    two = score_config(TuneTask(data, vec, inner, repeats=2), base)
    again = score_config(TuneTask(data, vec, inner, repeats=2), base)
    assert two == {**again, "fit_seconds": two["fit_seconds"], "fit_cpu_seconds": two["fit_cpu_seconds"]}
    assert len(two["per_fold_pcc_all"]) == 2 and two["per_fold_pcc_all"][0] == pytest.approx(one["pcc_all"])
    assert two["per_fold_pcc_all"][1] != two["per_fold_pcc_all"][0]  # another split, another fit

    res = tune(data, vec, base=base, search=Search({"lr": (1e-3, 3e-3)}, metric="pcc_heg"),
               settings=RunSettings(folds=("A1",)))
    for row in res.trials:
        assert row["metric"] == "pcc_heg" and row["score"] == row["pcc_heg"]
    eligible = [r for r in res.trials if not r["collapsed"]]  # a collapsed configuration is never chosen
    assert res.best.lr == (max(eligible, key=lambda r: r["score"])["lr"] if eligible else base.lr)
    # no PCC gain reaches 1: every setting keeps the base value
    stay = tune(data, vec, base=base, settings=RunSettings(folds=("A1",)),
                search=Search({"lr": (1e-3, 3e-3), "batch_size": (16, 32)}, metric="pcc_heg", min_gain=1.0))
    assert stay.best == base and len(stay.trials) == 3
    with pytest.raises(ConfigError, match="--min-gain"):
        tune(data, vec, base=base, search=Search({"lr": (1e-3,)}, min_gain=-0.1))
    with pytest.raises(ConfigError, match="--metric"):
        tune(data, vec, base=base, search=Search({"lr": (1e-3,)}, metric="pcc"))
    with pytest.raises(ConfigError, match="--repeats"):
        tune(data, vec, base=base, search=Search({"lr": (1e-3,)}, repeats=0))


def test_tune_uses_per_fold_embeddings_without_the_inner_validation_section(tmp_path: Path):
    """Embeddings that saw a held-out section: each inner fit gets a set trained on its own training
    sections only; with ``--folds`` leaving the leaked section as an inner validation one: refused."""
    from hagekit.genes.embeddings import embedding_training_sections

    torch.set_num_threads(1)
    root, feats, panel, emb = toy.make_toy(tmp_path, emb_sections=("A1",))
    cfg = tmp_path / "base.toml"
    cfg.write_text("[hage]\nd = 16\nn_heads = 4\nk1 = 3\nbatch_size = 32\nmin_steps = 4\nepochs = 1\n")
    args = ["bench", "tune", "--data-root", str(root), "--dataset", "toy", "--features", str(feats), "--genes",
            str(panel), "--gene-embeddings", str(emb), "--config", str(cfg), "--space", "lr=1e-3"]
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "t1")])
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "t1" / "tune.json").read_text())
    trained_on = sorted(sorted(embedding_training_sections(p)) for p in (emb.parent / "per_fold").glob("*.txt"))
    assert trained_on == sorted(sorted(f["train"]) for f in info["inner_folds"])

    res = CliRunner().invoke(app, [*args, "--folds", "B1", "--out", str(tmp_path / "t2")])  # inner val = A1
    assert res.exit_code == 2 and "inner validation section(s) A1" in " ".join(res.output.split())
    assert not (tmp_path / "t2" / "chosen.toml").exists()
    res = CliRunner().invoke(app, [*args, "--folds", "B1", "--allow-leak", "--out", str(tmp_path / "t3")])
    assert res.exit_code == 0, res.output


def test_tune_a_baseline_writes_a_bench_config(tmp_path: Path):
    """``--method mlp``: the same nested search over the MLP's parameters; the chosen values are a
    ``[baselines.mlp]`` table that ``bench baselines --config`` takes as is."""
    import tomllib

    torch.set_num_threads(1)
    root, feats, panel, emb = toy.make_toy(tmp_path)
    common = ["--data-root", str(root), "--dataset", "toy", "--features", str(feats), "--genes", str(panel)]
    base = tmp_path / "base.toml"
    base.write_text("[baselines.mlp]\nhidden = 16\nepochs = 3\n")
    out = tmp_path / "tune"
    res = CliRunner().invoke(app, ["bench", "tune", *common, "--method", "mlp", "--config", str(base),
                                   "--space", "dropout=0.0,0.3;lr=1e-3,1e-2", "--min-gain", "0", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert {r["stage"] for r in rows} == {"base", "dropout", "lr"} and all(r["collapsed"] == "False" for r in rows)
    chosen = tomllib.loads((out / "chosen.toml").read_text())["baselines"]["mlp"]
    assert chosen["hidden"] == 16 and chosen["epochs"] == 3  # the base's own values are kept
    best = max(rows, key=lambda r: float(r["score"]))
    assert chosen["dropout"] == pytest.approx(float(best["dropout"])) and chosen["lr"] == pytest.approx(float(best["lr"]))
    assert json.loads((out / "tune.json").read_text())["method"] == "mlp"
    bench = CliRunner().invoke(app, ["bench", "baselines", *common, "--methods", "mlp", "--folds", "A1", "--trials",
                                     "1", "--config", str(out / "chosen.toml"), "--out", str(tmp_path / "b")])
    assert bench.exit_code == 0, bench.output
    settings = json.loads((tmp_path / "b" / "summary.json").read_text())["settings"]["methods"]["mlp"]
    assert settings["dropout"] == chosen["dropout"] and settings["hidden"] == 16

    for extra, message in ((["--method", "lasso"], "lasso"), (["--method", "ridge"], "give --space"),
                           (["--method", "mlp", "--space", "depth=2,3"], "--space: 'depth=2,3'"),
                           (["--method", "mlp", "--space", "hidden=1.5"], "hidden")):
        res = CliRunner().invoke(app, ["bench", "tune", *common, *extra, "--out", str(tmp_path / "bad")])
        assert res.exit_code == 2 and message in " ".join(res.output.split()), (extra, res.output)
        assert not (tmp_path / "bad" / "chosen.toml").exists()


def test_tune_fits_baselines_as_the_protocol_does(tmp_path: Path, caplog):
    """A position-aware baseline gets the spots' positions in the inner fits (as in bench baselines)."""
    import logging

    from hagekit.bench.expression.tune import TuneTask, inner_folds, score_config
    from hagekit.training.dataset import load_dataset

    torch.set_num_threads(1)
    root, feats, panel, emb = toy.make_toy(tmp_path)
    data = load_dataset(root, "toy", feats, genes=toy.GENES)
    params = {"epochs": 2, "projection_dim": 16, "heads": 2, "dim_head": 8, "layers": 1, "top_k": 5}
    with caplog.at_level(logging.WARNING):
        res = score_config(TuneTask(data, None, inner_folds(data)[:1], "mclstexp"), params)
    assert np.isfinite(res["pcc_all"]) and np.isnan(res["zi_cos"])
    assert "no spot positions" not in caplog.text
