"""HAGE's losses (paper eq. 1-3): CyCLIP, CLIP (symmetric InfoNCE) and the PCC loss.

All functions take batched tensors, are differentiable and return a scalar tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["CYCLIP_REDUCTIONS", "cyclip_loss", "clip_loss", "pcc_loss", "mean_pairwise_cosine"]

CYCLIP_REDUCTIONS = ("paper", "mean")
"""How :func:`cyclip_loss` divides its sums over the N x N pairs: "paper" by N (eq. 1 as written,
as in CyCLIP's code), "mean" by N^2 (a mean over pairs, independent of the batch size)."""


def cyclip_loss(
    z_img: torch.Tensor, z_exp: torch.Tensor, *, normalize: bool = True, reduction: str = "paper"
) -> torch.Tensor:
    """CyCLIP (eq. 1): cross-modal plus in-modal cyclic consistency, both summed over j, k.

    ``reduction="paper"`` divides each sum by N (eq. 1); ``"mean"`` by N^2, so the term no
    longer grows with the batch size. As in the CyCLIP paper and code (Goel et al. 2022),
    embeddings are L2-normalised first (``normalize=True``): inner products are cosines.
    """
    if reduction not in CYCLIP_REDUCTIONS:
        raise ValueError(f"reduction: {reduction!r} (valid: {', '.join(CYCLIP_REDUCTIONS)})")
    if normalize:
        z_img = F.normalize(z_img, dim=-1)
        z_exp = F.normalize(z_exp, dim=-1)
    n = z_img.shape[0]
    denom = n if reduction == "paper" else n * n
    cross = z_img @ z_exp.T  # <z_j^i, z_k^e>
    cross_term = ((cross - cross.T) ** 2).sum() / denom
    in_modal_term = ((z_img @ z_img.T - z_exp @ z_exp.T) ** 2).sum() / denom
    return cross_term + in_modal_term


def mean_pairwise_cosine(z: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity over the N(N-1) off-diagonal pairs of rows of ``z`` (a collapse
    diagnostic: near 1 when all embeddings point the same way); no gradient."""
    with torch.no_grad():
        n = z.shape[0]
        if n < 2:
            return z.new_zeros(())
        zn = F.normalize(z.detach().float(), dim=-1)
        s = zn.sum(0)
        return ((s @ s) - n) / (n * (n - 1))


def clip_loss(a: torch.Tensor, b: torch.Tensor, *, temperature: float = 0.07) -> torch.Tensor:
    """CLIP loss: symmetric InfoNCE on L2-normalised embeddings; row j of ``a`` pairs row j of ``b``.

    ``(CE(a_n b_n^T / T, I) + CE(b_n a_n^T / T, I)) / 2`` with the temperature T fixed (0.07).
    """
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    logits = a @ b.T / temperature
    labels = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def pcc_loss(pred: torch.Tensor, target: torch.Tensor, *, eps: float = 1e-8) -> torch.Tensor:
    """PCC loss (eq. 2): one minus the mean over genes of Pearson r across the batch's spots.

    ``eps`` is added under each square root, as in eq. 2, so constant genes give r = 0.
    """
    pc = pred - pred.mean(dim=0, keepdim=True)
    tc = target - target.mean(dim=0, keepdim=True)
    num = (pc * tc).sum(dim=0)
    den = torch.sqrt((pc**2).sum(dim=0) + eps) * torch.sqrt((tc**2).sum(dim=0) + eps)
    return 1.0 - (num / den).mean()
