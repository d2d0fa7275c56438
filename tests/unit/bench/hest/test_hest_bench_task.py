"""``hagekit data hest-bench-task``: a prepared dataset written as a HEST-Bench task folder."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
from clitext import flat
from typer.testing import CliRunner

from hagekit.cli.main import app

pytestmark = pytest.mark.usefixtures("one_torch_thread_module")
runner = CliRunner()


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from hagekit.data.synthetic import SynthConfig, synthesize_dataset

    root = tmp_path_factory.mktemp("task_synth")
    synthesize_dataset(root, SynthConfig.resolve(n_sections=4, n_patients=2, n_spots=30, n_genes=90, seed=3))  # A1, A2, B1, B2
    return root


def _hest_genes(root: Path, sections, k=50) -> list[str]:
    """HEST's get_k_genes(criteria='var') written out with scanpy, as in hest/utils.py."""
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    adatas = [ad.read_h5ad(root / "synth" / f"{s}.h5ad") for s in sections]
    common = None
    for a in adatas:
        b = a.copy()
        sc.pp.filter_genes(b, min_cells=np.ceil(0.10 * b.n_obs))
        g = np.array(b.to_df().columns)
        common = g if common is None else np.intersect1d(common, g)
    common = [g for g in common if "BLANK" not in g and "Control" not in g]
    stacked = pd.concat([a.to_df()[common] for a in adatas])
    s = sc.AnnData(stacked.astype(np.float32))
    sc.pp.filter_genes(s, min_cells=0)
    sc.pp.log1p(s)
    sc.pp.highly_variable_genes(s, n_top_genes=k)
    return s.var_names[s.var["highly_variable"]][:k].tolist()


@pytest.mark.slow  # a few seconds: nox -s tests runs it, the fast lane does not
def test_patient_folds_genes_and_patches_follow_hest(synth, tmp_path):
    out = tmp_path / "bench" / "SYN"
    res = runner.invoke(app, ["data", "hest-bench-task", "--dataset", "synth", "--data-root", str(synth),
                              "--out", str(out), "--n-genes", "20"])
    assert res.exit_code == 0, res.output
    genes = json.loads((out / "var_50genes.json").read_text())["genes"]
    assert genes == _hest_genes(synth, ["A1", "A2", "B1", "B2"], k=20)
    tests = [[r["sample_id"] for r in csv.DictReader((out / "splits" / f"test_{i}.csv").open())] for i in range(2)]
    assert tests == [["A1", "A2"], ["B1", "B2"]] and not (out / "splits" / "test_2.csv").exists()
    row = next(csv.DictReader((out / "splits" / "train_0.csv").open()))
    assert list(row) == ["sample_id", "patches_path", "expr_path"] and row["patches_path"] == "patches/B1.h5"
    import anndata as ad

    sec = ad.read_h5ad(synth / "synth" / "B1.h5ad")
    with h5py.File(out / "patches" / "B1.h5") as h5:
        assert h5["img"].shape == (sec.n_obs, 224, 224, 3) and h5["img"].dtype == np.uint8
        assert [b.decode() for b in h5["barcode"][:, 0]] == list(sec.obs_names)
        mpp = float(sec.uns["hagekit"]["mpp"])
        half = (112.0 / mpp) / 2
        np.testing.assert_array_equal(h5["coords"][:], (sec.obsm["spatial"] - (2 * half) // 2).astype(np.int64))
    # the folder is a task bench hest reads (one-fold-per-patient), end to end
    res = runner.invoke(app, ["bench", "hest", "--data", str(out.parent), "--encoder", "builtin", "--latent-dim", "8",
                              "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert math.isfinite(json.loads((tmp_path / "o" / "summary.json").read_text())["average"]["builtin"])


def test_section_split_warns_about_patient_leak(synth, tmp_path):
    out = tmp_path / "SEC"
    res = runner.invoke(app, ["data", "hest-bench-task", "--dataset", "synth", "--data-root", str(synth), "--out",
                              str(out), "--sections", "A1,A2,B1", "--split", "section", "--n-genes", "10"])
    assert res.exit_code == 0, res.output
    assert "leaks patient identity" in flat(res.output)
    assert len(list((out / "splits").glob("test_*.csv"))) == 3
    again = runner.invoke(app, ["data", "hest-bench-task", "--dataset", "synth", "--data-root", str(synth), "--out",
                                str(out), "--split", "section"])
    assert again.exit_code == 2 and "--overwrite" in flat(again.output)
    bad = runner.invoke(app, ["data", "hest-bench-task", "--dataset", "synth", "--data-root", str(synth), "--out",
                              str(tmp_path / "x"), "--sections", "A1,Z9"])
    assert bad.exit_code == 2 and "Z9 not in synth" in flat(bad.output)
