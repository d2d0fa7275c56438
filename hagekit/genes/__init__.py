"""Gene panels (HVG selection) and gene embeddings (Gene2Vec files, co-expression training, quality).

Submodules load lazily so that importing :mod:`hagekit.genes` stays cheap.
"""

from __future__ import annotations

from hagekit._lazy import by_module, lazy_exports

#: module -> the public names it defines (loaded on first use)
_API = by_module(
    {
        "hagekit.genes.embeddings": ["GeneEmbeddings", "load_gene_embeddings", "embeddings_for_panel", "embedding_training_sections", "write_gene2vec_text", "write_gene_embeddings", "read_sidecar", "match_symbols"],
        "hagekit.genes.panel": ["PanelResult", "PanelStep", "select_panel", "panel_from_sections", "write_panel", "jaccard"],
        "hagekit.genes.coexpression": ["train_gene_embeddings", "embeddings_from_sections"],
        "hagekit.genes.quality": ["coexpression_auc", "coexpression_auc_from_sections"],
    }
)

__all__ = list(_API)


__getattr__, __dir__ = lazy_exports(__name__, _API)
