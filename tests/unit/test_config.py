"""One configuration layer (hagekit.config): nested sections that resolve to the same flat settings,
one coercion, one precedence (defaults < recipe < file < flags) for HAGE, the run and every method;
the study's inputs resolved once from the workspace; and the benches deciding HAGE by capability."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from pathlib import Path

import pytest
from toys import hage_toy as toy
from typer.testing import CliRunner

from hagekit.config import (
    HAGE_SECTIONS,
    RunSettings,
    coerce_setting,
    load_config_file,
    resolve_layers,
)
from hagekit.errors import ConfigError


def test_sections_group_every_hage_field_exactly_once() -> None:
    from hagekit.hage.model import HAGEConfig

    grouped = [f for fields in HAGE_SECTIONS.values() for f in fields]
    assert sorted(grouped) == sorted(HAGEConfig.field_names()) and len(grouped) == len(set(grouped))
    cfg = HAGEConfig(lr=3e-4, epochs=4)
    assert cfg.sections()["optimiser"]["lr"] == 3e-4 and cfg.sections()["budget"]["epochs"] == 4
    assert HAGEConfig.from_dict({k: v for part in cfg.sections().values() for k, v in part.items()}) == cfg


def test_nested_sections_resolve_to_the_flat_settings_and_the_same_record(tmp_path: Path) -> None:
    from hagekit.training.run import resolve_settings

    flat = tmp_path / "flat.toml"
    flat.write_text('[hage]\nd = 64\nlr = 3e-4\nschedule = "step"\nepochs = 4\ncalibrate = false\n[run]\ntrials = 2\n')
    nested = tmp_path / "nested.toml"
    nested.write_text('[hage.model]\nd = 64\n[hage.optimiser]\nlr = 3e-4\nschedule = "step"\n[hage.budget]\nepochs = 4\n'
                      '[hage.data]\ncalibrate = false\n[run]\ntrials = 2\n')
    a, b = resolve_settings(flat), resolve_settings(nested)
    assert a == b and a[0].d == 64 and a[0].calibrate is False and a[1].trials == 2
    assert json.dumps(a[0].to_dict()) == json.dumps(b[0].to_dict())  # config.json records the same bytes
    assert list(a[0].to_dict()) == list(dataclasses.asdict(a[0]))  # flat keys, field order
    misplaced = tmp_path / "bad.toml"
    misplaced.write_text("[hage.loss]\nlr = 1e-3\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: \[hage\.loss\]: lr not in this section"):
        load_config_file(misplaced)


def test_one_precedence_defaults_recipe_file_flags_for_hage_run_and_methods(tmp_path: Path) -> None:
    from hagekit.training.run import settings_from

    recipe = tmp_path / "recipe.toml"
    recipe.write_text("[hage]\nlr = 1e-4\nepochs = 7\nk1 = 11\n[run]\ntrials = 3\nseed = 4\n"
                      "[baselines.ridge]\npca = 4\nalphas = [1.0]\n[datasets.toy]\nk1 = 12\n")
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f'recipe = "{recipe}"\n[hage]\nepochs = 9\n[run]\nseed = 5\n[baselines.ridge]\npca = 8\n')
    layers = resolve_layers(cfg, {"seed": 6, "lr": None}, dataset="toy")
    hage, run = settings_from(layers)
    assert (hage.lr, hage.epochs, hage.k1, hage.d) == (1e-4, 9, 12, 256)  # recipe, file, recipe's dataset, default
    assert (run.trials, run.seed) == (3, 6)  # recipe; the flag over the file over the recipe
    assert layers.methods == {"ridge": {"pca": 8, "alphas": [1.0]}}
    assert layers.source == str(cfg)


def test_one_coercion_for_every_setting(tmp_path: Path) -> None:
    assert coerce_setting("allow_leak", "no", bool, "x") is False and coerce_setting("calibrate", "On", bool, "x")
    with pytest.raises(ConfigError, match=r"cfg\.toml: allow_leak='maybe' is not a valid bool"):
        RunSettings.from_dict({"allow_leak": "maybe"}, source="cfg.toml")
    with pytest.raises(ConfigError, match=r"trials=2\.5 is not a valid int"):
        RunSettings.from_dict({"trials": 2.5})
    assert RunSettings.from_dict({"folds": "A1, B1", "trials": "2"}) == RunSettings(folds=("A1", "B1"), trials=2)
    bad = tmp_path / "c.toml"
    bad.write_text("[hage]\nuse_ge = 'perhaps'\n")
    from hagekit.training.run import resolve_settings

    with pytest.raises(ConfigError, match=r"c\.toml: use_ge='perhaps' is not a valid bool"):
        resolve_settings(bad)


def test_study_inputs_resolve_once_from_the_workspace(tmp_path: Path) -> None:
    from hagekit.study import StudyInputs
    from hagekit.workspace import Workspace

    ws = Workspace.resolve(tmp_path / "ws")
    inputs = StudyInputs.from_workspace(ws, "her2", encoder="uni", genes_path=str(tmp_path / "p.txt"))
    assert inputs.data_root == ws.data_root and inputs.features_dir == ws.features_dir("her2", "uni")
    assert inputs.genes_path == tmp_path / "p.txt" and inputs.embeddings_path == ws.embeddings_path("her2")
    assert StudyInputs("r", "d", "f", "g").embeddings_path is None


def test_benches_name_no_method() -> None:
    """No ``== "hage"`` in the generic benches or the CLI: HAGE is decided by capability."""
    root = Path(__file__).resolve().parents[2] / "hagekit"
    pattern = re.compile(r'== "hage"|!= "hage"|"hage" in')
    hits = [f"{p}:{i}" for folder in ("bench", "cli") for p in (root / folder).rglob("*.py")
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert hits == []


@pytest.fixture
def hage_variant():
    """A HAGE variant registered from this test alone: HAGE with neighbour-mean context."""
    from hagekit.baselines import METHODS, register_method
    from hagekit.hage.estimator import HAGERegressor

    class HAGEWithContext(HAGERegressor):
        def _config(self):
            return super()._config().replace(context="mean")

    register_method("hage-ctx-test", HAGEWithContext)
    yield "hage-ctx-test"
    METHODS.unregister("hage-ctx-test")


def test_a_registered_hage_variant_runs_in_bench_baselines_by_capability(hage_variant, tmp_path: Path) -> None:
    import torch

    from hagekit.bench.expression.compare import default_reference, takes_embeddings
    from hagekit.bench.expression.tune import tune_folder
    from hagekit.cli.main import app

    torch.set_num_threads(1)
    assert takes_embeddings(hage_variant) and not takes_embeddings("ridge")
    assert default_reference(["mean", "ridge", hage_variant, "hage"]) == hage_variant
    assert (tune_folder("hage"), tune_folder("mlp")) == ("bench-tune", "bench-tune-mlp")
    root, feats, panel, emb = toy.make_toy(tmp_path)
    cfg = tmp_path / "fast.toml"
    cfg.write_text("[hage]\nd = 16\nn_heads = 4\nk1 = 3\nk2 = 2\nbatch_size = 32\nmin_steps = 4\n")
    out = tmp_path / "bench"
    res = CliRunner().invoke(app, ["bench", "baselines", "--data-root", str(root), "--dataset", "toy", "--features",
                                   str(feats), "--genes", str(panel), "--gene-embeddings", str(emb), "--config",
                                   str(cfg), "--methods", f"ridge,hage,{hage_variant}", "--trials", "1",
                                   "--epochs", "1", "--folds", "A1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = {r["method"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert set(rows) == {"mean", "ridge", "hage", hage_variant}
    assert rows["hage"]["pcc_all"] != rows[hage_variant]["pcc_all"]  # the variant did fit with context
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reference"] == "hage" and summary["settings"]["hage"]["epochs"] == 1
    for method, takes in (("hage", True), (hage_variant, True), ("ridge", False)):
        recorded = json.loads((out / "runs" / method / "A1" / "config.json").read_text())["config"]
        assert (recorded.get("hage") is not None) == takes, method  # HAGE's config: by what the class takes
        assert (recorded.get("gene_embeddings") is not None) == takes, method


def test_a_registered_hage_variant_is_tuned_through_the_hage_config(hage_variant, tmp_path: Path) -> None:
    import tomllib

    import torch

    from hagekit.cli.main import app

    torch.set_num_threads(1)
    root, feats, panel, emb = toy.make_toy(tmp_path)
    cfg = tmp_path / "fast.toml"
    cfg.write_text("[hage]\nd = 16\nn_heads = 4\nk1 = 3\nk2 = 2\nbatch_size = 32\nmin_steps = 4\nepochs = 1\n")
    out = tmp_path / "tune"
    res = CliRunner().invoke(app, ["bench", "tune", "--data-root", str(root), "--dataset", "toy", "--features",
                                   str(feats), "--genes", str(panel), "--gene-embeddings", str(emb), "--config",
                                   str(cfg), "--method", hage_variant, "--space", "lr=1e-3", "--out", str(out)])
    assert res.exit_code == 0, res.output
    chosen = tomllib.loads((out / "chosen.toml").read_text())
    assert list(chosen) == ["hage"] and chosen["hage"]["lr"] == 1e-3 and chosen["hage"]["d"] == 16
    assert json.loads((out / "tune.json").read_text())["method"] == hage_variant
