"""``hagekit bench hest`` on task folders in HEST's exact layout (2 tasks, 3 patients, 2 folds)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from clitext import flat
from toys import hest_fixture as hf
from typer.testing import CliRunner

from hagekit.cli.main import app

pytestmark = pytest.mark.usefixtures("one_torch_thread_module")
runner = CliRunner()
LATENT = 8  # PCA components for these small tasks (HEST: 256)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("hest")
    hf.make_bench(root / "bench_data")
    out = root / "out"
    res = runner.invoke(app, ["bench", "hest", "--data", str(root / "bench_data"), "--encoder", "builtin",
                              "--latent-dim", str(LATENT), "--out", str(out), "--cache-dir", str(root / "cache"),
                              "--device", "cpu", "--show-published"])
    assert res.exit_code == 0, res.output
    return root, out, res


def _sklearn_protocol(x_tr, y_tr, x_te, y_te, seed=1):
    """HEST's protocol written plainly: StandardScaler + PCA (fit on train), float32, ridge
    (alpha 100 / (256 * n_genes) -> here n_features = LATENT), Pearson per gene on the test split."""
    from scipy.stats import pearsonr
    from sklearn.decomposition import PCA
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    # HEST: pipe.fit_transform(X_train), pipe.transform(X_test), each wrapped in torch.Tensor (float32);
    # ridge's lsqr stops at tol 1e-4, so the float32 inputs must be these exact ones
    pipe = Pipeline([("scaler", StandardScaler()), ("PCA", PCA(n_components=LATENT, random_state=seed))])
    a, b = pipe.fit_transform(x_tr).astype(np.float32), pipe.transform(x_te).astype(np.float32)
    reg = Ridge(alpha=100 / (a.shape[1] * y_tr.shape[1]), solver="lsqr", fit_intercept=False, max_iter=1000,
                random_state=seed).fit(a, y_tr)
    pred = reg.predict(b)
    return np.array([pearsonr(y_te[:, j], pred[:, j])[0] for j in range(y_te.shape[1])])


def _expr(task: Path, sid: str) -> np.ndarray:
    import anndata as ad

    with h5py.File(task / "patches" / f"{sid}.h5") as h5:
        bc = [b.decode() for b in h5["barcode"][:, 0]]
    a = ad.read_h5ad(task / "adata" / f"{sid}.h5ad")
    return np.log1p(a[bc, hf.TASK_GENES].X.toarray().astype(np.float64))


@pytest.mark.slow  # a few seconds: nox -s tests runs it, the fast lane does not
def test_numbers_equal_plain_sklearn(bench):
    import torch

    from hagekit.encoders import create_encoder

    root, out, _ = bench
    enc = create_encoder("builtin")
    for task in ("T1", "T2"):
        tdir = root / "bench_data" / task
        feats = {}
        for sid in hf.SAMPLES:
            with h5py.File(tdir / "patches" / f"{sid}.h5") as h5:
                imgs = h5["img"][:]
            with torch.inference_mode():
                plain = enc.model(torch.stack([enc.transform(im) for im in imgs])).numpy()
            (cache,) = (root / "cache").glob(f"{task}-{sid}-*/builtin-*.h5")  # one file per (sample, encoder)
            with h5py.File(cache) as h5:
                feats[sid] = h5["features"][:]
                assert h5.attrs["encoder"] == "builtin" and h5["done"][:].all()
            np.testing.assert_allclose(feats[sid], plain, rtol=1e-4, atol=1e-4)  # the encoder ran as itself
        rec = json.loads((out / task / "builtin" / "results.json").read_text())
        means = []
        for i, fold in enumerate(hf.FOLDS):
            x_tr = np.concatenate([feats[s] for s in fold["train"]])
            x_te = np.concatenate([feats[s] for s in fold["test"]])
            y_tr = np.concatenate([_expr(tdir, s) for s in fold["train"]])
            y_te = np.concatenate([_expr(tdir, s) for s in fold["test"]])
            r = _sklearn_protocol(x_tr, y_tr, x_te, y_te)
            ours = np.array([g["pearson_corrs"][i] for g in rec["pearson_corrs"]])
            np.testing.assert_allclose(ours, r, atol=1e-6)
            assert rec["folds"][i]["n_test"] == len(y_te) and abs(rec["folds"][i]["pearson_mean"] - r.mean()) < 1e-6
            means.append(r.mean())
        assert abs(rec["pearson_mean"] - np.mean(means)) < 1e-6 and abs(rec["pearson_std"] - np.std(means)) < 1e-6
        assert max(means) > 0.2  # the synthetic expression follows the patch colour
        rows = list(csv.reader((out / task / "builtin" / "per_gene.csv").open()))
        assert rows[0] == ["gene", "fold_0", "fold_1", "mean", "std"] and [r[0] for r in rows[1:]] == hf.TASK_GENES


def test_tables_and_published_rows(bench):
    root, out, res = bench
    text = flat(res.output)
    assert "published, NOT recomputed" in text and "0.3862" in text  # UNI's published average
    table = list(csv.reader((out / "table.csv").open()))
    assert table[0] == ["task", "builtin"] and [r[0] for r in table[1:]] == ["T1", "T2", "average"]
    summary = json.loads((out / "summary.json").read_text())
    t1, t2 = summary["results"]["T1/builtin"]["mean"], summary["results"]["T2/builtin"]["mean"]
    assert abs(summary["average"]["builtin"] - (t1 + t2) / 2) < 1e-12
    # a second run reuses every cached embedding and refuses to overwrite without --overwrite
    again = runner.invoke(app, ["bench", "hest", "--data", str(root / "bench_data"), "--encoder", "builtin",
                                "--latent-dim", str(LATENT), "--out", str(out), "--cache-dir", str(root / "cache")])
    assert again.exit_code == 2 and "--overwrite" in flat(again.output)


def test_nested_alpha_and_no_pca_run(bench, tmp_path):
    root, _, _ = bench
    for extra in (["--alpha", "nested"], ["--no-pca"]):
        res = runner.invoke(app, ["bench", "hest", "--data", str(root / "bench_data"), "--tasks", "T1",
                                  "--encoder", "builtin", "--latent-dim", str(LATENT), "--out", str(tmp_path / extra[0]),
                                  "--cache-dir", str(root / "cache"), "--device", "cpu", *extra])
        assert res.exit_code == 0, res.output
        rec = json.loads((tmp_path / extra[0] / "T1" / "builtin" / "results.json").read_text())
        assert np.isfinite(rec["pearson_mean"])
        if extra[0] == "--no-pca":  # the fixed rule on the raw 203-d features
            assert abs(rec["folds"][0]["alpha"] - 100 / (203 * len(hf.TASK_GENES))) < 1e-12


def _copy(bench, tmp_path) -> Path:
    root, _, _ = bench
    dst = tmp_path / "bd"
    shutil.copytree(root / "bench_data" / "T1", dst / "T1")
    return dst


@pytest.mark.parametrize(("breakit", "expect"), [
    (lambda d: (d / "T1" / "splits" / "test_1.csv").unlink(), "test_1.csv: split file missing"),
    (lambda d: _drop_img(d / "T1" / "patches" / "B1.h5"), "B1.h5: patches file has no 'img' dataset"),
    (lambda d: _rename_barcodes(d / "T1" / "patches" / "C1.h5"), "C1.h5: 40 of 40 patch barcodes are not spots of C1.h5ad"),
    (lambda d: _drop_gene(d / "T1" / "adata" / "A2.h5ad", "G3"), "A2.h5ad: 1 gene(s) of var_50genes.json absent from this sample (G3)"),
    (lambda d: (d / "T1" / "patches" / "A1.h5").unlink(), "A1.h5: patches file of sample A1 (listed in"),
    (lambda d: shutil.rmtree(d / "T1"), "no task folders"),
])
def test_bad_task_folders_get_one_line(bench, tmp_path, breakit, expect):
    d = _copy(bench, tmp_path)
    breakit(d)
    res = runner.invoke(app, ["bench", "hest", "--data", str(d), "--encoder", "builtin", "--latent-dim", str(LATENT),
                              "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c"), "--device", "cpu"])
    assert res.exit_code == 2, res.output
    assert expect in flat(res.output) and "Traceback" not in res.output
    assert not (tmp_path / "o" / "summary.json").exists()


def test_missing_data_names_where_hest_puts_it(tmp_path):
    res = runner.invoke(app, ["bench", "hest", "--data", str(tmp_path / "none"), "--encoder", "builtin",
                              "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "MahmoodLab/hest-bench" in flat(res.output)


def _drop_img(path: Path) -> None:
    with h5py.File(path, "a") as h5:
        del h5["img"]


def _rename_barcodes(path: Path) -> None:
    with h5py.File(path, "a") as h5:
        bc = h5["barcode"][:]
        del h5["barcode"]
        h5.create_dataset("barcode", data=np.char.add(b"x", bc))


def _drop_gene(path: Path, gene: str) -> None:
    import anndata as ad

    a = ad.read_h5ad(path)
    a[:, [g for g in a.var_names if g != gene]].copy().write_h5ad(path)


def test_shards_embed_their_share_then_one_run_evaluates(bench, tmp_path):
    root, out, _ = bench
    args = ["bench", "hest", "--data", str(root / "bench_data"), "--tasks", "T1", "--encoder", "builtin",
            "--latent-dim", str(LATENT), "--cache-dir", str(tmp_path / "c"), "--device", "cpu", "--out", str(tmp_path / "o")]
    for k in (0, 1):
        res = runner.invoke(app, [*args, "--shard", f"{k}/2"])
        assert res.exit_code == 0, res.output
        assert "embedded 2 (encoder, sample) item(s)" in flat(res.output)
        assert not (tmp_path / "o" / "summary.json").exists()
    assert len(list((tmp_path / "c").glob("T1-*/builtin-*.h5"))) == 4
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    ours = json.loads((tmp_path / "o" / "T1" / "builtin" / "results.json").read_text())
    full = json.loads((out / "T1" / "builtin" / "results.json").read_text())
    assert ours["mean_per_split"] == full["mean_per_split"]  # same numbers as the unsharded run


@pytest.mark.slow  # several processes or full CLI benches: nox -s tests, not the fast lane
def test_torchrun_two_ranks_give_the_same_results(bench, tmp_path):
    """Two gloo ranks deal the (encoder, sample) embeddings; rank 0 writes the same numbers."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    root, out, _ = bench
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "hagekit",
           "bench", "hest", "--data", str(root / "bench_data"), "--tasks", "T1", "--encoder", "builtin",
           "--latent-dim", str(LATENT), "--cache-dir", str(tmp_path / "c"), "--device", "cpu", "--out", str(tmp_path / "o")]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", COLUMNS="200")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    ours = json.loads((tmp_path / "o" / "T1" / "builtin" / "results.json").read_text())
    full = json.loads((out / "T1" / "builtin" / "results.json").read_text())
    assert ours["mean_per_split"] == full["mean_per_split"]
    assert len(list((tmp_path / "c").glob("T1-*/builtin-*.h5"))) == 4
