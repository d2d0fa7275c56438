"""GE cross-attention, hierarchy, the HAGE model's loss and config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hagekit.errors import ConfigError
from hagekit.hage.gene_encoder import GeneInformedEncoder, MLPImageEncoder
from hagekit.hage.hierarchy import CentroidBank, batch_centroids, build_hierarchy, kmeans
from hagekit.hage.model import HAGEConfig, HAGEModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _naive_ge(ge: GeneInformedEncoder, x: torch.Tensor, genes: torch.Tensor) -> torch.Tensor:
    """Per-sample GE: W_g G and K/V projected again for every spot, via torch's MHA kernel."""
    att = ge.attn
    outs = []
    for b in range(x.shape[0]):
        q = ge.w_x(x[b : b + 1])  # (1, d)
        kv = ge.w_g(genes)  # recomputed per sample
        o, _ = F.multi_head_attention_forward(
            q[:, None, :], kv[:, None, :], kv[:, None, :], att.d, att.n_heads,
            None, torch.cat([att.q_proj.bias, att.k_proj.bias, att.v_proj.bias]), None, None, False, 0.0,
            att.out_proj.weight, att.out_proj.bias, training=False, need_weights=False,
            use_separate_proj_weight=True, q_proj_weight=att.q_proj.weight,
            k_proj_weight=att.k_proj.weight, v_proj_weight=att.v_proj.weight,
        )
        outs.append(ge.mlp(o[:, 0, :] + q))
    return torch.cat(outs)


def test_shared_kv_attention_equals_naive_per_sample():
    torch.manual_seed(0)
    ge = GeneInformedEncoder(12, 6, 16, n_heads=4).eval()
    x, genes = torch.randn(7, 12), torch.randn(9, 6)
    with torch.no_grad():
        fast = ge(x, genes)
        naive = _naive_ge(ge, x, genes)
    assert fast.shape == (7, 16)
    torch.testing.assert_close(fast, naive, atol=1e-5, rtol=1e-5)
    # the attention really depends on the genes (not a residual-only path)
    with torch.no_grad():
        assert not torch.allclose(ge(x, genes), ge(x, genes.flip(1)), atol=1e-4)


def test_mlp_ablation_ignores_genes():
    enc = MLPImageEncoder(12, 16)
    x = torch.randn(3, 12)
    torch.testing.assert_close(enc(x, torch.randn(4, 6)), enc(x))


def test_hierarchy_shapes_and_coverage():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 6)) * 8
    lab = rng.integers(0, 4, 200)
    expr = centres[lab] + rng.normal(size=(200, 6))
    feats = rng.normal(size=(200, 5))
    h = build_hierarchy(expr, feats, k1=4, k2=3, seed=0)
    assert h.labels.shape == (200,) and h.coarse.shape == (200,)
    assert h.n_clusters <= 12 and set(np.unique(h.labels)) == set(range(h.n_clusters))
    assert h.sizes().sum() == 200 and (h.sizes() > 0).all()
    for sub in range(h.n_clusters):  # every sub-cluster lies inside one expression cluster
        assert len(np.unique(h.coarse[h.labels == sub])) == 1
    # the expression level recovers the planted groups
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(lab, h.coarse) > 0.95
    single = build_hierarchy(expr, feats, k1=4, k2=3, single_level=True, seed=0)
    assert single.n_clusters == 12 and np.array_equal(single.labels, single.coarse)
    # tiny clusters: fewer spots than k2 still cover every spot
    small = build_hierarchy(expr[:5], feats[:5], k1=4, k2=3, seed=0)
    assert small.labels.shape == (5,) and (small.sizes() > 0).all()
    # fixed per seed
    assert np.array_equal(build_hierarchy(expr, feats, k1=4, k2=3, seed=0).labels, h.labels)


def test_kmeans_caps_k_at_distinct_points():
    data = np.repeat(np.eye(3), 4, axis=0)
    labels = kmeans(data, 10, seed=1)
    assert len(np.unique(labels)) == 3


def test_batch_centroids_are_member_means():
    z = torch.arange(12, dtype=torch.float32).reshape(6, 2)
    labels = torch.tensor([3, 0, 3, 0, 3, 5])
    cents, present = batch_centroids(z, labels, 6)
    assert present.tolist() == [0, 3, 5]
    torch.testing.assert_close(cents[0], z[[1, 3]].mean(0))
    torch.testing.assert_close(cents[1], z[[0, 2, 4]].mean(0))
    torch.testing.assert_close(cents[2], z[5])


def _exact_means(z: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    return torch.stack([z[labels == c].mean(0) for c in range(k)])


def test_centroid_bank_memory_gives_whole_cluster_means():
    """Section 2.3: c_pq is the mean over ALL members of S_pq, not over the batch's members."""
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0])
    torch.manual_seed(0)
    old, new = torch.randn(8, 3), torch.randn(8, 3)
    bank = CentroidBank(labels, 3, mode="memory")
    bank.refresh(old, old * 2)
    batch = torch.tensor([1, 4])
    z = new[batch].clone().requires_grad_(True)
    c_i, c_e = bank.centroids(batch, z, z)
    # the bank's spots, with the batch's rows replaced by their current embeddings
    mixed = old.clone()
    mixed[batch] = new[batch]
    torch.testing.assert_close(c_i, _exact_means(mixed, labels, 3))
    c_i[0].sum().backward()  # gradient reaches the batch member of cluster 0 with weight 1/|S_0|
    torch.testing.assert_close(z.grad[0], torch.full((3,), 1 / 3))
    assert z.grad[1].abs().sum() == 0
    # one pass of updates over every spot (weights fixed at "new"): exact means of the new embeddings
    for part in (torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5]), torch.tensor([6, 7])):
        bank.update(part, new[part], new[part] * 2)
    c_i, c_e = bank.centroids(torch.tensor([5]), new[[5]], new[[5]] * 2)
    torch.testing.assert_close(c_i, _exact_means(new, labels, 3))
    torch.testing.assert_close(c_e, _exact_means(new * 2, labels, 3))
    # "epoch" mode ignores updates until the next refresh
    ep = CentroidBank(labels, 3, mode="epoch")
    ep.refresh(old, old)
    ep.update(torch.arange(8), new, new)
    torch.testing.assert_close(ep.centroids(torch.tensor([0]), old[[0]], old[[0]])[0], _exact_means(old, labels, 3))


@pytest.mark.parametrize("mode", ["memory", "epoch"])
def test_model_whole_cluster_centroids_equal_exact_means(mode):
    torch.manual_seed(0)
    model = HAGEModel(HAGEConfig(d=16, n_heads=4, centroids=mode), 10, torch.randn(8, 5)).eval()
    x, y = torch.randn(12, 10), torch.randn(12, 8)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 3, 3])
    model.attach_hierarchy(labels, 4)
    model.start_epoch(x, y)
    with torch.no_grad():
        z_i, z_e = model.encode_image(x), model.expression_encoder(y)
    c_i, c_e = model.centroid_bank.centroids(torch.tensor([2, 7]), z_i[[2, 7]], z_e[[2, 7]])
    torch.testing.assert_close(c_i, _exact_means(z_i, labels, 4), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(c_e, _exact_means(z_e, labels, 4), atol=1e-5, rtol=1e-5)
    terms = model.losses(x[:6], y[:6], index=torch.arange(6))
    assert terms["clip_global"].item() > 0
    # batch centroids on the same batch give a different global term (only 3 of 4 clusters present)
    batch = HAGEModel(HAGEConfig(d=16, n_heads=4), 10, torch.randn(8, 5)).eval()
    batch.load_state_dict(model.state_dict())
    batch.attach_hierarchy(labels, 4)
    assert batch.losses(x[:6], y[:6], index=torch.arange(6))["clip_global"].item() != pytest.approx(
        terms["clip_global"].item(), rel=1e-4)
    with pytest.raises(ConfigError, match="centroids"):
        HAGEConfig(centroids="stale")


def test_training_step_lowers_loss():
    torch.manual_seed(0)
    cfg = HAGEConfig(d=32, n_heads=4, lr=1e-3, dropout=0.0)  # deterministic loss to compare
    model = HAGEModel(cfg, 10, torch.randn(8, 5))
    x, y = torch.randn(32, 10), torch.randn(32, 8).abs()
    labels = torch.randint(0, 4, (32,))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    first = model.losses(x, y, labels, 4)
    assert set(first) == {"loss", "cyclip", "clip_local", "clip_global", "pcc", "zi_cos", "ze_cos"}
    assert not first["zi_cos"].requires_grad and -1.0 <= first["zi_cos"].item() <= 1.0
    expected = 10 * first["cyclip"] + first["clip_local"] + first["clip_global"] + 10 * first["pcc"]
    torch.testing.assert_close(first["loss"], expected)
    for _ in range(10):
        opt.zero_grad()
        model.losses(x, y, labels, 4)["loss"].backward()
        opt.step()
    assert model.losses(x, y, labels, 4)["loss"].item() < 0.8 * first["loss"].item()


def test_ablation_switches():
    genes = torch.randn(8, 5)
    assert isinstance(HAGEModel(HAGEConfig(d=16, use_ge=False), 10, genes).image_encoder, MLPImageEncoder)
    m = HAGEModel(HAGEConfig(d=16, use_hierarchy=False), 10, genes)
    terms = m.losses(torch.randn(6, 10), torch.randn(6, 8), torch.randint(0, 3, (6,)), 3)
    assert terms["clip_global"].item() == 0.0


def test_config_defaults_and_validation():
    c = HAGEConfig()  # the paper's values where the defaults keep them (the rest: test_hage_recipe.py)
    assert (c.k1, c.k2, c.temperature, c.weight_decay, c.patience) == (30, 2, 0.07, 1e-5, 5)
    assert (c.lambda_cyclip, c.lambda_clip_local, c.lambda_clip_global, c.lambda_pcc) == (10, 1, 1, 10)
    assert (c.step_size, c.gamma) == (10, 0.5)
    assert HAGEConfig.from_dict({"d": "64", "use_ge": "false"}) == HAGEConfig(d=64, use_ge=False)
    with pytest.raises(ConfigError, match="unknown HAGE setting"):
        HAGEConfig.from_dict({"dim": 3})
    with pytest.raises(ConfigError, match="divisible"):
        HAGEConfig(d=30, n_heads=8)
    with pytest.raises(ConfigError, match="not a valid int"):
        HAGEConfig.from_dict({"k1": "many"})


def test_cyclip_reduction_option():
    assert HAGEConfig().cyclip_reduction == "mean"  # eq. 1 as written collapses (README)
    assert HAGEConfig.from_dict({"cyclip_reduction": "mean"}).cyclip_reduction == "mean"
    with pytest.raises(ConfigError, match="cyclip_reduction.*valid: paper, mean"):
        HAGEConfig.from_dict({"cyclip_reduction": "sum"})
    genes, x, y = torch.randn(8, 5), torch.randn(6, 10), torch.randn(6, 8)
    torch.manual_seed(0)
    paper = HAGEModel(HAGEConfig(d=16, n_heads=4, cyclip_reduction="paper", dropout=0.0), 10, genes)
    mean = HAGEModel(HAGEConfig(d=16, n_heads=4, cyclip_reduction="mean", dropout=0.0), 10, genes)
    mean.load_state_dict(paper.state_dict())
    # same weights: the "mean" term is the paper's divided by the batch size N = 6
    torch.testing.assert_close(mean.losses(x, y)["cyclip"], paper.losses(x, y)["cyclip"] / 6)
