"""Gene2Vec's method on your own sections: co-expression pairs -> skip-gram gene embeddings.

Per section: log1p of counts normalised to 1e4 per spot, Pearson correlation between genes
across spots; every pair with r > ``threshold`` becomes a two-word "sentence" (pairs found
in several sections count several times, as Gene2Vec's pairs from several data sets do).
Each gene's ``min_partners`` strongest positive partners per section are added so that
every expressed gene gets a vector (Gene2Vec drops genes with no pair; a panel cannot).
gensim's Word2Vec (skip-gram, negative sampling, window 1, one worker) learns the vectors;
the same seed gives the same numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hagekit.errors import ConfigError, DataError, at
from hagekit.genes.embeddings import GeneEmbeddings
from hagekit.progress import Reporter, reporter_or_null, track

if TYPE_CHECKING:
    import anndata

__all__ = [
    "DEFAULT_THRESHOLD",
    "DEFAULT_EPOCHS",
    "DEFAULT_MIN_PARTNERS",
    "auto_epochs",
    "coexpression_sentences",
    "train_gene_embeddings",
    "embeddings_from_sections",
]

log = logging.getLogger(__name__)

#: Pearson r above which two genes count as co-expressed in a section. ST spots are far
#: noisier than Gene2Vec's microarrays; on HER2ST (785-gene panel, 31 image-less sections)
#: 0.2 keeps 110k pairs of 308k possible (0.3: 43k pairs, slightly lower AUC at equal updates).
DEFAULT_THRESHOLD = 0.2
#: With ``epochs=None``, passes over the pairs are chosen so that about this many pairs are
#: trained in all (at least ``MIN_AUTO_EPOCHS``, at most ``MAX_AUTO_EPOCHS``). On HER2ST
#: (785 genes, 31 sections, 110k pairs) the held-out AUC is set by this total, not by the
#: threshold: 1.1M pair-updates (10 epochs) 0.80, 5.5M (50 epochs) 0.96.
TARGET_PAIR_UPDATES = 5_000_000
MIN_AUTO_EPOCHS, MAX_AUTO_EPOCHS = 10, 100
#: Kept for callers that want a fixed number (Gene2Vec's published file is ``iter_9``).
DEFAULT_EPOCHS: int | None = None
#: Strongest partners per gene and section always kept, so no expressed gene is left out.
DEFAULT_MIN_PARTNERS = 2
#: Genes detected in fewer spots (over all training sections) are left out when no panel is given.
MIN_SPOTS_DEFAULT_GENES = 10


def _genes_for_training(sections: Mapping[str, anndata.AnnData], genes: Sequence[str] | None) -> list[str]:
    """The panel to embed: ``genes`` (checked against every section) or all shared, detected genes."""
    from hagekit.genes._sections import common_genes, locate_genes

    if genes is not None:
        genes = list(dict.fromkeys(genes))
        if not genes:
            raise ConfigError("--genes: the panel is empty")
        for s, adata in sections.items():
            locate_genes(genes, list(adata.var_names), source=f"--genes (section {s})")
        return genes
    shared = common_genes(sections)
    detected = np.zeros(len(shared), dtype=np.int64)
    for adata in sections.values():
        pos = adata.var_names.get_indexer(shared)
        detected += np.asarray((adata.X[:, pos] > 0).sum(axis=0)).ravel()
    out = [g for g, d in zip(shared, detected.tolist(), strict=True) if d >= MIN_SPOTS_DEFAULT_GENES]
    if not out:
        raise DataError(f"sections {', '.join(sections)}: no shared gene is detected in >= {MIN_SPOTS_DEFAULT_GENES} spots")
    return out


def coexpression_sentences(
    sections: Mapping[str, anndata.AnnData],
    genes: Sequence[str],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_partners: int = DEFAULT_MIN_PARTNERS,
    seed: int = 0,
    progress: Reporter | None = None,
) -> tuple[list[list[str]], dict[str, int]]:
    """Two-gene "sentences" from each section's co-expressed pairs, shuffled with ``seed``.

    Returns ``(sentences, pairs per section)``; gene tokens are the panel's symbols.
    """
    from hagekit.genes._sections import correlated_pairs, locate_genes, log_normalised, standardise

    genes = list(genes)
    all_pairs: list[np.ndarray] = []
    per_section: dict[str, int] = {}
    for s in track(list(sections), "co-expression pairs", progress=progress):
        adata = sections[s]
        cols = locate_genes(genes, list(adata.var_names), source=f"--genes (section {s})")
        Z, valid = standardise(log_normalised(adata, cols))
        pairs = correlated_pairs(Z, valid, threshold, min_partners=min_partners)
        per_section[s] = int(len(pairs))
        all_pairs.append(pairs)
        log.debug("%s: %d pairs (r > %.2f or top-%d partners)", s, len(pairs), threshold, min_partners)
    pairs = np.concatenate(all_pairs) if all_pairs else np.zeros((0, 2), np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pairs))
    flip = rng.random(len(pairs)) < 0.5
    sentences = [
        [genes[pairs[k, 1]], genes[pairs[k, 0]]] if flip[k] else [genes[pairs[k, 0]], genes[pairs[k, 1]]]
        for k in order.tolist()
    ]
    return sentences, per_section


def auto_epochs(n_pairs: int) -> int:
    """Epochs giving about ``TARGET_PAIR_UPDATES`` pair-updates (clipped to 10..100)."""
    need = -(-TARGET_PAIR_UPDATES // max(n_pairs, 1))
    return int(min(MAX_AUTO_EPOCHS, max(MIN_AUTO_EPOCHS, need)))


def _validate(dim: int, threshold: float, epochs: int | None, min_partners: int, negative: int) -> None:
    if dim < 1:
        raise ConfigError(f"--dim: must be >= 1, got {dim}")
    if not -1.0 <= threshold < 1.0:
        raise ConfigError(f"--threshold: a Pearson r in [-1, 1), got {threshold}")
    if epochs is not None and epochs < 1:
        raise ConfigError(f"--epochs: must be >= 1, got {epochs}")
    if min_partners < 0:
        raise ConfigError(f"--min-partners: must be >= 0, got {min_partners}")
    if negative < 1:
        raise ConfigError(f"--negative: must be >= 1, got {negative}")


def embeddings_from_sections(
    sections: Mapping[str, anndata.AnnData],
    *,
    genes: Sequence[str] | None = None,
    dim: int = 200,
    threshold: float = DEFAULT_THRESHOLD,
    seed: int = 0,
    epochs: int | None = DEFAULT_EPOCHS,
    min_partners: int = DEFAULT_MIN_PARTNERS,
    negative: int = 5,
    dataset: str = "",
    progress: Reporter | None = None,
) -> GeneEmbeddings:
    """Train Gene2Vec-style embeddings on in-memory sections (name -> AnnData of raw counts)."""
    from gensim.models import Word2Vec
    from gensim.models.callbacks import CallbackAny2Vec

    from hagekit import __version__

    _validate(dim, threshold, epochs, min_partners, negative)
    if not sections:
        raise ConfigError("--sections: no training sections chosen")
    panel = _genes_for_training(sections, genes)
    sentences, per_section = coexpression_sentences(
        sections, panel, threshold=threshold, min_partners=min_partners, seed=seed, progress=progress
    )
    if not sentences:
        raise DataError(
            f"sections {', '.join(sections)}: no co-expressed gene pair (r > {threshold}); lower --threshold"
        )
    auto = epochs is None
    epochs = auto_epochs(len(sentences)) if epochs is None else epochs
    task = reporter_or_null(progress).task(f"word2vec ({len(sentences):,} pairs x {epochs} epochs)", epochs)

    class _Epochs(CallbackAny2Vec):  # type: ignore[misc]
        def on_epoch_end(self, model: Any) -> None:
            task.advance(1)

    model = Word2Vec(
        vector_size=dim,
        window=1,
        min_count=1,
        sg=1,
        hs=0,
        negative=negative,
        sample=0,
        workers=1,
        seed=seed,
        epochs=epochs,
    )
    model.build_vocab(sentences)
    model.train(sentences, total_examples=len(sentences), epochs=epochs, callbacks=[_Epochs()])
    task.close()
    symbols = [g for g in panel if g in model.wv.key_to_index]
    unmatched = [g for g in panel if g not in model.wv.key_to_index]
    if unmatched:
        log.warning("%d genes had no co-expression partner in any section and got no vector (%s)",
                    len(unmatched), ", ".join(unmatched[:5]))
    vectors = np.stack([model.wv[g] for g in symbols]).astype(np.float32)
    import gensim

    provenance = {
        "kind": "hagekit gene embeddings",
        "method": "coexpression-word2vec (Gene2Vec-style skip-gram)",
        "dataset": dataset,
        "sections": list(sections),
        "n_genes": len(symbols),
        "unmatched": unmatched,
        "dim": dim,
        "threshold": threshold,
        "min_partners": min_partners,
        "epochs": epochs,
        "epochs_auto": auto,
        "negative": negative,
        "window": 1,
        "seed": seed,
        "n_pairs": len(sentences),
        "pairs_per_section": per_section,
        "normalisation": "log1p(counts / spot total * 1e4), Pearson r across spots per section",
        "gensim_version": gensim.__version__,
        "hagekit_version": __version__,
    }
    return GeneEmbeddings(symbols, vectors, unmatched, provenance, None)


def train_gene_embeddings(
    data_root: Path | str,
    dataset: str,
    *,
    sections: Sequence[str] | None,
    genes: Sequence[str] | None = None,
    dim: int = 200,
    threshold: float = DEFAULT_THRESHOLD,
    seed: int = 0,
    epochs: int | None = DEFAULT_EPOCHS,
    min_partners: int = DEFAULT_MIN_PARTNERS,
    negative: int = 5,
    progress: Reporter | None = None,
) -> GeneEmbeddings:
    """Train Gene2Vec-style embeddings from a prepared dataset's sections (all when None).

    The returned provenance lists the sections used, so that training on a held-out
    section can be refused later (:func:`~hagekit.genes.embeddings.embedding_training_sections`).
    """
    from hagekit.genes._sections import load_sections
    from hagekit.workspace import canonical_dataset

    _validate(dim, threshold, epochs, min_partners, negative)
    if not Path(data_root).is_dir():
        raise DataError(at(data_root, "data root not found"))
    loaded = load_sections(data_root, dataset, sections, progress=progress)
    return embeddings_from_sections(
        loaded,
        genes=genes,
        dim=dim,
        threshold=threshold,
        seed=seed,
        epochs=epochs,
        min_partners=min_partners,
        negative=negative,
        dataset=canonical_dataset(dataset),
        progress=progress,
    )
