"""``hagekit bench baselines|ablation|grid``: tables, paired statistics and the CLI on a toy
dataset written in the real file formats (sections .h5ad, features .h5, panel, embeddings)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from clitext import flat
from toys import hage_toy as toy
from typer.testing import CliRunner

from hagekit.bench.expression.compare import parse_methods
from hagekit.bench.expression.statistics import build_tables, paired_comparison
from hagekit.cli.main import app
from hagekit.errors import ConfigError

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_torch_thread_module")


@pytest.fixture(scope="module")
def toy_files(tmp_path_factory):
    return toy.make_toy(tmp_path_factory.mktemp("bench_toy"), n=64)


def _row(method, section, trial, pcc, mse=1.0, fit=2.0):
    return {"method": method, "fold": section, "trial": trial, "section": section, "pcc_all": pcc,
            "pcc_heg": pcc + 0.1, "mse": mse, "mae": mse / 2, "n_constant_genes": 0,
            "fit_seconds": fit, "predict_seconds": 0.01}


def test_tables_mean_std_floor_and_paired_wilcoxon():
    from scipy.stats import wilcoxon

    secs = ["S1", "S2", "S3", "S4", "S5", "S6"]
    ref = [0.30, 0.25, 0.40, 0.35, 0.20, 0.33]
    oth = [0.20, 0.26, 0.10, 0.30, 0.15, 0.30]
    rows = [_row("mean", s, t, 0.0, mse=2.0) for s in secs for t in range(2)]
    rows += [_row("hage", s, t, ref[i] + 0.01 * t, mse=1.0) for i, s in enumerate(secs) for t in range(2)]
    rows += [_row("ridge", s, t, oth[i], mse=1.5) for i, s in enumerate(secs) for t in range(2)]
    table, per_section = build_tables(rows, ["mean", "ridge", "hage"])
    by = {e["method"]: e for e in table}
    assert by["mean"]["mse_vs_floor"] == 1.0 and by["ridge"]["mse_vs_floor"] == pytest.approx(0.75)
    hage_vals = [ref[i] + 0.01 * t for i in range(6) for t in range(2)]
    assert by["hage"]["pcc_all_mean"] == pytest.approx(np.mean(hage_vals))
    assert by["hage"]["pcc_all_std"] == pytest.approx(np.std(hage_vals))
    assert by["hage"]["fit_seconds"] == 2.0 and by["hage"]["n_rows"] == 12
    paired = paired_comparison(per_section, "hage", ["mean", "ridge", "hage"])
    vs_ridge = next(p for p in paired if p["method"] == "ridge")
    diff = np.array([r + 0.005 - o for r, o in zip(ref, oth, strict=True)])
    assert (vs_ridge["wins"], vs_ridge["losses"], vs_ridge["ties"]) == (5, 1, 0)
    assert vs_ridge["wilcoxon_p"] == pytest.approx(wilcoxon(diff).pvalue)
    # MSE: lower is better, so the reference wins every section against the mean floor
    mse = paired_comparison(per_section, "hage", ["mean", "hage"], metric="mse")
    assert mse[0]["wins"] == 6


def test_paired_ties_give_p_one():
    per_section = [{"method": m, "section": s, "pcc_all": 0.2} for m in ("a", "b") for s in ("S1", "S2")]
    (p,) = paired_comparison(per_section, "a", ["a", "b"])
    assert p["ties"] == 2 and p["wilcoxon_p"] == 1.0


def test_parse_methods_adds_the_mean_floor_and_refuses_unknown():
    assert parse_methods(["ridge", "hage"]) == ["mean", "ridge", "hage"]
    with pytest.raises(ConfigError, match="unknown method.*lasso.*choose from mean, ridge"):
        parse_methods(["ridge", "lasso"])


def test_run_methods_parallel_equals_sequential(toy_files):
    from hagekit.bench.expression.compare import MethodSpec, Schedule, run_methods
    from hagekit.config import RunSettings
    from hagekit.training.dataset import load_dataset

    root, feats, panel, _ = toy_files
    data = load_dataset(root, "toy", feats, toy.GENES)
    specs = [MethodSpec("mean", "mean"), MethodSpec("ridge", "ridge", {"pca": 8})]
    seq = run_methods(data, specs, RunSettings(trials=1, seed=3))
    par = run_methods(data, specs, RunSettings(trials=1, seed=3), schedule=Schedule(n_jobs=2))
    key = lambda r: (r["method"], r["section"])  # noqa: E731
    assert len(seq) == 6
    for a, b in zip(sorted(seq, key=key), sorted(par, key=key), strict=True):
        assert a["pcc_all"] == b["pcc_all"] and a["mse"] == b["mse"]


def _base_args(toy_files, out):
    root, feats, panel, emb = toy_files
    return ["bench", "baselines", "--dataset", "toy", "--data-root", str(root), "--features", str(feats),
            "--genes", str(panel), "--gene-embeddings", str(emb), "--out", str(out), "--trials", "1"]


def test_cli_baselines_writes_tables_figure_and_paired(toy_files, tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('d = 16\nn_heads = 4\nk1 = 3\nk2 = 2\nbatch_size = 32\nlr = 1e-3\n'
                   '[baselines.ridge]\npca = 8\n[baselines.mlp]\nhidden = 32\n')
    out = tmp_path / "bench"
    res = runner.invoke(app, [*_base_args(toy_files, out), "--methods", "ridge,mlp,hage", "--epochs", "2",
                              "--config", str(cfg), "--folds", "A1,B1"])
    assert res.exit_code == 0, res.output
    for name in ("table.md", "table.csv", "per_section.csv", "paired.csv", "results.csv", "summary.json",
                 "pcc_per_section.png"):
        assert (out / name).is_file(), name
    md = (out / "table.md").read_text()
    assert "same frozen `toy` features (16-d)" in md and "| hage |" in md and "Wilcoxon" in md
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reference"] == "hage"
    assert summary["settings"]["methods"]["mlp"] == {"epochs": 2, "device": "cpu", "hidden": 32}
    assert {p["method"] for p in summary["paired"]} == {"mean", "ridge", "mlp"}
    table = {e["method"]: e for e in summary["table"]}
    assert table["mean"]["pcc_all_mean"] == 0.0 and table["mean"]["mse_vs_floor"] == 1.0
    assert table["ridge"]["pcc_all_mean"] > 0.3  # the toy expression is a function of the features
    assert table["ridge"]["n_rows"] == 2


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--methods", "ridge,lasso"], "unknown method(s) lasso"),
        (["--split", "organ"], "--split: unknown split 'organ'"),
        (["--folds", "Z9"], "--folds: 'Z9' is not a section"),
        (["--device", "tpu"], "--device: unknown device 'tpu'"),
    ],
)
def test_cli_baselines_bad_options_fail_cleanly(toy_files, tmp_path, extra, message):
    out = tmp_path / "bench"
    res = runner.invoke(app, [*_base_args(toy_files, out), *extra])
    assert res.exit_code == 2
    assert message in flat(res.output)
    assert not out.exists()


def test_cli_baselines_missing_inputs_fail_cleanly(toy_files, tmp_path):
    root, feats, panel, emb = toy_files
    out = tmp_path / "bench"
    res = runner.invoke(app, ["bench", "baselines", "--dataset", "toy", "--data-root", str(root),
                              "--features", str(feats), "--genes", str(tmp_path / "nope.txt"),
                              "--methods", "ridge", "--out", str(out)])
    assert res.exit_code == 2 and "gene panel not found" in res.output and not out.exists()
    res = runner.invoke(app, ["bench", "baselines", "--dataset", "toy", "--data-root", str(root),
                              "--features", str(feats), "--genes", str(panel), "--methods", "hage",
                              "--gene-embeddings", str(tmp_path / "none.txt"), "--out", str(out)])
    assert res.exit_code == 2 and "gene embeddings not found" in res.output and not out.exists()
    bad_cfg = tmp_path / "bad.toml"
    bad_cfg.write_text("[baselines.ridge]\nfoo = 1\n")
    res = runner.invoke(app, [*_base_args(toy_files, out), "--methods", "ridge", "--config", str(bad_cfg)])
    assert res.exit_code == 2 and "ridge: unknown parameters foo" in res.output and not out.exists()


@pytest.mark.slow  # several processes or full CLI benches: nox -s tests, not the fast lane
def test_cli_ablation_and_grid_run_hage_variants(toy_files, tmp_path):
    root, feats, panel, emb = toy_files
    cfg = tmp_path / "fast.toml"
    cfg.write_text("d = 16\nn_heads = 4\nk1 = 3\nk2 = 2\nbatch_size = 32\nlr = 1e-3\n")
    common = ["--dataset", "toy", "--data-root", str(root), "--features", str(feats), "--genes", str(panel),
              "--gene-embeddings", str(emb), "--trials", "1", "--epochs", "1", "--folds", "B1",
              "--config", str(cfg), "--jobs", "1"]
    out = tmp_path / "abl"
    res = runner.invoke(app, ["bench", "ablation", *common, "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert [e["method"] for e in summary["table"]] == [
        "full", "no_ge", "no_hierarchy", "no_ge_no_hierarchy", "single_level"]
    assert summary["reference"] == "full"
    assert summary["settings"]["variants"]["single_level"] == {"single_level": True}
    out = tmp_path / "grid"
    res = runner.invoke(app, ["bench", "grid", *common, "--k1", "2,3", "--k2", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert [e["method"] for e in summary["table"]] == ["k1=2,k2=2", "k1=3,k2=2"]
    assert all(e["n_rows"] == 1 for e in summary["table"])


@pytest.mark.parametrize(
    "cmd,extra,message",
    [
        ("ablation", ["--variants", "full,no_gene"], "unknown variant(s) no_gene"),
        ("grid", ["--k1", "10,x"], "--k1: expected comma-separated integers"),
        ("grid", ["--k2", "0"], "cluster counts must be >= 1"),
    ],
)
def test_cli_ablation_grid_bad_options(toy_files, tmp_path, cmd, extra, message):
    root, feats, panel, emb = toy_files
    out = tmp_path / cmd
    res = runner.invoke(app, ["bench", cmd, "--dataset", "toy", "--data-root", str(root), "--features",
                              str(feats), "--genes", str(panel), "--gene-embeddings", str(emb),
                              "--out", str(out), *extra])
    assert res.exit_code == 2 and message in flat(res.output) and not out.exists()


def test_paired_differences_below_tolerance_are_ties():
    per_section = [{"method": "a", "section": s, "pcc_all": 0.2} for s in ("S1", "S2", "S3")]
    per_section += [{"method": "b", "section": s, "pcc_all": 0.2 + d}
                    for s, d in (("S1", 2e-5), ("S2", -3e-5), ("S3", -0.05))]
    (p,) = paired_comparison(per_section, "a", ["a", "b"])
    assert (p["wins"], p["losses"], p["ties"]) == (1, 0, 2)


def test_cli_baselines_resume_baselines_when_hage_joins(toy_files, tmp_path):
    """HAGE's settings are recorded in HAGE's runs only: adding HAGE to (or retuning it in) a bench
    folder resumes the baselines' finished runs instead of refusing them as 'other settings'."""
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('d = 16\nn_heads = 4\nk1 = 3\nk2 = 2\nbatch_size = 32\nlr = 1e-3\nmin_steps = 2\n')
    out = tmp_path / "bench"
    res = runner.invoke(app, [*_base_args(toy_files, out), "--methods", "ridge", "--folds", "A1"])
    assert res.exit_code == 0, res.output
    ridge = out / "runs" / "ridge" / "A1"
    trials = sorted(ridge.rglob("trial*/*.json"))
    assert trials
    before = [(p.stat().st_mtime_ns, p.read_bytes()) for p in trials]
    assert "hage" not in json.loads((ridge / "config.json").read_text())["config"]
    res = runner.invoke(app, [*_base_args(toy_files, out), "--methods", "ridge,hage", "--folds", "A1", "--epochs",
                              "1", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert [(p.stat().st_mtime_ns, p.read_bytes()) for p in trials] == before  # resumed, not refitted
    assert json.loads((out / "runs" / "hage" / "A1" / "config.json").read_text())["config"]["hage"]["d"] == 16
