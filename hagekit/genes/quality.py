"""Quality of gene embeddings: are co-expressed genes of unseen sections closer than random pairs?

Positives: gene pairs whose Pearson r (log1p-normalised expression across spots), averaged
over the evaluation sections, exceeds ``threshold`` (default 0.3: clearly co-expressed). Negatives: uniformly random gene pairs, as many
as positives. Score: cosine similarity of the two genes' vectors. The ROC AUC is 0.5 for a
random embedding (``auc_random`` computes exactly that control on the same pairs).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hagekit.errors import ConfigError, DataError
from hagekit.genes.embeddings import GeneEmbeddings, match_symbols
from hagekit.progress import Reporter, track

if TYPE_CHECKING:
    import anndata

__all__ = ["coexpression_auc", "coexpression_auc_from_sections", "pair_auc"]

log = logging.getLogger(__name__)

#: Mean Pearson r over the evaluation sections above which a pair counts as co-expressed.
DEFAULT_EVAL_THRESHOLD = 0.3
#: Positive pairs kept at most (sampled with the seed) so large panels stay fast.
MAX_PAIRS = 50_000


def pair_auc(vectors: np.ndarray, positives: np.ndarray, negatives: np.ndarray) -> float:
    """ROC AUC of cosine similarity separating ``positives`` from ``negatives`` (index pairs)."""
    from sklearn.metrics import roc_auc_score

    V = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(V, axis=1, keepdims=True)
    V = V / np.where(norms > 0, norms, 1.0)

    def cos(p: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", V[p[:, 0]], V[p[:, 1]])

    scores = np.concatenate([cos(positives), cos(negatives)])
    labels = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
    return float(roc_auc_score(labels, scores))


def coexpression_auc_from_sections(
    emb: GeneEmbeddings,
    sections: Mapping[str, anndata.AnnData],
    *,
    threshold: float = DEFAULT_EVAL_THRESHOLD,
    seed: int = 0,
    max_pairs: int = MAX_PAIRS,
    progress: Reporter | None = None,
) -> dict[str, Any]:
    """AUC of co-expressed vs random pairs on in-memory evaluation sections.

    Returns ``auc``, ``auc_random`` (a seeded random embedding, ~0.5), ``n_pos``, ``n_neg``,
    ``n_genes`` (embedded genes found in every section), ``sections`` and ``overlap``
    (evaluation sections the embeddings were trained on: a leak when non-empty).
    """
    from hagekit.genes._sections import (
        common_genes,
        log_normalised,
        mean_correlated_pairs,
        standardise,
    )

    if not sections:
        raise ConfigError("--sections: no evaluation sections chosen")
    if not -1.0 <= threshold < 1.0:
        raise ConfigError(f"--eval-threshold: a Pearson r in [-1, 1), got {threshold}")
    shared = common_genes(sections)
    emb_idx, absent = match_symbols(shared, emb.symbols)
    missing = set(absent)
    data_genes = [g for g in shared if g not in missing]
    # keep one data gene per embedding row (two data genes may fold to one symbol)
    seen: set[int] = set()
    keep = [(g, i) for g, i in zip(data_genes, emb_idx, strict=True) if not (i in seen or seen.add(i))]
    data_genes = [g for g, _ in keep]
    rows = np.array([i for _, i in keep], dtype=np.int64)
    if len(rows) < 3:
        raise DataError(
            f"{emb.path or 'embeddings'}: only {len(rows)} embedded genes occur in sections "
            f"{', '.join(sections)} (need >= 3)"
        )
    Zs: list[np.ndarray] = []
    for s in track(list(sections), "held-out co-expression", progress=progress):
        adata = sections[s]
        pos = adata.var_names.get_indexer(data_genes)
        Zs.append(standardise(log_normalised(adata, pos.tolist()))[0])
    positives = mean_correlated_pairs(Zs, threshold)
    if len(positives) == 0:
        raise DataError(
            f"sections {', '.join(sections)}: no embedded gene pair has mean r > {threshold}; lower --threshold"
        )
    rng = np.random.default_rng(seed)
    if len(positives) > max_pairs:
        positives = positives[np.sort(rng.choice(len(positives), max_pairs, replace=False))]
    G = len(rows)
    a = rng.integers(0, G, size=len(positives))
    b = (a + rng.integers(1, G, size=len(positives))) % G  # b != a
    negatives = np.stack([a, b], axis=1)
    vectors = emb.vectors[rows]
    auc = pair_auc(vectors, positives, negatives)
    random_vectors = rng.standard_normal(vectors.shape)
    auc_random = pair_auc(random_vectors, positives, negatives)
    overlap = sorted(emb.training_sections() & set(sections))
    if overlap:
        log.warning("evaluation sections %s were used to train the embeddings: the AUC is optimistic", overlap)
    return {
        "auc": auc,
        "auc_random": auc_random,
        "n_pos": int(len(positives)),
        "n_neg": int(len(negatives)),
        "n_genes": int(G),
        "threshold": float(threshold),
        "sections": list(sections),
        "overlap": overlap,
        "seed": seed,
    }


def coexpression_auc(
    emb: GeneEmbeddings,
    data_root: Path | str,
    dataset: str,
    sections: Sequence[str],
    *,
    threshold: float = DEFAULT_EVAL_THRESHOLD,
    seed: int = 0,
    progress: Reporter | None = None,
    option: str = "--sections",
) -> dict[str, Any]:
    """ROC AUC of cosine similarity for co-expressed vs random gene pairs on ``sections``.

    ``option`` names the section list in errors (``genes embed`` calls it ``--eval-sections``);
    at most ``MAX_PAIRS`` positive pairs are scored (:func:`coexpression_auc_from_sections` takes another cap).

    Use sections the embeddings were not trained on; a random embedding gives 0.5.
    """
    from hagekit.genes._sections import load_sections

    if not sections:
        raise ConfigError(f"{option}: no evaluation sections chosen")
    loaded = load_sections(data_root, dataset, sections, progress=progress, option=option)
    return coexpression_auc_from_sections(
        emb, loaded, threshold=threshold, seed=seed, progress=progress
    )
