"""Files a rerun must not trust blindly, and files a user must be able to read (issue 19, part A):
non-UTF-8 paths, damaged per-fold embedding caches, a trial folder replaced by a file, a truncated
CLAM .pt, summaries and sidecars of the wrong types, and output modes."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from toys import hage_toy as toy
from typer.testing import CliRunner

from hagekit.cli.main import app
from hagekit.errors import DataError
from hagekit.study import StudyInputs
from hagekit.training.run import train_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _inodes(run: Path) -> dict[str, int]:
    return {str(p.relative_to(run)): p.stat().st_ino for p in sorted(run.glob("*/trial*/*"))}


def _non_utf8_dir(tmp_path: Path) -> Path:
    d = Path(os.fsdecode(os.fsencode(tmp_path) + b"/ws\xff"))
    try:
        d.mkdir()
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system does not take non-UTF-8 names")
    return d


def test_run_under_a_non_utf8_path_resumes_and_its_models_load(tmp_path: Path):
    ws = _non_utf8_dir(tmp_path)
    root, feats, panel, emb = toy.make_toy(ws)
    kw = dict(inputs=StudyInputs(root, "toy", feats, panel, emb),
              out=ws / "run", overrides={**toy.FAST, "folds": "A1"})
    first = train_run(**kw)
    before = _inodes(ws / "run")
    again = train_run(**kw)
    assert _inodes(ws / "run") == before and again.rows == first.rows  # resumed, not "damaged"
    from hagekit.hage.estimator import HAGERegressor

    model = HAGERegressor.load(ws / "run" / "A1" / "trial0")
    assert model.n_features_in_ == 16
    from hagekit.hage.ge_encoder import export_encoder, load_ge_head

    out = export_encoder(ws / "run", ws / "ge.safetensors", force=True)
    head, _ = load_ge_head(f"{out}:force")  # the toy model collapsed; loading is what is tested
    assert head is not None
    from hagekit.predict import predict_section

    predict_section(ws / "run", feats / "A1.h5", section=root / "toy" / "A1.h5ad", out=ws / "pred.h5ad")
    assert (ws / "pred.h5ad").is_file()


def test_feature_outputs_under_a_non_utf8_path(tmp_path: Path):
    import h5py

    from hagekit.io.h5 import read_features, write_features

    ws = _non_utf8_dir(tmp_path)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    xy = np.arange(10).reshape(5, 2) * 100
    path = write_features(ws / "s.h5", x, xy, barcodes=[f"b{i}" for i in range(5)],
                          attrs={"encoder": "toy", "source": ws / "slide.svs"},
                          coords_attrs={"patch_size": 224, "patch_size_level0": 224, "patch_level": 0})
    with h5py.File(path, "r") as f:
        assert f["features"].attrs["savetodir"].endswith("ws\\xff")
    assert np.array_equal(read_features(path).features, x)
    res = CliRunner().invoke(app, ["export-features", str(ws), "--out", str(ws / "clam")])
    assert res.exit_code == 0, res.output
    assert (ws / "clam" / "pt_files" / "s.pt").is_file()


def _per_fold_run(tmp_path: Path):
    root, feats, panel, emb = toy.make_toy(tmp_path, emb_sections=("A1", "Z1"))
    kw = dict(inputs=StudyInputs(root, "toy", feats, panel, emb),
              overrides={**toy.FAST, "folds": "A1", "epochs": 1})
    return kw, emb.parent / "per_fold"


@pytest.mark.parametrize("damage", ["truncated_at_line", "garbled"])
def test_damaged_per_fold_embeddings_cache_is_rebuilt(tmp_path: Path, damage: str):
    from hagekit.genes.per_fold import FoldEmbeddings

    kw, cache = _per_fold_run(tmp_path)
    train_run(out=tmp_path / "run1", **kw)
    (path,) = sorted(cache.glob("*.txt"))
    good = path.read_text()
    lines = good.splitlines(keepends=True)
    path.write_text("".join(lines[: len(lines) // 2]) if damage == "truncated_at_line"
                    else good.replace(lines[1].split()[1], "x1y", 1))
    fe = FoldEmbeddings(kw["inputs"].data_root, "toy", toy.GENES, dim=8, cache_dir=cache)
    vectors = fe.for_sections(["A2", "B1"])
    assert fe.trained == [path] and path.read_text() == good  # rebuilt to the same contents
    assert np.abs(vectors).sum(axis=1).min() > 0  # no gene left with a zero vector
    # a cache written before digests were recorded is rebuilt once too
    side = Path(str(path) + ".json")
    meta = json.loads(side.read_text())
    del meta["content_sha256"]
    side.write_text(json.dumps(meta))
    fe = FoldEmbeddings(kw["inputs"].data_root, "toy", toy.GENES, dim=8, cache_dir=cache)
    fe.for_sections(["A2", "B1"])
    assert fe.trained == [path] and "content_sha256" in json.loads(side.read_text())


def test_trial_folder_replaced_by_a_file_is_redone(tmp_path: Path):
    root, feats, panel, emb = toy.make_toy(tmp_path)
    kw = dict(inputs=StudyInputs(root, "toy", feats, panel, emb),
              out=tmp_path / "run", overrides={**toy.FAST, "folds": "A1", "epochs": 1})
    first = train_run(**kw)
    trial = tmp_path / "run" / "A1" / "trial0"
    import shutil

    shutil.rmtree(trial)
    trial.write_text("not a folder")
    again = train_run(**kw)
    assert trial.is_dir() and (trial / "model.safetensors").is_file()
    assert [r["pcc_all"] for r in again.rows] == [r["pcc_all"] for r in first.rows]


def test_truncated_clam_pt_is_rewritten(tmp_path: Path):
    import torch

    from hagekit.io.clam import export_clam
    from hagekit.io.h5 import write_features

    x = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    write_features(tmp_path / "f" / "s.h5", x, np.arange(100).reshape(50, 2) * 224, barcodes=None,
                   attrs={"encoder": "toy"}, coords_attrs={"patch_size": 224, "patch_size_level0": 224, "patch_level": 0})
    export_clam(tmp_path / "f", tmp_path / "clam")
    pt = tmp_path / "clam" / "pt_files" / "s.pt"
    whole = pt.read_bytes()
    pt.write_bytes(whole[: len(whole) // 2])
    res = export_clam(tmp_path / "f", tmp_path / "clam")
    assert res.written == ["s"] and res.skipped == []
    assert torch.equal(torch.load(pt, weights_only=True), torch.from_numpy(x))
    assert export_clam(tmp_path / "f", tmp_path / "clam").skipped == ["s"]  # whole: kept


@pytest.mark.parametrize("bad", [
    {"per_section": {"A1": {"pcc_all": "x", "pcc_heg": 1, "mse": 1, "mae": 1}}},
    {"per_section": [], "overall": {}},
    {"per_section": {}, "overall": {"pcc_all": 3}},
])
def test_report_on_a_summary_of_wrong_types_is_one_line(tmp_path: Path, bad: dict):
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps(bad))
    (run / "genes.txt").write_text("G0\n")
    (run / "A1" / "trial0").mkdir(parents=True)  # one finished trial, so only the summary is wrong
    (run / "A1" / "trial0" / "metrics.json").write_text(json.dumps({"rows": [], "per_gene_pcc": {"A1": [0.5]}}))
    res = CliRunner().invoke(app, ["report", str(run)])
    assert res.exit_code == 2, res.output
    assert "summary.json" in res.output and "Traceback" not in res.output


def test_embeddings_sidecar_sections_of_other_types(tmp_path: Path):
    from hagekit.genes.embeddings import embedding_training_sections
    from hagekit.training.run import check_embedding_leak

    root, feats, panel, emb = toy.make_toy(tmp_path)
    side = Path(str(emb) + ".json")
    side.write_text(json.dumps({"method": "test", "sections": "A1"}))
    assert embedding_training_sections(emb) == {"A1"}  # one name, not its letters
    from hagekit.errors import ProvenanceError

    with pytest.raises(ProvenanceError, match="A1"):
        check_embedding_leak(emb, ["A1"], allow_leak=False)
    side.write_text(json.dumps({"method": "test", "sections": 5}))
    with pytest.raises(DataError, match=r"emb\.txt\.json.*sections"):
        embedding_training_sections(emb)
    res = CliRunner().invoke(app, ["train", "--dataset", "toy", "--data-root", str(root), "--features", str(feats),
                                   "--genes", str(panel), "--gene-embeddings", str(emb), "--out",
                                   str(tmp_path / "run")])
    assert res.exit_code == 2 and "Traceback" not in res.output and "sections" in res.output


def test_model_files_honour_the_umask(tmp_path: Path):
    old = os.umask(0o022)
    try:
        root, feats, panel, emb = toy.make_toy(tmp_path)
        train_run(inputs=StudyInputs(root, "toy", feats, panel, emb),
                  out=tmp_path / "run", overrides={**toy.FAST, "folds": "A1", "epochs": 1})
        from hagekit.baselines import make_method
        from hagekit.hage.ge_encoder import export_encoder

        ge = export_encoder(tmp_path / "run", tmp_path / "ge.safetensors", force=True)
        rng = np.random.default_rng(0)
        make_method("mean").fit(rng.normal(size=(9, 3)), rng.normal(size=(9, 2))).save(tmp_path / "mean")
    finally:
        os.umask(old)
    for path in (tmp_path / "run" / "A1" / "trial0" / "model.safetensors", ge, tmp_path / "mean" / "model.safetensors",
                 tmp_path / "run" / "metrics.csv"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
