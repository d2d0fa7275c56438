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
from dataclasses import dataclass
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
    "GeneEmbeddingSettings",
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


@dataclass(frozen=True)
class GeneEmbeddingSettings:
    """How the word2vec-style trainer runs: vector size, pair threshold, passes, seed."""

    dim: int = 200
    threshold: float = DEFAULT_THRESHOLD
    seed: int = 0
    #: None: enough passes for about ``TARGET_PAIR_UPDATES`` pair-updates (:func:`auto_epochs`)
    epochs: int | None = DEFAULT_EPOCHS
    min_partners: int = DEFAULT_MIN_PARTNERS
    negative: int = 5

    def validate(self) -> None:
        """One line naming the option for each out-of-range setting."""
        if self.dim < 1:
            raise ConfigError(f"--dim: must be >= 1, got {self.dim}")
        if not -1.0 <= self.threshold < 1.0:
            raise ConfigError(f"--threshold: a Pearson r in [-1, 1), got {self.threshold}")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"--epochs: must be >= 1, got {self.epochs}")
        if self.min_partners < 0:
            raise ConfigError(f"--min-partners: must be >= 0, got {self.min_partners}")
        if self.negative < 1:
            raise ConfigError(f"--negative: must be >= 1, got {self.negative}")


def _word2vec(sentences: list[list[str]], settings: GeneEmbeddingSettings, epochs: int, progress: Reporter | None) -> Any:
    """gensim's skip-gram (negative sampling, window 1, one worker) trained on ``sentences``."""
    from gensim.models import Word2Vec
    from gensim.models.callbacks import CallbackAny2Vec

    task = reporter_or_null(progress).task(f"word2vec ({len(sentences):,} pairs x {epochs} epochs)", epochs)

    class _Epochs(CallbackAny2Vec):  # type: ignore[misc]
        def on_epoch_end(self, model: Any) -> None:
            task.advance(1)

    model = Word2Vec(
        vector_size=settings.dim,
        window=1,
        min_count=1,
        sg=1,
        hs=0,
        negative=settings.negative,
        sample=0,
        workers=1,
        seed=settings.seed,
        epochs=epochs,
    )
    model.build_vocab(sentences)
    model.train(sentences, total_examples=len(sentences), epochs=epochs, callbacks=[_Epochs()])
    task.close()
    return model


def _provenance(
    settings: GeneEmbeddingSettings, sections: list[str], symbols: list[str], unmatched: list[str],
    counts: tuple[int, int, dict[str, int]], dataset: str,
) -> dict[str, Any]:
    """What a gene-embeddings file records about its training (``counts``: pairs, epochs, pairs per section)."""
    import gensim

    from hagekit import __version__

    n_pairs, epochs, per_section = counts
    return {
        "kind": "hagekit gene embeddings",
        "method": "coexpression-word2vec (Gene2Vec-style skip-gram)",
        "dataset": dataset,
        "sections": sections,
        "n_genes": len(symbols),
        "unmatched": unmatched,
        "dim": settings.dim,
        "threshold": settings.threshold,
        "min_partners": settings.min_partners,
        "epochs": epochs,
        "epochs_auto": settings.epochs is None,
        "negative": settings.negative,
        "window": 1,
        "seed": settings.seed,
        "n_pairs": n_pairs,
        "pairs_per_section": per_section,
        "normalisation": "log1p(counts / spot total * 1e4), Pearson r across spots per section",
        "gensim_version": gensim.__version__,
        "hagekit_version": __version__,
    }


def embeddings_from_sections(
    sections: Mapping[str, anndata.AnnData],
    settings: GeneEmbeddingSettings = GeneEmbeddingSettings(),
    *,
    genes: Sequence[str] | None = None,
    dataset: str = "",
    progress: Reporter | None = None,
) -> GeneEmbeddings:
    """Train Gene2Vec-style embeddings on in-memory sections (name -> AnnData of raw counts)."""
    settings.validate()
    if not sections:
        raise ConfigError("--sections: no training sections chosen")
    panel = _genes_for_training(sections, genes)
    sentences, per_section = coexpression_sentences(
        sections, panel, threshold=settings.threshold, min_partners=settings.min_partners,
        seed=settings.seed, progress=progress,
    )
    if not sentences:
        raise DataError(
            f"sections {', '.join(sections)}: no co-expressed gene pair (r > {settings.threshold}); lower --threshold"
        )
    epochs = auto_epochs(len(sentences)) if settings.epochs is None else settings.epochs
    model = _word2vec(sentences, settings, epochs, progress)
    symbols = [g for g in panel if g in model.wv.key_to_index]
    unmatched = [g for g in panel if g not in model.wv.key_to_index]
    if unmatched:
        log.warning("%d genes had no co-expression partner in any section and got no vector (%s)",
                    len(unmatched), ", ".join(unmatched[:5]))
    vectors = np.stack([model.wv[g] for g in symbols]).astype(np.float32)
    provenance = _provenance(settings, list(sections), symbols, unmatched, (len(sentences), epochs, per_section), dataset)
    return GeneEmbeddings(symbols, vectors, unmatched, provenance, None)


def train_gene_embeddings(
    data_root: Path | str,
    dataset: str,
    settings: GeneEmbeddingSettings = GeneEmbeddingSettings(),
    *,
    sections: Sequence[str] | None,
    genes: Sequence[str] | None = None,
    progress: Reporter | None = None,
) -> GeneEmbeddings:
    """Train Gene2Vec-style embeddings from a prepared dataset's sections (all when None).

    The returned provenance lists the sections used, so that training on a held-out
    section can be refused later (:func:`~hagekit.genes.embeddings.embedding_training_sections`).
    """
    from hagekit.genes._sections import load_sections
    from hagekit.workspace import canonical_dataset

    settings.validate()
    if not Path(data_root).is_dir():
        raise DataError(at(data_root, "data root not found"))
    loaded = load_sections(data_root, dataset, sections, progress=progress)
    return embeddings_from_sections(
        loaded, settings, genes=genes, dataset=canonical_dataset(dataset), progress=progress
    )
