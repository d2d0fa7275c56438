"""HAGE losses against values computed by hand on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from hagekit.hage.losses import clip_loss, cyclip_loss, mean_pairwise_cosine, pcc_loss

R = 1 / math.sqrt(2)


def test_cyclip_both_terms_by_hand():
    zi = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    ze = torch.tensor([[1.0, 0.0], [R, R]])
    # cross: <zi_j, ze_k> = [[1, R], [0, R]] -> (C - C^T)^2 sums to 2 * R^2 = 1, / N = 0.5
    # in-modal: I vs [[1, R], [R, 1]] -> off-diagonals R^2 + R^2 = 1, / N = 0.5
    assert cyclip_loss(zi, ze).item() == pytest.approx(1.0, abs=1e-6)
    # embeddings are L2-normalised first (as in the CyCLIP paper): scale does not matter
    assert cyclip_loss(3 * zi, 0.5 * ze).item() == pytest.approx(1.0, abs=1e-6)
    # without normalisation the raw inner products are used: cross (C - C^T) = [[0, 2R], [-2R, 0]]
    # / scaled: zi*2 -> cross [[2, 2R], [0, 2R]] -> 2 * (2R)^2 = 4 / 2 = 2;
    # in-modal 4I - ze ze^T = [[3, -R], [-R, 3]] -> 9 + 9 + 0.5 + 0.5 = 19 / 2 = 9.5
    assert cyclip_loss(2 * zi, ze, normalize=False).item() == pytest.approx(2 + 9.5, abs=1e-5)
    # identical modalities are perfectly consistent
    assert cyclip_loss(ze, ze).item() == pytest.approx(0.0, abs=1e-7)


def test_cyclip_mean_reduction_by_hand():
    zi = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    ze = torch.tensor([[1.0, 0.0], [R, R]])
    # same sums as above (cross 1, in-modal 1), divided by N^2 = 4 instead of N = 2
    assert cyclip_loss(zi, ze, reduction="mean").item() == pytest.approx(0.5, abs=1e-6)
    assert cyclip_loss(zi, ze, reduction="paper").item() == pytest.approx(1.0, abs=1e-6)
    # N = 3: zi = e1, e2, e1; ze = e1, e1, e1 -> cross C = [[1,1,1],[0,0,0],[1,1,1]],
    # (C - C^T)^2 has four off-diagonal 1s -> 4; in-modal Gi = [[1,0,1],[0,1,0],[1,0,1]] vs all-ones
    # -> four 0-vs-1 entries -> 4; sum 8: paper 8 / 3, mean 8 / 9
    zi3 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    ze3 = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    assert cyclip_loss(zi3, ze3).item() == pytest.approx(8 / 3, abs=1e-6)
    assert cyclip_loss(zi3, ze3, reduction="mean").item() == pytest.approx(8 / 9, abs=1e-6)
    # collapsed embeddings (all rows identical in each modality) are a zero of CyCLIP
    assert cyclip_loss(ze3, 2 * ze3).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="reduction"):
        cyclip_loss(zi, ze, reduction="sum")


def test_mean_pairwise_cosine_by_hand():
    z = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    # pairs: (0,1) 0, (0,2) 1, (1,2) 0 -> mean 1/3
    assert mean_pairwise_cosine(z).item() == pytest.approx(1 / 3, abs=1e-6)
    assert mean_pairwise_cosine(torch.ones(4, 3)).item() == pytest.approx(1.0, abs=1e-6)
    assert mean_pairwise_cosine(torch.ones(1, 3)).item() == 0.0


def test_clip_symmetric_infonce_by_hand():
    t = 0.07
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert clip_loss(a, a, temperature=t).item() == pytest.approx(math.log1p(math.exp(-1 / t)), abs=1e-7)
    assert clip_loss(a, a, temperature=1.0).item() == pytest.approx(math.log1p(math.exp(-1.0)), rel=1e-5)
    b = torch.tensor([[2.0, 0.0], [1.0, 0.0]])  # normalised: both rows = e1
    # a->b rows: [1/t, 1/t] target 0 -> log 2; [0, 0] target 1 -> log 2
    # b->a rows: [1/t, 0] target 0 -> log(1+e^{-1/t}); [1/t, 0] target 1 -> log(1+e^{1/t})
    expected = 0.5 * (math.log(2) + 0.5 * (math.log1p(math.exp(-1 / t)) + math.log1p(math.exp(1 / t))))
    assert clip_loss(a, b, temperature=t).item() == pytest.approx(expected, rel=1e-5)
    # temperature matters
    assert clip_loss(a, b, temperature=1.0).item() != pytest.approx(expected, rel=1e-3)


def test_pcc_loss_by_hand():
    pred = torch.tensor([[1.0, 2.0, 5.0], [2.0, 1.0, 5.0], [3.0, 3.0, 5.0]])
    target = torch.tensor([[2.0, 1.0, 0.0], [4.0, 2.0, 1.0], [6.0, 3.0, 2.0]])
    # gene 0: r = 1; gene 1: centred [0,-1,1] vs [-1,0,1] -> 1 / 2 = 0.5; gene 2: constant pred -> 0
    assert pcc_loss(pred, target).item() == pytest.approx(1 - (1 + 0.5 + 0) / 3, abs=1e-6)
    assert pcc_loss(target, target).item() == pytest.approx(0.0, abs=1e-6)
    assert pcc_loss(-target[:, :2], target[:, :2]).item() == pytest.approx(2.0, abs=1e-6)


def test_losses_are_differentiable():
    zi = torch.randn(5, 4, requires_grad=True)
    ze = torch.randn(5, 4, requires_grad=True)
    (cyclip_loss(zi, ze) + clip_loss(zi, ze) + pcc_loss(zi, ze)).backward()
    assert zi.grad is not None and torch.isfinite(zi.grad).all()
