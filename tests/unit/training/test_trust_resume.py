"""A resume never reuses what no longer matches (issue 19, part A): a run's identity is what it
was made of (genes, sections, their contents), not paths; options and method parameters are
validated before the run folder is touched; a moved workspace resumes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from toys import hage_toy as toy
from typer.testing import CliRunner

from hagekit.cli.main import app
from hagekit.errors import ConfigError, ProvenanceError
from hagekit.io.genelist import write_gene_list
from hagekit.study import StudyInputs
from hagekit.training.run import train_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _kw(tmp: Path, files, **over):
    root, feats, panel, emb = files
    kw = dict(inputs=StudyInputs(root, "toy", feats, panel, emb),
              out=tmp / "run", overrides={**toy.FAST, "folds": "A1"})
    kw.update(over)
    return kw


def _trial_files(run: Path) -> dict[str, tuple[int, bytes]]:
    """Every finished trial's files with their inode: a redone trial gets a new folder (atomic_dir)."""
    return {str(p.relative_to(run)): (p.stat().st_ino, p.read_bytes()) for p in sorted(run.glob("*/trial*/*"))}


def test_changed_panel_contents_same_path_same_count_is_refused_then_redone(tmp_path: Path):
    files = toy.make_toy(tmp_path)
    kw = _kw(tmp_path, files)
    train_run(**kw)
    before = _trial_files(tmp_path / "run")
    # same path, same count, other genes (the panel reversed: a different gene order is other targets)
    write_gene_list(files[2], list(reversed(toy.GENES)))
    with pytest.raises(ProvenanceError, match=r"other settings \(inputs\.genes, inputs\.sections\.\{A1,A2,B1\}\.expression\)"
                       r".*--overwrite"):
        train_run(**kw)
    assert _trial_files(tmp_path / "run") == before  # refused before anything was touched
    train_run(**kw, overwrite=True)
    after = _trial_files(tmp_path / "run")
    assert after.keys() == before.keys() and all(after[k][0] != before[k][0] for k in after)
    assert (tmp_path / "run" / "genes.txt").read_text().split() == list(reversed(toy.GENES))


def test_removed_section_or_changed_features_are_not_reused(tmp_path: Path):
    files = toy.make_toy(tmp_path)
    root, feats = files[0], files[1]
    kw = _kw(tmp_path, files)
    train_run(**kw)
    moved = tmp_path / "B1.h5ad"
    shutil.move(root / "toy" / "B1.h5ad", moved)  # A1's training set loses B1
    with pytest.raises(ProvenanceError, match=r"other settings \(inputs\.sections\.B1, sections\)"):
        train_run(**kw)
    shutil.move(moved, root / "toy" / "B1.h5ad")
    train_run(**kw)  # back as it was: resumes
    # the same feature file name, other features (re-extracted with other weights)
    import h5py

    with h5py.File(feats / "A2.h5", "r+") as f:
        f["features"][0, 0] += 1.0
    with pytest.raises(ProvenanceError, match=r"inputs\.sections\.A2\.features"):
        train_run(**kw)


def test_run_of_the_previous_version_still_resumes_and_its_genes_are_compared(tmp_path: Path):
    files = toy.make_toy(tmp_path)
    kw = _kw(tmp_path, files)
    train_run(**kw)
    run = tmp_path / "run"
    cfg = json.loads((run / "config.json").read_text())
    del cfg["protocol"]["inputs"]  # what 00ca6a1 wrote: no digests, absolute paths, no context settings
    for key in ("genes_path", "data_root", "features_dir"):
        cfg["config"][key] = str((run / cfg["config"][key]).resolve())

    def without_context(node):
        if isinstance(node, dict):
            return {k: without_context(v) for k, v in node.items() if k not in ("context", "context_radius")}
        return node

    assert without_context(cfg) != cfg  # this version records them
    cfg = without_context(cfg)
    (run / "config.json").write_text(json.dumps(cfg))
    before = _trial_files(run)
    train_run(**kw)
    assert _trial_files(run) == before
    assert "inputs" in json.loads((run / "config.json").read_text())["protocol"]  # recorded from now on
    # an old run's genes are its genes.txt: other genes under the same panel path are refused
    (run / "config.json").write_text(json.dumps(cfg))
    write_gene_list(files[2], list(reversed(toy.GENES)))
    with pytest.raises(ProvenanceError, match=r"inputs\.genes"):
        train_run(**kw)


def test_copied_workspace_resumes_with_nothing_retrained(tmp_path: Path):
    ws = tmp_path / "ws"
    files = toy.make_toy(ws)
    runner = CliRunner()
    args = ["train", "--workspace", "{ws}", "--dataset", "toy", "--data-root", "{ws}/data", "--features",
            "{ws}/feats", "--genes", "{ws}/panel.txt", "--gene-embeddings", "{ws}/emb.txt", "--out", "{ws}/runs/r",
            "--folds", "A1", "--trials", "1", "--d", "16", "--k1", "3", "--epochs", "2", "--batch-size", "32"]
    res = runner.invoke(app, [a.format(ws=ws) for a in args])
    assert res.exit_code == 0, res.output
    assert files[0].is_dir()
    copy = tmp_path / "moved" / "ws2"
    shutil.copytree(ws, copy, symlinks=True)  # cp -a
    shutil.rmtree(ws)  # the original is gone: nothing may point back at it
    before = _trial_files(copy / "runs" / "r")
    res = runner.invoke(app, [a.format(ws=copy) for a in args])
    assert res.exit_code == 0, res.output
    assert _trial_files(copy / "runs" / "r") == before
    cfg = json.loads((copy / "runs" / "r" / "config.json").read_text())["config"]
    assert cfg["data_root"] == "../../data" and cfg["gene_embeddings"]["path"] == "../../emb.txt"


def test_rejected_option_leaves_the_run_untouched(tmp_path: Path):
    files = toy.make_toy(tmp_path)
    root, feats, panel, emb = files
    train_run(**_kw(tmp_path, files))
    run = tmp_path / "run"
    snapshot = {str(p): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    runner = CliRunner()
    base = ["train", "--dataset", "toy", "--data-root", str(root), "--features", str(feats), "--genes", str(panel),
            "--gene-embeddings", str(emb), "--out", str(run), "--folds", "A1", "--trials", "1"]
    for extra in ([], ["--overwrite"]):
        res = runner.invoke(app, [*base, "--val-fraction", "0", *extra])
        assert res.exit_code == 2 and "val_fraction" in res.output and "Traceback" not in res.output
        assert len(res.output.strip().splitlines()) == 1, res.output
        assert {str(p): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()} == snapshot
    fresh = [a if a != str(run) else str(tmp_path / "fresh") for a in base]
    res = runner.invoke(app, [*fresh, "--val-fraction", "0"])
    assert res.exit_code == 2 and not (tmp_path / "fresh").exists()  # nothing saved, so a corrected rerun runs
    # run_protocol itself validates every split before it writes
    from hagekit.training.dataset import load_dataset
    from hagekit.training.protocol import ProtocolSettings, run_protocol

    data = load_dataset(root, "toy", feats, toy.GENES)
    with pytest.raises(ConfigError, match="val-fraction"):
        run_protocol(data, lambda ctx: None, ProtocolSettings(trials=1, val_fraction=1.0, out_dir=tmp_path / "p", overwrite=True))
    assert not (tmp_path / "p").exists()


def _bench(files, out: Path, cfg: Path, methods: str) -> list[str]:
    root, feats, panel, emb = files
    return ["bench", "baselines", "--dataset", "toy", "--data-root", str(root), "--features", str(feats),
            "--genes", str(panel), "--gene-embeddings", str(emb), "--out", str(out), "--trials", "1",
            "--folds", "A1", "--methods", methods, "--config", str(cfg)]


@pytest.mark.parametrize(("table", "expected"), [
    ("[baselines.mlp]\nlr = -1.0\n", "[baselines.mlp] lr = -1.0"),
    ("[baselines.xgboost]\nn_estimators = -3\n", "[baselines.xgboost] n_estimators = -3"),
    ("[baselines.ridge]\ncv = 1\n", "[baselines.ridge] cv = 1"),
    ("[baselines.bleep]\ntop_k = 0\n", "[baselines.bleep] top_k = 0"),
    ("[baselines.mclstexp]\ndropout = 1.5\n", "[baselines.mclstexp] dropout = 1.5"),
    ("val_fraction = 0.0\n", "val_fraction"),
])
def test_bad_bench_setting_is_one_line_before_any_write(tmp_path: Path, table: str, expected: str):
    files = toy.make_toy(tmp_path)
    cfg = tmp_path / "bench.toml"
    cfg.write_text(table)
    out = tmp_path / "bench"
    method = table.split(".")[1].split("]")[0] if table.startswith("[") else "ridge"
    res = CliRunner().invoke(app, _bench(files, out, cfg, method))
    assert res.exit_code == 2, res.output
    assert expected in " ".join(res.output.split()) and "Traceback" not in res.output
    assert not out.exists()


def test_every_registered_method_declares_its_parameters():
    """A new method gets up-front checks by declaring ``param_constraints`` for its numbers."""
    import inspect

    from hagekit.baselines import METHODS, get_method, make_method
    from hagekit.learn.param_checks import declared_constraints

    for name in METHODS:
        cls = get_method(name)
        if name == "hage":  # HAGEConfig validates HAGE's settings
            continue
        numeric = [k for k, p in inspect.signature(cls.__init__).parameters.items()
                   if isinstance(p.default, (int, float)) and not isinstance(p.default, bool)]
        declared = set(declared_constraints(cls))
        assert set(numeric) <= declared, (name, set(numeric) - declared)
        make_method(name)  # the defaults pass their own declarations
    with pytest.raises(ConfigError, match=r"\[baselines\.xgboost\] n_estimators = -3"):
        make_method("xgboost", n_estimators=-3)


_TRAIN_SCRIPT = """
import json, logging, sys
import torch
torch.set_num_threads(1)
logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s", stream=sys.stderr)
from hagekit.study import StudyInputs
from hagekit.training.run import train_run
kw = json.loads(sys.argv[1])
train_run(StudyInputs(*kw.pop("inputs")), **kw)
"""


@pytest.mark.slow  # several processes or full CLI benches: nox -s tests, not the fast lane
def test_two_concurrent_trains_on_one_run_train_each_trial_once(tmp_path: Path):
    import os
    import re
    import subprocess
    import sys

    root, feats, panel, emb = toy.make_toy(tmp_path)
    kw = {"inputs": [str(root), "toy", str(feats), str(panel), str(emb)], "out": str(tmp_path / "run"),
          "overrides": {**toy.FAST, "epochs": 2, "folds": "A1,B1", "trials": 2}}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3]), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", _TRAIN_SCRIPT, json.dumps(kw)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    trained = [m for _, err in outs for m in re.findall(r"hage fold (\w+) trial (\d+): PCC\(all\)", err)]
    assert sorted(trained) == [("A1", "0"), ("A1", "1"), ("B1", "0"), ("B1", "1")]
    rows = (tmp_path / "run" / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 4
    assert not list((tmp_path / "run").rglob("*.lock"))


def _two_threads(fn) -> list:
    """Run ``fn()`` in two threads started together; their results (exceptions re-raised)."""
    import threading

    start = threading.Barrier(2)
    results: list = [None, None]

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def test_two_prepares_into_one_folder_build_each_section_once(tmp_path: Path):
    import threading
    import time

    from hagekit.data.prepare import SectionSource, prepare_dataset
    from hagekit.data.section import SectionLabels, make_section

    built: list[str] = []
    guard = threading.Lock()

    def builder(name: str):
        def build():
            with guard:
                built.append(name)
            time.sleep(0.2)  # slow enough that the two writers overlap
            counts = np.random.default_rng(0).poisson(3.0, size=(4, 3))
            return make_section(counts, [f"b{i}" for i in range(4)], ["G1", "G2", "G3"], np.arange(8.0).reshape(4, 2),
                SectionLabels(dataset="toy", section=name, patient="P"))
        return build

    names = ["S1", "S2", "S3", "S4"]
    sources = [SectionSource(n, "P", (), builder(n), has_image=False) for n in names]
    reports = _two_threads(lambda: prepare_dataset(sources, tmp_path, "toy"))
    assert sorted(built) == names  # each section built by one of the two
    assert all([s.section for s in r.sections] == names for r in reports)
    assert not list((tmp_path / "toy").glob(".*.lock"))


def test_two_synths_into_one_folder_write_each_section_once(tmp_path: Path, caplog):
    import logging

    from hagekit.data.synthetic import SynthConfig, synthesize_dataset

    caplog.set_level(logging.INFO, logger="hagekit.data.synthetic")
    results = _two_threads(lambda: synthesize_dataset(tmp_path, SynthConfig.resolve(n_sections=4, n_spots=100, n_genes=40, seed=3)))
    assert results[0] == results[1] and len(results[0]) == 4
    kept = [r for r in caplog.records if "exists with the same settings, kept" in r.getMessage()]
    assert len(kept) == 4  # 8 section visits, 4 writes: every section was written exactly once
