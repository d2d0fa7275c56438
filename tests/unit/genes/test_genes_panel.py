"""HVG panels: each rule on sections with planted variable genes (known answers), diagnoses, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from clitext import flat
from typer.testing import CliRunner

from hagekit.cli.main import app
from hagekit.data.section import SectionLabels, make_section, write_section
from hagekit.errors import ConfigError, DataError
from hagekit.genes.embeddings import write_gene2vec_text
from hagekit.genes.panel import PanelSettings, jaccard, parse_rule, select_panel, write_panel

N_GENES = 300
GENES = [f"G{i:03d}" for i in range(N_GENES)]
#: planted top-10 HVGs per section: A1 -> G000-G009, A2 -> G005-G014, B1 -> G010-G019
PLANTED = {"A1": range(0, 10), "A2": range(5, 15), "B1": range(10, 20)}
#: Poisson means: the 20 plantable genes and the background each span 3..30, so every
#: mean bin of the HVG flavors holds one plantable gene among background genes
LAMBDA = np.concatenate([np.geomspace(3, 30, 20), np.geomspace(3, 30, N_GENES - 20)])


def _counts(variable: range, n_spots: int, seed: int) -> np.ndarray:
    """Poisson background; planted genes are 0 or Poisson(10x) (same mean, far more variance)."""
    rng = np.random.default_rng(seed)
    X = rng.poisson(LAMBDA, (n_spots, N_GENES))
    v = list(variable)
    on = rng.random((n_spots, len(v))) < 0.1
    X[:, v] = np.where(on, rng.poisson(10 * LAMBDA[v], (n_spots, len(v))), 0)
    return X


def build_dataset(root: Path, planted: dict[str, range] = PLANTED, n_spots: int = 150, dataset: str = "toy") -> Path:
    for k, (section, variable) in enumerate(planted.items()):
        X = _counts(variable, n_spots, k)
        adata = make_section(X, [f"s{i}" for i in range(n_spots)], GENES, np.zeros((n_spots, 2)),
            SectionLabels(dataset=dataset, section=section, patient=section[0]))
        write_section(adata, root / dataset / f"{section}.h5ad")
    return root


def detected_spots(root: Path) -> dict[str, int]:
    from hagekit.data.section import read_section

    total = sum(np.asarray((read_section(root / "toy" / f"{s}.h5ad").X > 0).sum(axis=0)).ravel() for s in PLANTED)
    return dict(zip(GENES, total.tolist(), strict=True))


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    return build_dataset(tmp_path_factory.mktemp("toy"))


def names(r: range) -> set[str]:
    return {GENES[i] for i in r}


def test_each_rule_gives_the_planted_answer(toy_root):
    two = select_panel(toy_root, "toy", PanelSettings(top=10, flavor="cell_ranger", rule="intersect"), sections=["A1", "A2"])
    assert set(two.genes) == names(range(5, 10))
    assert [s.n_genes for s in two.steps] == [300, 300, 10, 5]
    union = select_panel(toy_root, "toy", PanelSettings(top=10, flavor="cell_ranger", rule="union"))
    assert set(union.genes) == names(range(0, 20))
    k2 = select_panel(toy_root, "toy", PanelSettings(top=10, flavor="cell_ranger", rule="min-sections:2"))
    assert set(k2.genes) == names(range(5, 15))
    assert k2.alternatives == {"intersect": 0, "union": 20, "min-sections:2": 10}
    assert k2.hvg_sections["G007"] == 2 and k2.hvg_sections["G000"] == 1


def test_seurat_flavor_finds_most_planted_genes(toy_root):
    res = select_panel(toy_root, "toy", PanelSettings(top=10, flavor="seurat"), sections=["A2"])
    assert len(set(res.genes) & names(range(5, 15))) >= 7
    assert res.settings["flavor"] == "seurat"


def test_empty_intersection_is_diagnosed_not_written(toy_root, tmp_path):
    res = select_panel(toy_root, "toy", PanelSettings(top=10, flavor="cell_ranger", rule="intersect"))
    assert res.empty and res.emptied_by == "∩ top-10 HVGs of B1"
    assert "section A2 removed the most genes (-5)" in res.diagnosis or "section B1 removed the most genes (-5)" in res.diagnosis
    assert "B1 emptied it" in res.diagnosis
    assert "--rule min-sections:2 keeps 10 genes" in res.diagnosis
    out = tmp_path / "panel.txt"
    with pytest.raises(DataError, match="refusing to write an empty panel"):
        write_panel(res, out)
    assert list(tmp_path.iterdir()) == []


def test_min_spots_and_vocab_filters(toy_root, tmp_path):
    spots = detected_spots(toy_root)
    union = names(range(0, 20))
    expected = {g for g in union if spots[g] >= 250}
    assert 0 < len(expected) < 20
    res = select_panel(toy_root, "toy", PanelSettings(top=10, flavor="cell_ranger", rule="union", min_spots=250))
    assert set(res.genes) == expected
    assert res.steps[-1].step == "detected in >= 250 spots (all sections)"
    res = select_panel(toy_root, "toy", PanelSettings(top=10, flavor="cell_ranger", rule="union", min_spots=1000))
    assert res.empty and "--min-spots 1000 removed all 20 genes" in res.diagnosis
    assert f"the most detected is in {max(spots[g] for g in union)} spots" in res.diagnosis
    vocab = write_gene2vec_text(tmp_path / "v.txt", ["g000", "G001", "G015", "OTHER"], np.ones((4, 3), np.float32))
    res = select_panel(toy_root, "toy", PanelSettings(top=10, flavor="cell_ranger", rule="union", vocab=vocab))
    assert set(res.genes) == {"G000", "G001", "G015"}
    assert res.steps[-1].step == "in the vocabulary of v.txt" and res.alternatives["min-sections:2"] == 0
    vocab2 = write_gene2vec_text(tmp_path / "v2.txt", ["G250"], np.ones((1, 3), np.float32))
    res = select_panel(toy_root, "toy", PanelSettings(top=10, flavor="cell_ranger", rule="union", vocab=vocab2))
    assert res.empty and "none of the 20 candidate genes is in the vocabulary" in res.diagnosis


def test_write_panel_with_sidecar(toy_root, tmp_path):
    res = select_panel(toy_root, "toy", PanelSettings(top=10, flavor="cell_ranger"), sections=["A1", "A2"])
    out = write_panel(res, tmp_path / "genes" / "panel.txt")
    assert out.read_text().split() == res.genes
    side = json.loads((tmp_path / "genes" / "panel.txt.json").read_text())
    assert side["sections"] == ["A1", "A2"] and side["settings"]["top"] == 10
    assert side["settings"]["rule"] == "intersect" and side["settings"]["dataset"] == "toy"
    assert side["steps"][-1]["genes"] == 5


def test_bad_options(toy_root):
    with pytest.raises(ConfigError, match="section A1 has only 300 genes, fewer than --top 400"):
        select_panel(toy_root, "toy", PanelSettings(top=400))
    with pytest.raises(ConfigError, match="unknown rule 'majority'"):
        select_panel(toy_root, "toy", PanelSettings(rule="majority"))
    with pytest.raises(ConfigError, match="K=4 must be between 1 and the number of sections"):
        select_panel(toy_root, "toy", PanelSettings(top=10, flavor="cell_ranger", rule="min-sections:4"))
    with pytest.raises(ConfigError, match="unknown flavor"):
        select_panel(toy_root, "toy", PanelSettings(flavor="magic"))
    with pytest.raises(ConfigError, match=r"unknown section\(s\) Z9"):
        select_panel(toy_root, "toy", PanelSettings(top=10), sections=["A1", "Z9"])
    import importlib.util

    if importlib.util.find_spec("skmisc") is None:
        with pytest.raises(ConfigError, match="seurat_v3 needs scikit-misc"):
            select_panel(toy_root, "toy", PanelSettings(top=10, flavor="seurat_v3"))
    res = runner.invoke(app, ["genes", "select", "--data-root", str(toy_root), "--dataset", "toy", "--top", "400",
                              "--out", str(toy_root / "never.txt")])
    assert res.exit_code == 2 and "fewer than --top 400" in res.stderr and not (toy_root / "never.txt").exists()
    assert parse_rule("min-sections:3", 5) == ("min-sections:3", 3)
    assert jaccard(["a", "b"], ["b", "c"]) == pytest.approx(1 / 3)


def test_fewer_shared_genes_than_top(tmp_path):
    root = build_dataset(tmp_path, {"A1": range(0, 10)})
    adata = make_section(np.ones((20, 30), int), [f"s{i}" for i in range(20)], [f"X{i}" for i in range(25)] + GENES[:5], np.zeros((20, 2)),
        SectionLabels(dataset="toy", section="A2", patient="A"))
    write_section(adata, root / "toy" / "A2.h5ad")
    with pytest.raises(ConfigError, match="section A2 has only 30 genes"):
        select_panel(root, "toy", PanelSettings(top=40))
    with pytest.raises(ConfigError, match="only 5 genes are shared by all 2 sections, fewer than --top 10"):
        select_panel(root, "toy", PanelSettings(top=10))


runner = CliRunner()


def test_cli_select_writes_panel_and_compares(toy_root, tmp_path):
    ref = tmp_path / "ref.txt"
    ref.write_text("G005\nG006\nG999\n")
    out = tmp_path / "p.txt"
    res = runner.invoke(app, ["genes", "select", "--data-root", str(toy_root), "--dataset", "toy", "--sections", "A1,A2",
                              "--top", "10", "--flavor", "cell_ranger", "--out", str(out), "--compare", str(ref)])
    assert res.exit_code == 0, res.output
    assert "genes surviving each step" in flat(res.output) and "Jaccard 0.333" in flat(res.output)
    assert len(out.read_text().split()) == 5 and (tmp_path / "p.txt.json").is_file()


def test_cli_select_empty_panel_one_line_exit_2(toy_root, tmp_path):
    out = tmp_path / "p.txt"
    res = runner.invoke(app, ["genes", "select", "--data-root", str(toy_root), "--dataset", "toy", "--top", "10",
                              "--flavor", "cell_ranger", "--out", str(out)])
    assert res.exit_code == 2
    err_lines = [ln for ln in res.stderr.splitlines() if ln.strip()] if res.stderr_bytes is not None else []
    assert any("removed the most genes" in ln and "min-sections:2" in ln for ln in err_lines), res.output
    assert "error:" in res.stderr and res.stderr.count("error:") == 1
    assert not out.exists() and not (tmp_path / "p.txt.json").exists()


def test_cli_select_again_keeps_refuses_or_overwrites(toy_root, tmp_path):
    out = tmp_path / "p.txt"
    base = ["genes", "select", "--data-root", str(toy_root), "--dataset", "toy", "--top", "10", "--flavor", "cell_ranger",
            "--rule", "min-sections:2", "--out", str(out)]
    assert runner.invoke(app, base).exit_code == 0
    first = out.read_text()
    same = runner.invoke(app, base)  # the same settings: kept, said so
    assert same.exit_code == 0 and "exists with these settings, kept" in flat(same.output)
    other = runner.invoke(app, [*base[:-4], "--rule", "union", "--out", str(out)])
    assert other.exit_code == 2
    assert "exists, selected with other settings (rule: min-sections:2 there, union asked)" in flat(other.output)
    assert "--overwrite" in flat(other.output) and out.read_text() == first
    again = runner.invoke(app, [*base[:-4], "--rule", "union", "--out", str(out), "--overwrite"])
    assert again.exit_code == 0, again.output
    assert '"rule": "union"' in (tmp_path / "p.txt.json").read_text()


def test_cli_select_missing_vocab_is_an_error_even_with_a_panel(toy_root, tmp_path):
    out = tmp_path / "p.txt"
    base = ["genes", "select", "--data-root", str(toy_root), "--dataset", "toy", "--top", "10", "--flavor", "cell_ranger",
            "--rule", "min-sections:2", "--out", str(out)]
    assert runner.invoke(app, base).exit_code == 0
    res = runner.invoke(app, [*base, "--vocab", str(tmp_path / "gene2vec_dim_200_iter_9.txt")])
    assert res.exit_code == 2
    assert "gene2vec_dim_200_iter_9.txt: embeddings file for --vocab not found" in flat(res.output)
