"""Co-expression embeddings: planted gene modules are recovered, seeds reproduce, CLI chain works."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from clitext import flat
from typer.testing import CliRunner

from hagekit.cli.main import app
from hagekit.data.section import SectionLabels, make_section, read_section, write_section
from hagekit.errors import ConfigError, DataError, ProvenanceError
from hagekit.genes.coexpression import (
    GeneEmbeddingSettings,
    auto_epochs,
    coexpression_sentences,
    train_gene_embeddings,
)
from hagekit.genes.embeddings import (
    GeneEmbeddings,
    embedding_training_sections,
    load_gene_embeddings,
    write_gene_embeddings,
)
from hagekit.genes.quality import coexpression_auc, pair_auc

N_MODULES, MODULE_SIZE, N_NOISE = 3, 10, 20
GENES = [f"M{m}G{k}" for m in range(N_MODULES) for k in range(MODULE_SIZE)] + [f"N{k}" for k in range(N_NOISE)]
SECTIONS = ["A1", "A2", "B1", "B2"]
TRAIN = ["A1", "A2", "B1"]
FAST = {"dim": 16, "epochs": 40}


def fast(**changes):
    """The quick trainer settings with ``changes``."""
    return GeneEmbeddingSettings(**{**FAST, **changes})


def _module_counts(n_spots: int, seed: int) -> np.ndarray:
    """Genes of a module share a per-spot latent factor; noise genes are independent."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n_spots, N_MODULES))
    loading = np.zeros((len(GENES), N_MODULES))
    for m in range(N_MODULES):
        loading[m * MODULE_SIZE:(m + 1) * MODULE_SIZE, m] = 0.9
    rate = 8.0 * np.exp(latent @ loading.T + 0.3 * rng.standard_normal((n_spots, len(GENES))))
    return rng.poisson(rate)


@pytest.fixture(scope="module")
def module_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mod") / "data"
    for k, s in enumerate(SECTIONS):
        n = 120
        adata = make_section(_module_counts(n, k), [f"s{i}" for i in range(n)], GENES, np.zeros((n, 2)),
            SectionLabels(dataset="toy", section=s, patient=s[0]))
        write_section(adata, root / "toy" / f"{s}.h5ad")
    return root


def test_planted_modules_are_recovered_on_a_held_out_section(module_root):
    emb = train_gene_embeddings(module_root, "toy", fast(), sections=TRAIN, genes=GENES)
    assert emb.symbols == GENES and emb.unmatched == [] and emb.dim == 16
    assert emb.provenance["sections"] == TRAIN and emb.provenance["n_pairs"] > 0
    q = coexpression_auc(emb, module_root, "toy", ["B2"], seed=0)
    assert q["auc"] > 0.85, q
    assert 0.35 < q["auc_random"] < 0.65, q
    assert q["n_pos"] == q["n_neg"] > 0 and q["overlap"] == []
    leaky = coexpression_auc(emb, module_root, "toy", ["A1"], seed=0)
    assert leaky["overlap"] == ["A1"]


def test_same_seed_same_vectors_other_seed_other_vectors(module_root):
    a = train_gene_embeddings(module_root, "toy", fast(seed=3), sections=["A1"], genes=GENES)
    b = train_gene_embeddings(module_root, "toy", fast(seed=3), sections=["A1"], genes=GENES)
    c = train_gene_embeddings(module_root, "toy", fast(seed=4), sections=["A1"], genes=GENES)
    np.testing.assert_array_equal(a.vectors, b.vectors)
    assert not np.allclose(a.vectors, c.vectors)
    sections = {s: read_section(module_root / "toy" / f"{s}.h5ad") for s in ["A1"]}
    s1, _ = coexpression_sentences(sections, GENES, seed=0)
    s2, _ = coexpression_sentences(sections, GENES, seed=0)
    assert s1 == s2 and all(len(x) == 2 for x in s1)


def test_random_embedding_gives_half(module_root):
    rng = np.random.default_rng(0)
    emb = GeneEmbeddings(GENES, rng.standard_normal((len(GENES), 32)))
    q = coexpression_auc(emb, module_root, "toy", ["B2"], seed=1)
    assert abs(q["auc"] - 0.5) < 0.15
    pos = np.array([[0, 1], [2, 3]])
    neg = np.array([[0, 2], [1, 3]])
    v = np.array([[1.0, 0], [1, 0], [0, 1], [0, 1]])
    assert pair_auc(v, pos, neg) == 1.0


def test_bad_inputs(module_root):
    with pytest.raises(DataError) as exc:
        train_gene_embeddings(module_root, "toy", fast(), sections=TRAIN, genes=GENES + ["NOTAGENE", "ALSO_NOT"])
    assert "2 of 52 panel genes are absent from the data (NOTAGENE, ALSO_NOT)" in str(exc.value)
    with pytest.raises(DataError, match="lower --threshold"):
        train_gene_embeddings(module_root, "toy", fast(threshold=0.99, min_partners=0), sections=["A1"], genes=GENES)
    with pytest.raises(ConfigError, match="--dim"):
        train_gene_embeddings(module_root, "toy", GeneEmbeddingSettings(dim=0), sections=["A1"])
    with pytest.raises(ConfigError, match=r"unknown section\(s\) Q7"):
        train_gene_embeddings(module_root, "toy", fast(), sections=["Q7"])


runner = CliRunner()


def test_cli_embed_and_check(module_root, tmp_path):
    panel = tmp_path / "panel.txt"
    panel.write_text("\n".join(GENES) + "\n")
    out = tmp_path / "emb.txt"
    args = ["genes", "embed", "--data-root", str(module_root), "--dataset", "toy", "--sections", "A1,A2,B1",
            "--genes", str(panel), "--dim", "16", "--epochs", "40", "--out", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "held-out AUC" in flat(res.output) and "B2" in res.output
    assert embedding_training_sections(out) == set(TRAIN)
    side = json.loads((tmp_path / "emb.txt.json").read_text())
    assert side["quality"]["sections"] == ["B2"] and side["quality"]["auc"] > 0.85
    again = tmp_path / "emb2.txt"
    runner.invoke(app, args[:-1] + [str(again)])
    assert again.read_text() == out.read_text()  # same seed, same file

    small = tmp_path / "small.txt"
    small.write_text("\n".join(GENES[1:30] + ["m0g0", "ABSENT"]) + "\n")
    res = runner.invoke(app, ["genes", "check", str(out), "--genes", str(small), "--dataset", "toy",
                              "--data-root", str(module_root)])
    assert res.exit_code == 0, res.output
    assert "30 of 31 matched" in flat(res.output) and "ABSENT" in res.output and "held-out AUC" in flat(res.output)
    matched = tmp_path / "matched.txt"
    res = runner.invoke(app, ["genes", "check", str(out), "--genes", str(small), "--out", str(matched)])
    assert res.exit_code == 0, res.output
    assert matched.read_text().split() == GENES[1:30] + ["m0g0"]  # panel spelling, panel order
    res = runner.invoke(app, ["genes", "check", str(out), "--out", str(tmp_path / "none.txt")])
    assert res.exit_code == 2 and "--out: needs a panel" in res.stderr
    assert not (tmp_path / "none.txt").exists()


def test_cli_embed_bad_panel_leaves_nothing(module_root, tmp_path):
    panel = tmp_path / "panel.txt"
    panel.write_text("M0G0\nNOTAGENE\n")
    out = tmp_path / "emb.txt"
    res = runner.invoke(app, ["genes", "embed", "--data-root", str(module_root), "--dataset", "toy",
                              "--sections", "A1", "--genes", str(panel), "--out", str(out)])
    assert res.exit_code == 2
    assert "1 of 2 panel genes are absent from the data (NOTAGENE)" in flat(res.stderr)
    assert not out.exists() and list(tmp_path.iterdir()) == [panel]
    bad = tmp_path / "bad.txt"
    bad.write_text("A 1 2\nB 1\n")
    res = runner.invoke(app, ["genes", "check", str(bad)])
    assert res.exit_code == 2 and "line 2: gene B has 1 values, expected 2" in res.stderr


@pytest.mark.slow  # a few seconds: nox -s tests runs it, the fast lane does not
def test_workspace_chain_on_the_synthetic_dataset(tmp_path):
    """select -> embed -> check with workspace defaults only, on hagekit.data.synthetic sections."""
    from hagekit.data.synthetic import SynthConfig, synthesize_dataset

    ws = tmp_path / "ws"
    synthesize_dataset(ws / "data", SynthConfig.resolve(n_sections=4, n_spots=150, n_genes=80, seed=0))
    res = runner.invoke(app, ["genes", "select", "-w", str(ws), "--dataset", "synth", "--top", "30",
                              "--rule", "min-sections:2"])
    assert res.exit_code == 0, res.output
    panel = ws / "genes" / "synth" / "panel.txt"
    assert panel.is_file()
    res = runner.invoke(app, ["genes", "embed", "-w", str(ws), "--dataset", "synth", "--sections", "A1,A2",
                              "--dim", "16"])
    assert res.exit_code == 0, res.output
    emb_path = ws / "genes" / "synth" / "embeddings.txt"
    emb = load_gene_embeddings(emb_path, panel.read_text().split())
    assert emb.unmatched == [] and emb.training_sections() == {"A1", "A2"}
    assert emb.provenance["epochs_auto"] and emb.provenance["epochs"] == auto_epochs(emb.provenance["n_pairs"])
    res = runner.invoke(app, ["genes", "check", str(emb_path), "-w", str(ws), "--dataset", "synth"])
    assert res.exit_code == 0, res.output
    assert "B1, B2" in flat(res.output) and "held-out AUC" in flat(res.output)
    # existing outputs are kept unless --overwrite
    res = runner.invoke(app, ["genes", "embed", "-w", str(ws), "--dataset", "synth"])
    assert res.exit_code == 0 and "exists, kept" in res.stderr


def test_auto_epochs_budget():
    assert auto_epochs(110_636) == 46 and auto_epochs(10) == 100 and auto_epochs(10**8) == 10


def test_write_provenance_round_trip(tmp_path):
    path = write_gene_embeddings(tmp_path / "e.npz", ["A", "B"], np.eye(2), provenance={"sections": ["X1"]})
    assert embedding_training_sections(path) == {"X1"}


def test_embed_writes_the_panel_train_accepts(tmp_path):
    """Genes without a vector are dropped from the workspace panel (full panel kept) or, for
    an explicit --genes panel, written beside the embeddings; train then takes the pair."""
    from hagekit.genes.embeddings import (
        embeddings_for_panel,
        write_embedded_panel,
        write_gene_embeddings,
    )

    panel = tmp_path / "panel.txt"
    panel.write_text("G1\nMT1A\nG2\n")
    (tmp_path / "panel.txt.json").write_text('{"rule": "min-sections:8"}')
    emb = write_gene_embeddings(tmp_path / "embeddings.txt", ["g2", "G1"], np.ones((2, 3), np.float32))
    with pytest.raises(ProvenanceError, match=r"1 of 3 panel genes have no embedding \(MT1A\).*genes check"):
        embeddings_for_panel(emb, panel.read_text().split())
    side_path, dropped = write_embedded_panel(panel, ["g2", "G1"], replace=False, embeddings_path=emb)
    assert side_path == tmp_path / "embeddings.panel.txt" and side_path.read_text().split() == ["G1", "G2"]
    assert dropped == ["MT1A"] and panel.read_text().split() == ["G1", "MT1A", "G2"]  # untouched
    written, dropped = write_embedded_panel(panel, ["g2", "G1"], replace=True, embeddings_path=emb)
    assert written == panel and panel.read_text().split() == ["G1", "G2"] and dropped == ["MT1A"]
    assert (tmp_path / "panel_full.txt").read_text().split() == ["G1", "MT1A", "G2"]
    assert json.loads((tmp_path / "panel.txt.json").read_text())["dropped_without_embedding"] == ["MT1A"]
    assert embeddings_for_panel(emb, panel.read_text().split()).shape == (2, 3)
