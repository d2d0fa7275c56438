"""``hagekit bench baselines`` on the real HER2ST sections C2..C6 with ``builtin`` features.

Every method (mean, ridge, xgboost, mlp, bleep, mclstexp, hage) must produce metrics for every
held-out section under the section split; ``mean`` scores PCC 0 and every other method's MSE
is reported against it. Reduced epochs and small models keep it within CI time on 2 cores.
The sanity anchor: ridge on a hand-crafted colour/texture descriptor reaches PCC(all) ~0.20.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hagekit.cli.main import app

IMAGED = ["C2", "C3", "C4", "C5", "C6"]
METHODS = ["mean", "ridge", "xgboost", "mlp", "bleep", "mclstexp", "hage"]

FAST_CONFIG = """\
# HAGE, reduced for CI
d = 64
n_heads = 4
batch_size = 128
lr = 1e-3

[baselines.xgboost]
n_estimators = 30
target_pca = 16

[baselines.mlp]
hidden = 256
lr = 1e-3  # the 4-epoch CI budget is ~12 steps: the default 3e-4 needs its 100 epochs

[baselines.bleep]
projection_dim = 64

[baselines.mclstexp]
projection_dim = 64
heads = 2
dim_head = 32
layers = 1
lr = 1e-3
"""


@pytest.fixture(scope="module")
def gene_inputs(her2_root: Path, shared_data: Path, tmp_path_factory):
    """The 785-gene panel and co-expression gene embeddings trained on the 31 image-less
    sections only (none of C2..C6, so no held-out leak)."""
    from hagekit.data.section import dataset_sections, read_section
    from hagekit.genes.coexpression import GeneEmbeddingSettings, embeddings_from_sections
    from hagekit.genes.embeddings import write_gene2vec_text
    from hagekit.io.genelist import read_gene_list, write_gene_list

    tmp = tmp_path_factory.mktemp("bench_genes")
    panel = read_gene_list(shared_data / "gene_lists" / "her2st_785_hvg.txt")
    sections = {p.stem: read_section(p) for p in dataset_sections(her2_root, "her2")}
    image_less = {s: a for s, a in sections.items() if not a.uns["hagekit"]["has_image"]}
    emb = embeddings_from_sections(
        image_less, GeneEmbeddingSettings(dim=32, epochs=3, threshold=0.2, seed=0), genes=panel)
    kept = [g for g in panel if g in set(emb.symbols)]  # the paper's panel = HVGs with an embedding
    return write_gene_list(tmp / "panel.txt", kept), write_gene2vec_text(
        tmp / "emb.txt", emb.symbols, emb.vectors, provenance=emb.provenance)


def test_bench_baselines_on_her2st_c2_c6(her2_root, her2_builtin_features, gene_inputs, tmp_path):
    import torch

    panel, emb = gene_inputs
    cfg = tmp_path / "fast.toml"
    cfg.write_text(FAST_CONFIG)
    out = tmp_path / "bench"
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        res = CliRunner().invoke(app, [
            "-q", "bench", "baselines", "--dataset", "her2", "--data-root", str(her2_root),
            "--features", str(her2_builtin_features), "--genes", str(panel), "--gene-embeddings", str(emb),
            "--methods", ",".join(METHODS[1:]), "--split", "section", "--trials", "1", "--epochs", "4",
            "--seed", "0", "--config", str(cfg), "--out", str(out),
        ])
    finally:
        torch.set_num_threads(threads)
    assert res.exit_code == 0, res.output
    print("\n" + (out / "table.md").read_text())
    summary = json.loads((out / "summary.json").read_text())
    table = {e["method"]: e for e in summary["table"]}
    assert list(table) == METHODS and summary["reference"] == "hage"

    import csv

    rows = list(csv.DictReader((out / "results.csv").open()))
    for m in METHODS:  # every method, every held-out section, finite metrics
        got = {r["section"]: r for r in rows if r["method"] == m}
        assert sorted(got) == IMAGED, m
        assert all(float(r["mse"]) > 0 and r["pcc_all"] not in ("", "nan") for r in got.values()), m
    assert table["mean"]["pcc_all_mean"] == 0.0 and table["mean"]["mse_vs_floor"] == 1.0
    for m in METHODS[1:]:
        assert table[m]["mse_vs_floor"] > 0 and table[m]["fit_seconds"] > 0
    # the anchor: builtin-feature ridge carries real signal (~0.20 measured with full settings)
    assert table["ridge"]["pcc_all_mean"] > 0.12
    for m in ("ridge", "xgboost", "mlp", "bleep", "mclstexp", "hage"):
        assert table[m]["pcc_all_mean"] > 0.05, m
    for m in ("ridge", "xgboost"):  # regressors fitted for MSE beat the floor's MSE
        assert table[m]["mse_vs_floor"] < 1.0, m
    paired = {(p["method"], p["metric"]): p for p in summary["paired"]}
    assert paired[("ridge", "pcc_all")]["n_sections"] == 5
    assert (out / "pcc_per_section.png").stat().st_size > 10_000
