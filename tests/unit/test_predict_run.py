"""``hagekit predict``/``report``/``export-encoder`` and the ``ge:`` encoder on a tiny trained run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import torch
from clitext import flat
from toys import hage_toy as toy
from typer.testing import CliRunner

from hagekit.cli.main import app
from hagekit.errors import ConfigError, EncoderError, ProvenanceError
from hagekit.predict import ModelChoice, predict_section

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-fold run on features that claim to come from the ``builtin`` encoder."""
    from hagekit.encoders import create_encoder
    from hagekit.study import StudyInputs
    from hagekit.training.run import train_run

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("hage_run")
    base = create_encoder("builtin")
    root, feats, panel, emb = toy.make_toy(tmp, dim=base.dim, encoder="builtin", sha=base.weights_sha256)
    train_run(inputs=StudyInputs(root, "toy", feats, panel, emb),
              out=tmp / "run", overrides={**toy.FAST, "folds": "A1,B1"})
    yield tmp, root, feats
    torch.set_num_threads(n)


def test_predict_writes_aligned_anndata_and_figure(trained):
    tmp, root, feats = trained
    out = tmp / "pred" / "A1.h5ad"
    res = runner.invoke(app, ["predict", "--run", str(tmp / "run"), "--features", str(feats / "A1.h5"),
                              "--section", str(root / "toy" / "A1.h5ad"), "--out", str(out),
                              "--fold", "A1", "--trial", "0", "--plot", "G1,G2"])
    assert res.exit_code == 0, res.output
    assert "PCC(all)" in flat(res.output)
    pred = ad.read_h5ad(out)
    sec = ad.read_h5ad(root / "toy" / "A1.h5ad")
    assert list(pred.obs_names) == list(sec.obs_names) and list(pred.var_names) == toy.GENES
    np.testing.assert_array_equal(pred.obsm["spatial"], sec.obsm["spatial"])
    assert set(pred.uns["spatial"]["A1"]) == set(sec.uns["spatial"]["A1"])
    assert pred.layers["truth"].shape == pred.X.shape and np.isfinite(pred.X).all()
    assert pred.uns["hagekit"]["models"] == ["A1/trial0"]
    from PIL import Image

    for gene in ("G1", "G2"):
        with Image.open(tmp / "pred" / f"A1_{gene}.png") as img:
            assert img.info["dpi"][0] >= 199 and img.size[0] > 1000


def test_ensemble_is_the_mean_of_all_models(trained):
    tmp, root, feats = trained
    kw = dict(section=root / "toy" / "A2.h5ad")
    parts = [predict_section(tmp / "run", feats / "A2.h5", models=ModelChoice(fold=f), **kw).adata.X for f in ("A1", "B1")]
    ens = predict_section(tmp / "run", feats / "A2.h5", models=ModelChoice(ensemble=True), **kw)
    np.testing.assert_allclose(ens.adata.X, (parts[0] + parts[1]) / 2, rtol=1e-6, atol=1e-6)
    assert len(ens.models) == 2
    with pytest.raises(ConfigError, match="--fold F"):
        predict_section(tmp / "run", feats / "A2.h5", **kw)  # A2 was not held out: ambiguous
    # a held-out section defaults to its own fold's models
    assert [p.parent.name for p in predict_section(tmp / "run", feats / "B1.h5").models] == ["B1"]
    with pytest.raises(ConfigError, match="no model"):
        predict_section(tmp / "run", feats / "A2.h5", models=ModelChoice(fold="Z9"), **kw)


def test_features_of_another_encoder_are_refused(trained):
    from hagekit.io.h5 import read_features, write_features

    tmp, root, feats = trained
    ff = read_features(feats / "A1.h5")
    other = tmp / "other" / "A1.h5"
    write_features(other, ff.features, ff.coords, barcodes=ff.barcodes,
                   attrs={**ff.attrs, "encoder": "uni", "encoder_weights_sha256": "f" * 64})
    out = tmp / "refused.h5ad"
    res = runner.invoke(app, ["predict", "--run", str(tmp / "run"), "--features", str(other),
                              "--out", str(out), "--fold", "A1"])
    assert res.exit_code == 2 and "encoder" in res.output and "run" in res.output
    assert not out.exists()


def test_section_with_another_panel_is_refused(trained):
    from hagekit.data.section import SectionLabels, make_section, read_section, write_section

    tmp, root, feats = trained
    sec = read_section(root / "toy" / "A1.h5ad")
    keep = [g for g in sec.var_names if g != "G3"]
    other = make_section(sec[:, keep].X, list(sec.obs_names), keep, sec.obsm["spatial"],
        SectionLabels(dataset="toy", section="A1", patient="A"))
    write_section(other, tmp / "panel2" / "A1.h5ad")
    out = tmp / "refused2.h5ad"
    with pytest.raises(ProvenanceError, match="panel genes"):
        predict_section(tmp / "run", feats / "A1.h5", section=tmp / "panel2" / "A1.h5ad", out=out, models=ModelChoice(fold="A1"))
    assert not out.exists()
    res = runner.invoke(app, ["predict", "--run", str(tmp / "run"), "--features", str(feats / "A1.h5"),
                              "--out", str(out), "--fold", "A1", "--plot", "NOPE"])
    assert res.exit_code == 2 and "NOPE" in res.output and not out.exists()


def test_report_writes_table_csv_histogram(trained):
    tmp, _, _ = trained
    res = runner.invoke(app, ["report", str(tmp / "run"), "--out", str(tmp / "rep"), "--top", "3"])
    assert res.exit_code == 0, res.output
    assert "mean ± std" in flat(res.output)
    lines = (tmp / "rep" / "per_gene_pcc.csv").read_text().splitlines()
    assert lines[0].startswith("gene,pcc_mean,pcc_std,n,A1/trial0/A1,B1/trial0/B1") and len(lines) == 13
    assert (tmp / "rep" / "pcc_histogram.png").stat().st_size > 1000
    res = runner.invoke(app, ["report", str(tmp / "nothing")])
    assert res.exit_code == 2 and "summary.json" in res.output


def test_export_encoder_and_ge_registry_entry(trained):
    from hagekit.encoders import create_encoder
    from hagekit.hage.estimator import HAGERegressor

    tmp, _, feats = trained
    out = tmp / "ge.safetensors"
    res = runner.invoke(app, ["export-encoder", "--run", str(tmp / "run"), "--out", str(out),
                              "--fold", "B1", "--trial", "0", "--force"])  # a 3-epoch toy run may collapse
    assert res.exit_code == 0, res.output
    from safetensors import safe_open

    with safe_open(str(out), framework="pt") as fh:
        meta = fh.metadata()
        assert meta["base_encoder"] == "builtin" and json.loads(meta["genes"]) == toy.GENES
        assert fh.get_tensor("gene_embeddings").shape == (12, 8)
    # the run folder can go: the exported file is self-contained
    moved = tmp / "moved_run"
    shutil.copytree(tmp / "run", moved)
    from_file = create_encoder(f"ge:{out}:force")
    from_run = create_encoder(f"ge:{moved}:B1:0:force")
    assert from_file.dim == from_run.dim == toy.FAST["d"]
    base = create_encoder("builtin")
    images = torch.rand(3, 3, base.input_size, base.input_size)
    with torch.inference_mode():
        z_file, z_run = from_file.model(images), from_run.model(images)
        feats_img = base.model(images).numpy()
    torch.testing.assert_close(z_file, z_run)
    est = HAGERegressor.load(tmp / "run" / "B1" / "trial0")
    np.testing.assert_allclose(z_file.numpy(), est.embed(feats_img), rtol=1e-5, atol=1e-5)
    assert from_file.weights_sha256 == from_run.weights_sha256 != base.weights_sha256
    with pytest.raises(EncoderError, match="no such run"):
        create_encoder(f"ge:{tmp / 'missing'}")
    with pytest.raises(EncoderError, match="no model for fold"):
        create_encoder(f"ge:{moved}:Z1:0")
    res = runner.invoke(app, ["export-encoder", "--run", str(tmp / "run"), "--out", str(tmp / "ge.bin")])
    assert res.exit_code == 2 and ".safetensors" in res.output and not (tmp / "ge.bin").exists()


def test_ge_encoder_rebuilds_a_random_weight_base(tmp_path: Path):
    """A run trained on seeded --random-weights features rebuilds the same base encoder."""
    from hagekit.encoders import create_encoder
    from hagekit.hage.ge_encoder import build_ge_encoder
    from hagekit.study import StudyInputs
    from hagekit.training.run import train_run

    spec = "timm:vit_tiny_patch16_224"
    base = create_encoder(spec, random_weights=True)
    root, feats, panel, emb = toy.make_toy(tmp_path, dim=base.dim, encoder=spec, sha=base.weights_sha256,
                                           random_weights=True)
    train_run(inputs=StudyInputs(root, "toy", feats, panel, emb),
              out=tmp_path / "run", overrides={**toy.FAST, "folds": "A1"})
    bundle = build_ge_encoder(str(tmp_path / "run") + ":force")
    assert bundle.random_weights and bundle.config["base_weights_sha256"] == base.weights_sha256
    z = bundle.model(torch.zeros(2, 3, base.input_size, base.input_size))
    assert z.shape == (2, toy.FAST["d"])


def test_prediction_feeds_scanpys_standard_pipeline(trained):
    """scanpy's contract: non-negative X, ``uns["log1p"]`` marking log data; the usual
    normalize_total -> log1p -> highly_variable_genes gives no NaN, and HVG runs directly on X."""
    import scanpy as sc

    tmp, root, feats = trained
    res = predict_section(tmp / "run", feats / "A1.h5", section=root / "toy" / "A1.h5ad", models=ModelChoice(fold="A1", trial=0))
    pred = res.adata
    raw = pred.layers["raw_prediction"]
    assert (pred.X >= 0).all() and np.array_equal(pred.X, np.maximum(raw, 0))
    assert pred.uns["log1p"] == {"base": None} and "clipped at 0" in pred.uns["hagekit"]["X"]
    assert "raw_prediction" in pred.uns["hagekit"]["layers"]
    direct = pred.copy()
    sc.pp.highly_variable_genes(direct, n_top_genes=3)
    assert direct.var["highly_variable"].sum() >= 3
    again = pred.copy()
    sc.pp.normalize_total(again)
    sc.pp.log1p(again)
    sc.pp.highly_variable_genes(again, n_top_genes=3)
    assert np.isfinite(again.X).all() and again.var["highly_variable"].sum() >= 3


def test_report_states_and_converts_the_log_base(trained, tmp_path):
    """mclSTExp-lineage tables are log10 (scprep): --log-base 10 gives MSE / ln(10)^2, MAE / ln(10)."""
    import math

    from hagekit.report import report_run

    tmp, _, _ = trained
    e = report_run(tmp / "run", out=tmp_path / "e")
    ten = report_run(tmp / "run", out=tmp_path / "ten", log_base="10")
    for m, k in (("mse", math.log(10) ** 2), ("mae", math.log(10))):
        assert ten.summary["overall"][m]["mean"] == pytest.approx(e.summary["overall"][m]["mean"] / k)
    assert ten.summary["overall"]["pcc_all"] == e.summary["overall"]["pcc_all"]
    md_e, md_10 = (tmp_path / "e" / "summary.md").read_text(), (tmp_path / "ten" / "summary.md").read_text()
    assert "MSE (ln)" in md_e and "natural log" in md_e and "MSE (log10)" in md_10 and "MAE (log10)" in md_10
    res = runner.invoke(app, ["report", str(tmp / "run"), "--out", str(tmp_path / "c"), "--log-base", "10"])
    assert res.exit_code == 0, res.output
    assert "MSE (log10)" in flat(res.output) and "--log-base 10" in flat(res.output)
    bad = runner.invoke(app, ["report", str(tmp / "run"), "--out", str(tmp_path / "d"), "--log-base", "2"])
    assert bad.exit_code == 2 and "--log-base: '2' is not one of e, 10" in flat(bad.stderr)


def test_collapsed_runs_are_refused_unless_forced(trained):
    from hagekit.encoders import create_encoder

    tmp, _, _ = trained
    run = tmp / "collapse_run"
    shutil.copytree(tmp / "run", run)
    meta_path = run / "B1" / "trial0" / "estimator.json"
    meta = json.loads(meta_path.read_text())
    out = tmp / "collapsed.safetensors"
    args = ["export-encoder", "--run", str(run), "--out", str(out), "--fold", "B1", "--trial", "0"]
    for cos, refused in ((0.93, True), (0.12, False)):
        meta["embedding_cosines"] = {"zi_cos": cos, "ze_cos": 0.2}
        meta_path.write_text(json.dumps(meta))
        res = runner.invoke(app, args)
        if refused:
            assert res.exit_code == 2 and "collapsed" in flat(res.output) and not out.exists()
            with pytest.raises(EncoderError, match="collapsed"):
                create_encoder(f"ge:{run}:B1:0")
            res = runner.invoke(app, [*args, "--force"])
            assert res.exit_code == 0, res.output
            with pytest.raises(EncoderError, match="collapsed"):  # the exported file remembers
                create_encoder(f"ge:{out}")
            assert create_encoder(f"ge:{out}:force").dim == toy.FAST["d"]
            out.unlink()
        else:
            assert res.exit_code == 0, res.output
            assert create_encoder(f"ge:{out}").dim == toy.FAST["d"]


def test_report_reads_the_target_from_the_run_config(trained, tmp_path):
    """A raw-count run (target in config.json's protocol) has no log base to convert."""
    import json
    import shutil

    from hagekit.errors import ConfigError
    from hagekit.report import report_run

    tmp, _, _ = trained
    run = tmp_path / "raw_run"
    shutil.copytree(tmp / "run", run)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["protocol"]["target"] == "log1p_norm"  # where train writes it
    cfg["protocol"]["target"] = "raw"
    (run / "config.json").write_text(json.dumps(cfg))
    summary = json.loads((run / "summary.json").read_text())
    summary.pop("target", None)
    (run / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ConfigError, match="'raw' is not log-transformed"):
        report_run(run, out=tmp_path / "ten", log_base="10")


@pytest.mark.parametrize("field,value", [("config", "[1, 2]"), ("config", "{"), ("d_in", "wide"), ("base_encoder", None)])
def test_an_exported_encoder_with_damaged_metadata_is_one_line(trained, tmp_path, field, value):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from hagekit.encoders import create_encoder

    tmp, _, _ = trained
    good = tmp_path / "ge.safetensors"
    res = runner.invoke(app, ["export-encoder", "--run", str(tmp / "run"), "--out", str(good), "--force"])
    assert res.exit_code == 0, res.output
    with safe_open(str(good), framework="pt") as fh:
        meta, tensors = dict(fh.metadata()), {k: fh.get_tensor(k) for k in fh.keys()}
    meta = {k: v for k, v in {**meta, field: value}.items() if v is not None}
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(EncoderError, match=r"bad\.safetensors: incomplete encoder metadata") as exc:
        create_encoder(f"ge:{bad}:force")
    assert "\n" not in str(exc.value)
