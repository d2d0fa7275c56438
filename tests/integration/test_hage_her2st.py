"""HAGE on the real HER2ST sections C2..C6 with ``builtin`` features, leave-one-section-out.

Short settings (d=64, 4 epochs, one trial): the check is that the whole chain runs on the
real formats and learns something for every held-out section (PCC(all) > 0). The panel is
the literature's 785-gene list; gene embeddings come from two image-less sections (A1, B1),
so no held-out section leaks into them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

IMAGED = ["C2", "C3", "C4", "C5", "C6"]
EMBED = ["A1", "B1"]


@pytest.fixture()
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_hage_leave_one_section_out_on_her2st(
    her2_root: Path, her2_builtin_features: Path, shared_data: Path, tmp_path: Path, one_thread
):
    import anndata as ad

    from hagekit.genes.coexpression import GeneEmbeddingSettings, train_gene_embeddings
    from hagekit.genes.embeddings import write_gene2vec_text
    from hagekit.io.genelist import read_gene_list, write_gene_list
    from hagekit.study import StudyInputs
    from hagekit.training.run import train_run

    data = her2_root
    common: set[str] | None = None
    for s in IMAGED + EMBED:
        a = ad.read_h5ad(data / "her2" / f"{s}.h5ad", backed="r")
        common = set(a.var_names) if common is None else common & set(a.var_names)
        a.file.close()
    panel = [g for g in read_gene_list(shared_data / "gene_lists" / "her2st_785_hvg.txt") if g in common]
    assert len(panel) > 500
    emb = train_gene_embeddings(data, "her2", GeneEmbeddingSettings(dim=32, seed=0), sections=EMBED, genes=panel)
    emb_path = write_gene2vec_text(tmp_path / "emb.txt", emb.symbols, emb.vectors, provenance=emb.provenance)
    panel_path = write_gene_list(tmp_path / "panel.txt", emb.symbols)
    torch.set_num_threads(1)  # scanpy/numba may reset it while genes are processed
    feats = her2_builtin_features
    res = train_run(
        StudyInputs(data, "her2", feats, panel_path, emb_path), tmp_path / "run",
        overrides={"d": 64, "n_heads": 4, "k1": 10, "epochs": 4, "batch_size": 128, "lr": 1e-3, "trials": 1,
                   "folds": IMAGED, "split": "section"},
    )
    pcc = {r["section"]: r["pcc_all"] for r in res.rows}
    print("HER2ST C2..C6 PCC(all):", {k: round(v, 4) for k, v in pcc.items()})
    assert sorted(pcc) == IMAGED
    assert all(v > 0 for v in pcc.values()), pcc
    assert (tmp_path / "run" / "summary.json").is_file()
