"""Leak-free gene embeddings per cross-validation fold, trained on the fold's training sections.

Co-expression embeddings (:func:`hagekit.genes.coexpression.train_gene_embeddings`) trained on
a held-out section leak its expression into training. Where every section has an image (cSCC,
Visium sets) there are no image-less sections to train them on, so ``hagekit train`` trains
one set per fold on that fold's training sections only and caches it (Gene2Vec text + sidecar)
under ``cache_dir``, keyed by the sections, panel, dimension and seed. ``hagekit bench`` uses the
same cache, so a fold's embeddings are trained once and shared by every method, variant and trial.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hagekit.errors import DataError, HagekitError, at
from hagekit.progress import Reporter

__all__ = ["FoldEmbeddings", "embeddings_for"]

log = logging.getLogger(__name__)


class FoldEmbeddings:
    """Per-fold embeddings of ``genes`` (panel order), trained on demand and cached on disk."""

    def __init__(self, data_root: Path | str, dataset: str, genes: Sequence[str], *, dim: int, cache_dir: Path | str,
                 seed: int = 0, progress: Reporter | None = None) -> None:
        self.data_root, self.dataset, self.genes = Path(data_root), dataset, list(genes)
        self.dim, self.cache_dir, self.seed, self.progress = int(dim), Path(cache_dir), int(seed), progress
        self._loaded: dict[Path, np.ndarray] = {}
        #: Cache files this object trained (the others were read from an earlier run's cache).
        self.trained: list[Path] = []

    def __getstate__(self) -> dict:
        """Picklable for worker processes: the progress reporter stays behind."""
        return {**self.__dict__, "progress": None}

    def path_for(self, sections: Sequence[str]) -> Path:
        """The cache file of embeddings trained on ``sections``."""
        key = "|".join([",".join(sorted(sections)), ",".join(self.genes), str(self.dim), str(self.seed)])
        return self.cache_dir / f"{'-'.join(sorted(sections))[:60]}_{hashlib.sha256(key.encode()).hexdigest()[:12]}.txt"

    def for_sections(self, sections: Sequence[str]) -> np.ndarray:
        """(G, dim) float32 embeddings trained on ``sections`` only, parsed once per process and
        shared by every trial of the fold; genes without a co-expression partner there get a zero
        vector (logged)."""
        path = self.path_for(sections)
        if path not in self._loaded:
            self._loaded[path] = self._load(sections, path)
        return self._loaded[path]

    def _load(self, sections: Sequence[str], path: Path) -> np.ndarray:
        emb = _read_verified(path) if path.is_file() else None
        if emb is None:
            emb = self._train_locked(sections, path)
        row = {s.upper(): i for i, s in enumerate(emb.symbols)}
        out = np.zeros((len(self.genes), emb.vectors.shape[1]), dtype=np.float32)
        missing = [g for g in self.genes if g.upper() not in row]
        for i, g in enumerate(self.genes):
            if g.upper() in row:
                out[i] = emb.vectors[row[g.upper()]]
        if missing:
            log.warning("%s: %d panel genes have no embedding (zero vectors), e.g. %s", path, len(missing),
                        ", ".join(missing[:5]))
        return out

    def _train_locked(self, sections: Sequence[str], path: Path) -> Any:
        """Train and cache the set for ``sections`` under the cache file's lock; a process that
        waited for another's lock reads what that one wrote instead of training it again."""
        from hagekit.genes.coexpression import GeneEmbeddingSettings, train_gene_embeddings
        from hagekit.genes.embeddings import write_gene2vec_text
        from hagekit.io.locks import wait_lock

        path.parent.mkdir(parents=True, exist_ok=True)
        with wait_lock(path.parent, f".{path.name}"):
            emb = _read_verified(path, quiet=True) if path.is_file() else None
            if emb is not None:
                return emb
            log.info("training per-fold gene embeddings on %s -> %s", ", ".join(sorted(sections)), path)
            emb = train_gene_embeddings(self.data_root, self.dataset, GeneEmbeddingSettings(dim=self.dim, seed=self.seed),
                                        sections=list(sections), genes=self.genes, progress=self.progress)
            provenance = {**emb.provenance, "n_genes": len(emb.symbols),
                          "content_sha256": content_sha256(emb.symbols, emb.vectors)}
            write_gene2vec_text(path, emb.symbols, emb.vectors, provenance=provenance)
            self.trained.append(path)
            emb = _read_verified(path)
            if emb is None:
                raise DataError(at(path, "per-fold gene embeddings do not read back as written"))
            return emb


def content_sha256(symbols: Sequence[str], vectors: np.ndarray) -> str:
    """sha256 of embeddings as read (symbols in order, float32 vectors): the text format writes
    float32 exactly, so a whole cache file reads back to the digest recorded when it was written."""
    vec = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    h = hashlib.sha256("\n".join(symbols).encode("utf-8", "surrogateescape"))
    h.update(f"{vec.shape}".encode())
    h.update(vec.tobytes())
    return h.hexdigest()


def _read_verified(path: Path, *, quiet: bool = False) -> Any:
    """A per-fold cache file whose contents match the digest its sidecar recorded, else ``None``
    (damaged, truncated even at a line boundary, or written before digests were recorded: the
    caller trains it again; training on half a cache would silently zero the missing genes)."""
    from hagekit.genes.embeddings import load_gene_embeddings

    try:
        emb = load_gene_embeddings(path)
        want = emb.provenance.get("content_sha256")
        ok = want is not None and want == content_sha256(emb.symbols, emb.vectors)
        problem = "its sidecar records no digest" if want is None else "contents differ from its recorded digest"
    except (HagekitError, OSError, ValueError) as exc:
        ok, problem = False, str(exc)
    if not ok:
        (log.info if quiet else log.warning)("%s: per-fold gene embeddings cache is damaged or incomplete (%s); training it again", path, problem)
        return None
    return emb


def embeddings_for(gene_embeddings: np.ndarray | FoldEmbeddings | None,
                   train_sections: Sequence[str]) -> np.ndarray | None:
    """The (G, d) embeddings a model trained on ``train_sections`` may use: a fixed array as is,
    or the :class:`FoldEmbeddings` set trained on those sections."""
    if isinstance(gene_embeddings, FoldEmbeddings):
        return gene_embeddings.for_sections(train_sections)
    return gene_embeddings
