"""Leak-free per-fold gene embeddings in ``hagekit bench``: when the embeddings file was trained on
a held-out section, each fold's HAGE gets a set trained on that fold's training sections only
(the ``hagekit train`` cache, ``genes/<dataset>/per_fold/``), trained once per fold."""

from __future__ import annotations

import json
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
from clitext import flat
from toys import hage_toy as toy
from typer.testing import CliRunner

from hagekit.cli.main import app
from hagekit.genes.embeddings import embedding_training_sections, embeddings_for_panel
from hagekit.genes.per_fold import FoldEmbeddings, embeddings_for
from hagekit.progress import NullReporter

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST_TOML = "d = 16\nn_heads = 4\nk1 = 3\nk2 = 2\nbatch_size = 32\nlr = 1e-3\n"


def _leaky_toy(tmp: Path) -> tuple[Path, Path, Path, Path, Path]:
    """The toy dataset whose embeddings' sidecar says they saw section A1 (a held-out section)."""
    root, feats, panel, emb = toy.make_toy(tmp, emb_sections=("A1", "Z1"))
    cfg = tmp / "fast.toml"
    cfg.write_text(FAST_TOML)
    return root, feats, panel, emb, cfg


def _args(cmd: str, root: Path, feats: Path, panel: Path, emb: Path, cfg: Path, out: Path) -> list[str]:
    return ["bench", cmd, "--dataset", "toy", "--data-root", str(root), "--features", str(feats),
            "--genes", str(panel), "--gene-embeddings", str(emb), "--config", str(cfg), "--epochs", "1",
            "--out", str(out), "--jobs", "1"]


@pytest.mark.slow  # several processes or full CLI benches: nox -s tests, not the fast lane
def test_bench_baselines_trains_hage_embeddings_per_fold_without_the_test_section(tmp_path: Path):
    root, feats, panel, emb, cfg = _leaky_toy(tmp_path)
    out = tmp_path / "bench"
    res = runner.invoke(app, [*_args("baselines", root, feats, panel, emb, cfg, out), "--methods", "ridge,hage",
                              "--folds", "A1,B1", "--trials", "2", "--save-models"])
    assert res.exit_code == 0, res.output
    assert "per-fold embeddings" in flat(res.output)
    per_fold = json.loads((out / "summary.json").read_text())["settings"]["per_fold_embeddings"]
    assert Path(per_fold["cache_dir"]) == (emb.parent / "per_fold").resolve()
    assert sorted(per_fold["files"]) == ["A1", "B1"]
    # each fold's set was trained on its training sections only (the sidecar's provenance)
    assert sorted(embedding_training_sections(per_fold["files"]["A1"])) == ["A2", "B1"]
    assert sorted(embedding_training_sections(per_fold["files"]["B1"])) == ["A1", "A2"]
    assert sorted(per_fold["trained"]) == sorted(per_fold["files"].values())  # once per fold, not per trial
    # ...and it is what every trial's HAGE model holds (ridge needs none)
    from safetensors.numpy import load_file

    genes = (panel.read_text().split())
    for fold, path in per_fold["files"].items():
        want = embeddings_for_panel(Path(path), genes)
        models = sorted((out / "runs" / "hage" / fold).rglob("model.safetensors"))
        assert len(models) == 2, models
        for m in models:
            np.testing.assert_array_equal(load_file(m)["gene_embeddings"], want)
        cfg_json = json.loads((out / "runs" / "hage" / fold / "config.json").read_text())
        assert cfg_json["config"]["per_fold_embeddings"]["files"][fold] == path
    assert not np.array_equal(embeddings_for_panel(Path(per_fold["files"]["A1"]), genes),
                              embeddings_for_panel(emb, genes))

    # the ablation reuses the cached sets: nothing is trained again
    out2 = tmp_path / "abl"
    res = runner.invoke(app, [*_args("ablation", root, feats, panel, emb, cfg, out2), "--variants", "full,no_ge",
                              "--folds", "A1", "--trials", "1"])
    assert res.exit_code == 0, res.output
    per_fold2 = json.loads((out2 / "summary.json").read_text())["settings"]["per_fold_embeddings"]
    assert per_fold2["files"] == {"A1": per_fold["files"]["A1"]} and per_fold2["trained"] == []


@pytest.mark.parametrize("cmd", ["baselines", "grid"])
def test_bench_no_per_fold_refuses_and_allow_leak_warns(tmp_path: Path, cmd: str):
    root, feats, panel, emb, cfg = _leaky_toy(tmp_path)
    extra = ["--methods", "hage"] if cmd == "baselines" else ["--k1", "3", "--k2", "2"]
    out = tmp_path / "refused"
    res = runner.invoke(app, [*_args(cmd, root, feats, panel, emb, cfg, out), *extra, "--folds", "A1",
                              "--trials", "1", "--no-per-fold-embeddings"])
    assert res.exit_code == 2
    text = flat(res.output)
    assert "held-out section(s) A1" in text and "--allow-leak" in text and "Traceback" not in res.output
    assert not out.exists() and not (emb.parent / "per_fold").exists()

    out = tmp_path / "leaky"
    res = runner.invoke(app, [*_args(cmd, root, feats, panel, emb, cfg, out), *extra, "--folds", "A1",
                              "--trials", "1", "--allow-leak"])
    assert res.exit_code == 0, res.output
    assert "warning: gene embeddings were trained on held-out section(s) A1" in flat(res.output)
    settings = json.loads((out / "summary.json").read_text())["settings"]
    assert settings["allow_leak"] is True and settings["leaked_sections"] == ["A1"]
    assert settings["per_fold_embeddings"] is None and not (emb.parent / "per_fold").exists()


class _LockedReporter(NullReporter):
    """A reporter that cannot be pickled (like the CLI's live rich display)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()


def test_fold_embeddings_are_trained_once_and_parsed_once(tmp_path: Path):
    root, _, panel, emb = toy.make_toy(tmp_path, emb_sections=("A1",))
    genes = panel.read_text().split()
    fe = FoldEmbeddings(root, "toy", genes, dim=8, cache_dir=tmp_path / "per_fold", seed=0,
                        progress=_LockedReporter())
    first = fe.for_sections(["A2", "B1"])
    path = fe.path_for(["B1", "A2"])
    stamp = path.stat().st_mtime_ns
    assert fe.trained == [path] and first.shape == (len(genes), 8)
    # another trial of the fold: the same array from memory, no retraining, no re-parse
    assert fe.for_sections(["B1", "A2"]) is first and embeddings_for(fe, ("A2", "B1")) is first
    assert fe.trained == [path] and path.stat().st_mtime_ns == stamp
    # pickled into a worker process: the reporter stays behind, the parsed sets travel
    clone = pickle.loads(pickle.dumps(fe))
    assert clone.progress is None
    np.testing.assert_array_equal(clone.for_sections(["A2", "B1"]), first)
    # a later run reads the cache file instead of training again
    again = FoldEmbeddings(root, "toy", genes, dim=8, cache_dir=tmp_path / "per_fold", seed=0)
    np.testing.assert_array_equal(again.for_sections(["A2", "B1"]), first)
    assert again.trained == [] and path.stat().st_mtime_ns == stamp
    # a fixed array is used as is
    arr = np.zeros((len(genes), 8), np.float32)
    assert embeddings_for(arr, ["A2"]) is arr
