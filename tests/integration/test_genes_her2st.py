"""Gene panels and embeddings on the real HER2ST sections (../shared/data/her2st).

The literature's 32 sections are A2..G3 in sorted order: all 36 but A1 and H1-H3.
The paper's literal rule (per-section top-1000 seurat HVGs, intersected) leaves no gene;
the survival table says where it empties and which rule would not. Embeddings trained on
the 31 image-less sections must beat random pairs on the 5 image sections C2..C6.
"""

from __future__ import annotations

import numpy as np
import pytest

from hagekit.genes.coexpression import GeneEmbeddingSettings, embeddings_from_sections
from hagekit.genes.panel import PanelSettings, jaccard, panel_from_sections
from hagekit.genes.quality import coexpression_auc_from_sections

LITERATURE = [f"{p}{k}" for p, n in zip("ABCDEFG", (6, 6, 6, 6, 3, 3, 3), strict=True) for k in range(1, n + 1)
              if f"{p}{k}" != "A1"]
HELD_OUT = ["C2", "C3", "C4", "C5", "C6"]


@pytest.fixture(scope="session")
def her2_sections(her2_root):
    """All 36 her2st sections as Section AnnData (prepared once per session in conftest)."""
    from hagekit.data.section import dataset_sections, read_section

    return {p.stem: read_section(p) for p in dataset_sections(her2_root, "her2")}


@pytest.fixture(scope="session")
def panel_785(shared_data):
    from hagekit.io.genelist import read_gene_list

    return read_gene_list(shared_data / "gene_lists" / "her2st_785_hvg.txt")


def test_literature_sections_are_32():
    assert len(LITERATURE) == 32 and LITERATURE[0] == "A2" and LITERATURE[-1] == "G3"


def test_literal_rule_empties_and_is_diagnosed(her2_sections, panel_785):
    sections = {s: her2_sections[s] for s in LITERATURE}
    res = panel_from_sections(sections, PanelSettings(top=1000, flavor="seurat", rule="intersect"))
    table = "\n".join(f"{s.step:38s} {s.n_genes:6d} {s.detail}" for s in res.steps)
    print("\n" + table + "\nalternatives: " + str(res.alternatives) + "\n" + res.diagnosis)
    assert res.empty and res.emptied_by is not None and res.emptied_by.startswith("∩ top-1000 HVGs of ")
    assert res.steps[1].n_genes > 11_000  # genes shared by the 32 sections
    assert "removed the most genes" in res.diagnosis and "--rule min-sections:" in res.diagnosis
    assert res.alternatives["intersect"] == 0 and res.alternatives["union"] > 5000
    assert res.alternatives["min-sections:8"] >= 500  # the suggestion keeps >= half of --top
    # HisToGene's rule (union of per-section HVGs, detected in >= 1000 spots) vs the published 785
    union = panel_from_sections(sections, PanelSettings(top=1000, flavor="seurat", rule="union", min_spots=1000))
    jac = jaccard(union.genes, panel_785)
    print(f"union + min-spots 1000: {len(union.genes)} genes, Jaccard vs 785 = {jac:.3f}")
    assert 0.0 < jac < 0.5 and not union.empty


def test_embeddings_from_image_less_sections_beat_random(her2_sections, panel_785):
    image_less = {s: a for s, a in her2_sections.items() if not a.uns["hagekit"]["has_image"]}
    assert len(image_less) == 31 and not set(image_less) & set(HELD_OUT)
    emb = embeddings_from_sections(
        image_less, GeneEmbeddingSettings(dim=50, epochs=5, threshold=0.2, seed=0), genes=panel_785)
    assert set(emb.provenance["sections"]).isdisjoint(HELD_OUT)
    assert len(emb.symbols) + len(emb.unmatched) == 785 and len(emb.unmatched) < 10
    q = coexpression_auc_from_sections(emb, {s: her2_sections[s] for s in HELD_OUT}, seed=0)
    print(f"held-out AUC {q['auc']:.3f} (random {q['auc_random']:.3f}), {q['n_pos']} pairs, {q['n_genes']} genes")
    assert q["overlap"] == []
    assert q["auc"] > 0.55 and q["auc"] > q["auc_random"] + 0.05
    assert np.isfinite(emb.vectors).all()
