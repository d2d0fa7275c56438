"""Hierarchical alignment (paper section 2.3): fixed two-level clusters and their centroids.

Assignments are computed once per training run: k-means (k1) on the training spots'
expression targets, then k-means (k2) on their standardised image features inside each
expression cluster (``single_level``: k1*k2 clusters on expression only, Table 2 ablation IV).
The paper clusters "raw gene expression"; we cluster the training targets (library-size
normalised log1p by default), because raw counts cluster by sequencing depth first
(``--target raw`` clusters and trains on raw counts).

Centroids (``CENTROID_MODES``):

- ``batch``: means over the members of each sub-cluster present in the current batch
  (~4 spots each at batch 256 and 60 sub-clusters): exact for the current weights, noisy.
- ``memory``: the paper's whole-sub-cluster means c_pq = mean over all j in S_pq. A bank keeps
  the latest z^i, z^e of every training spot (filled by one no-gradient pass at the start and
  updated with each batch); a centroid is the bank mean with the batch members replaced by
  their current embeddings, so gradients reach the batch members and every sub-cluster
  contributes a centroid at every step (others act as fixed negatives).
- ``epoch``: as ``memory``, but the bank is recomputed from all members at the start of every
  epoch and not updated in between (older embeddings within an epoch, one extra forward pass).

The default stays ``batch``: by nested validation on HER2ST C2..C6 (``hagekit bench tune``,
builtin features, 785 genes, 5 inner folds, mean of PCC(all) and PCC(HEG)) the three are level:
batch 0.2469, memory 0.2469, epoch 0.2495 on one split per fold, batch 0.2494 vs epoch 0.2506 over
three (``--repeats 3``; the split-to-split spread is ~0.003), and the whole-cluster modes end with
more aligned expression embeddings (mean cosine of z^e 0.46 vs 0.39). With ~600 spots and 60 sub-clusters of
~10 spots, a whole-cluster centroid is mostly stale bank entries that carry no gradient, while
the batch centroid (~4 members) is exact for the current weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["CENTROID_MODES", "Hierarchy", "kmeans", "build_hierarchy", "batch_centroids", "CentroidBank"]

CENTROID_MODES = ("batch", "memory", "epoch")


@dataclass(frozen=True)
class Hierarchy:
    """Fixed cluster assignments of the training spots."""

    labels: np.ndarray  #: (N,) int64 sub-cluster id in [0, n_clusters)
    coarse: np.ndarray  #: (N,) int64 expression-cluster id
    n_clusters: int

    def sizes(self) -> np.ndarray:
        """Spots per sub-cluster, (n_clusters,)."""
        return np.bincount(self.labels, minlength=self.n_clusters)


def kmeans(data: np.ndarray, k: int, *, seed: int = 0, n_iter: int = 50) -> np.ndarray:
    """Seeded k-means (greedy k-means++ init, Lloyd iterations) -> labels (N,) int64 in [0, k').

    Kept over scikit-learn's ``KMeans`` (same init rule, n_init=1) because it is faster at the
    same inertia: ``benchmarks/kmeans_speed.py`` at 10,000 x 785, k=30, 2 threads: 5.9 s vs
    24.4 s (loaded machine), inertia ratio 1.003. ``k`` is capped at the distinct points.
    """
    import torch

    x = torch.as_tensor(np.asarray(data, dtype=np.float32))
    n = x.shape[0]
    k = max(1, min(int(k), n))
    if k == 1 or n == 0:
        return np.zeros(n, dtype=np.int64)
    gen = torch.Generator().manual_seed(int(seed))
    sq = (x * x).sum(1)

    def dist2(c: torch.Tensor) -> torch.Tensor:
        return (sq[:, None] - 2.0 * x @ c.T + (c * c).sum(1)[None, :]).clamp_min_(0.0)

    # greedy k-means++ (as scikit-learn): 2 + log(k) candidates per step, keep the best
    trials = 2 + int(np.log(k))
    centers = [x[int(torch.randint(n, (1,), generator=gen))]]
    closest = dist2(centers[0][None])[:, 0]
    for _ in range(1, k):
        total = float(closest.sum())
        if total <= 0.0:  # fewer distinct points than k
            break
        cand = torch.multinomial(closest / total, trials, replacement=True, generator=gen)
        pot = torch.minimum(closest[None, :], dist2(x[cand]).T)  # (trials, N)
        best = int(pot.sum(1).argmin())
        centers.append(x[cand[best]])
        closest = pot[best]
    c = torch.stack(centers)
    labels = dist2(c).argmin(1)
    for _ in range(n_iter):
        counts = torch.bincount(labels, minlength=len(c)).to(x.dtype)
        sums = torch.zeros_like(c).index_add_(0, labels, x)
        c = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], c)
        new = dist2(c).argmin(1)
        if torch.equal(new, labels):
            break
        labels = new
    _, compact = np.unique(labels.numpy(), return_inverse=True)
    return compact.astype(np.int64)


def build_hierarchy(
    expression: np.ndarray,
    features: np.ndarray,
    *,
    k1: int = 30,
    k2: int = 2,
    single_level: bool = False,
    seed: int = 0,
) -> Hierarchy:
    """Cluster training spots: k1 on expression (N, G), then k2 on features (N, D) per cluster.

    Clusters smaller than k2 spots get as many sub-clusters as they have distinct spots;
    sub-cluster ids are compact (every id in [0, n_clusters) has at least one spot).
    """
    n = len(expression)
    if single_level:
        coarse = kmeans(expression, k1 * k2, seed=seed)
        return Hierarchy(coarse.copy(), coarse, int(coarse.max()) + 1 if n else 0)
    coarse = kmeans(expression, k1, seed=seed)
    labels = np.empty(n, dtype=np.int64)
    next_id = 0
    for c in np.unique(coarse):
        idx = np.flatnonzero(coarse == c)
        sub = kmeans(features[idx], k2, seed=seed + 1 + int(c))
        labels[idx] = sub + next_id
        next_id += int(sub.max()) + 1
    return Hierarchy(labels, coarse, next_id)


def _cluster_sums(z: torch.Tensor, labels: torch.Tensor, n_clusters: int) -> torch.Tensor:
    """Sum of the rows of ``z`` (B, d) per cluster -> (n_clusters, d); a one-hot matmul, so it is
    deterministic on CUDA (no atomics) and differentiable."""
    onehot = torch.nn.functional.one_hot(labels, n_clusters).to(z.dtype).T  # (C, B)
    return onehot @ z


def batch_centroids(z: torch.Tensor, labels: torch.Tensor, n_clusters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of ``z`` (B, d) per sub-cluster present in the batch -> ((C_present, d), present ids)."""
    counts = torch.bincount(labels, minlength=n_clusters)
    present = torch.nonzero(counts > 0, as_tuple=True)[0]
    return _cluster_sums(z, labels, n_clusters)[present] / counts[present].unsqueeze(1).to(z.dtype), present


class CentroidBank:
    """Whole-sub-cluster centroids (modes ``memory`` and ``epoch``, see the module docstring).

    ``labels`` (N,) are the training spots' sub-cluster ids. :meth:`refresh` fills the bank
    from embeddings of all N spots; :meth:`centroids` returns the (C, d) centroid pairs for a
    batch (gradients through the batch members); :meth:`update` writes a batch into the bank.
    """

    def __init__(self, labels: torch.Tensor, n_clusters: int, mode: str = "memory") -> None:
        if mode not in ("memory", "epoch"):
            raise ValueError(f"mode: {mode!r} (valid: memory, epoch)")
        self.labels = labels.long()
        self.n_clusters = int(n_clusters)
        self.mode = mode
        self.counts = torch.bincount(self.labels, minlength=self.n_clusters).clamp_min(1)
        self.bank: tuple[torch.Tensor, torch.Tensor] | None = None
        self.sums: tuple[torch.Tensor, torch.Tensor] | None = None

    def refresh(self, z_img: torch.Tensor, z_exp: torch.Tensor) -> None:
        """Replace the bank by the embeddings (N, d) of every training spot (detached)."""
        bank = (z_img.detach().float().clone(), z_exp.detach().float().clone())
        self.bank = bank
        self.sums = tuple(_cluster_sums(b, self.labels, self.n_clusters) for b in bank)  # type: ignore[assignment]

    def centroids(
        self, index: torch.Tensor, z_img: torch.Tensor, z_exp: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(c^i, c^e), each (C, d): bank means with the batch rows ``index`` replaced by ``z``."""
        if self.bank is None or self.sums is None:
            raise RuntimeError("CentroidBank.refresh() must run before centroids()")
        lab = self.labels[index]
        out = []
        for z, bank, sums in zip((z_img, z_exp), self.bank, self.sums, strict=True):
            delta = _cluster_sums(z.float() - bank[index], lab, self.n_clusters)
            out.append((sums + delta) / self.counts[:, None].to(z.dtype))
        return out[0], out[1]

    def update(self, index: torch.Tensor, z_img: torch.Tensor, z_exp: torch.Tensor) -> None:
        """Write a batch's embeddings into the bank (``memory`` mode; ``epoch`` ignores it)."""
        if self.mode != "memory" or self.bank is None or self.sums is None:
            return
        lab = self.labels[index]
        for z, bank, sums in zip((z_img, z_exp), self.bank, self.sums, strict=True):
            z = z.detach().float()
            sums += _cluster_sums(z - bank[index], lab, self.n_clusters)
            bank[index] = z
