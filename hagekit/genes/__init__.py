"""Gene panels (HVG selection) and gene embeddings (Gene2Vec files, co-expression training, quality).

Submodules load lazily so that importing :mod:`hagekit.genes` stays cheap.
"""

from __future__ import annotations

from hagekit._lazy import lazy_exports

_API: dict[str, str] = {
    "GeneEmbeddings": "hagekit.genes.embeddings",
    "load_gene_embeddings": "hagekit.genes.embeddings",
    "embeddings_for_panel": "hagekit.genes.embeddings",
    "embedding_training_sections": "hagekit.genes.embeddings",
    "write_gene2vec_text": "hagekit.genes.embeddings",
    "write_gene_embeddings": "hagekit.genes.embeddings",
    "read_sidecar": "hagekit.genes.embeddings",
    "match_symbols": "hagekit.genes.embeddings",
    "PanelResult": "hagekit.genes.panel",
    "PanelStep": "hagekit.genes.panel",
    "select_panel": "hagekit.genes.panel",
    "panel_from_sections": "hagekit.genes.panel",
    "write_panel": "hagekit.genes.panel",
    "jaccard": "hagekit.genes.panel",
    "train_gene_embeddings": "hagekit.genes.coexpression",
    "embeddings_from_sections": "hagekit.genes.coexpression",
    "coexpression_auc": "hagekit.genes.quality",
    "coexpression_auc_from_sections": "hagekit.genes.quality",
}

__all__ = list(_API)


__getattr__, __dir__ = lazy_exports(__name__, _API)
