"""HAGE recipes (shipped defaults vs the paper's literal settings), collapse checks and ablations."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from hagekit.errors import ConfigError
from hagekit.hage.model import HAGEConfig, collapse_message
from hagekit.training.run import resolve_settings

#: Section 3.2 and eq. 1 of the paper, written out here independently of hagekit/recipes/paper.toml.
PAPER = {
    "d": 1024, "k1": 30, "k2": 2, "lambda_cyclip": 10.0, "lambda_clip_local": 1.0, "lambda_clip_global": 1.0,
    "lambda_pcc": 10.0, "temperature": 0.07, "lr": 1e-4, "weight_decay": 1e-5, "schedule": "step",
    "step_size": 10, "gamma": 0.5, "epochs": 15, "patience": 5, "cyclip_reduction": "paper",
    "cyclip_normalize": False, "centroids": "memory", "min_steps": 0, "warmup_steps": 0,
    "standardize_features": False, "calibrate": False, "use_ge": True, "use_hierarchy": True,
    "single_level": False, "dropout": 0.0,
}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_paper_recipe_reproduces_the_literal_config():
    cfg, _ = resolve_settings(None, {"recipe": "paper"})
    assert {k: getattr(cfg, k) for k in PAPER} == PAPER
    assert resolve_settings(None, {"recipe": "paper"}, dataset="cscc")[0].epochs == 100  # section 3.2: cSCC
    # flags still win over the recipe; the default recipe is HAGEConfig()'s defaults
    assert resolve_settings(None, {"recipe": "paper", "lr": 3e-4})[0].lr == 3e-4
    assert resolve_settings(None, {"recipe": "default"})[0] == HAGEConfig()
    with pytest.raises(ConfigError, match="--recipe"):
        resolve_settings(None, {"recipe": "papr"})


def test_recipe_file_and_dataset_table(tmp_path: Path):
    f = tmp_path / "r.toml"
    f.write_text('[hage]\nlr = 0.002\n[datasets.her2]\nmin_steps = 7\n')
    assert resolve_settings(None, {"recipe": str(f)}, dataset="her2")[0].min_steps == 7
    assert resolve_settings(None, {"recipe": str(f)}, dataset="cscc")[0].min_steps == HAGEConfig().min_steps


def test_defaults_do_not_take_the_collapsing_paper_choices():
    c = HAGEConfig()
    assert c.cyclip_reduction == "mean" and c.min_steps > 0 and c.schedule != "step"


def test_collapse_message_thresholds():
    assert collapse_message(0.2, 0.3) is None
    assert "collapsed" in collapse_message(0.83, 0.2)
    assert "collapsed" in collapse_message(0.1, 0.9)


def test_collapse_warning_fires_on_a_forced_collapse(caplog):
    from hagekit.hage.estimator import HAGERegressor

    rng = np.random.default_rng(0)
    x = np.repeat(rng.normal(size=(1, 8)), 40, axis=0) + 1e-4 * rng.normal(size=(40, 8))  # one image, 40 times
    y = np.abs(rng.normal(size=(40, 5))).astype(np.float32)
    cfg = HAGEConfig(d=16, n_heads=4, k1=2, epochs=1, min_steps=0, batch_size=16, standardize_features=False)
    with caplog.at_level(logging.WARNING, logger="hagekit.hage.estimator"):
        est = HAGERegressor(cfg, rng.normal(size=(5, 4)).astype(np.float32)).fit(x[:32], y[:32], X_val=x[32:], Y_val=y[32:])
    assert est.embedding_cosines_["zi_cos"] > 0.99
    assert sum("embeddings collapsed" in r.getMessage() for r in caplog.records) == 1


def _ablation_module():
    path = Path(__file__).resolve().parents[3] / "benchmarks" / "ablation_synthetic.py"
    spec = importlib.util.spec_from_file_location("ablation_synthetic", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_synthetic_modules_are_encoded_by_the_gene_embeddings():
    from hagekit.data.synthetic import ModuleSpec, synthesize_modules

    data = synthesize_modules(ModuleSpec(n_sections=2, n_spots=60, n_genes=24, n_modules=4, seed=3))
    e = data.gene_embeddings / np.linalg.norm(data.gene_embeddings, axis=1, keepdims=True)
    same = (np.arange(24)[:, None] % 4) == (np.arange(24)[None, :] % 4)
    cos = e @ e.T
    assert cos[same & ~np.eye(24, dtype=bool)].mean() > cos[~same].mean() + 0.5
    spec = ModuleSpec(n_sections=2, n_spots=60, n_genes=24, n_modules=4, seed=3)
    assert np.array_equal(synthesize_modules(spec).counts["A1"],
                          data.counts["A1"])


def test_ablation_variants_do_not_give_identical_numbers():
    mod = _ablation_module()
    cfg = HAGEConfig(d=16, n_heads=4, k1=3, k2=2, batch_size=32, min_steps=30, epochs=1, warmup_steps=3)
    res = mod.ablation(1, cfg, data_kwargs={"n_sections": 2, "n_spots": 80, "n_genes": 24, "n_modules": 4, "dim": 12})
    vals = {v: np.array([r[k] for k in sorted(r)]) for v, r in res.items()}
    assert all(len(v) == 2 and np.isfinite(v).all() for v in vals.values())
    for name in ("no_ge", "no_ha", "random_emb"):
        assert np.abs(vals["full"] - vals[name]).max() > 1e-6, name
    table = mod.paired(res)
    assert {r["variant"] for r in table} == {"no_ge", "no_ha", "random_emb"}


def test_ge_is_invariant_to_the_order_of_gene_embeddings():
    """GE attends over the panel's gene embeddings as a set (no gene index): permuting them across
    genes gives the same z^i and the same prediction. This is why an ablation that shuffles them
    tests nothing, and why benchmarks/ablation_synthetic.py uses random embeddings instead."""
    from hagekit.hage.model import HAGEModel

    torch.manual_seed(0)
    genes, x = torch.randn(12, 6), torch.randn(5, 10)
    model = HAGEModel(HAGEConfig(d=16, n_heads=4), 10, genes).eval()
    perm = torch.randperm(12)
    shuffled = HAGEModel(HAGEConfig(d=16, n_heads=4), 10, genes[perm]).eval()
    shuffled.load_state_dict({**model.state_dict(), "gene_embeddings": genes[perm]})
    with torch.no_grad():
        torch.testing.assert_close(shuffled.encode_image(x), model.encode_image(x))
        torch.testing.assert_close(shuffled(x), model(x))
        other = HAGEModel(HAGEConfig(d=16, n_heads=4), 10, torch.randn(12, 6)).eval()
        other.load_state_dict({**model.state_dict(), "gene_embeddings": other.gene_embeddings})
        assert not torch.allclose(other.encode_image(x), model.encode_image(x))  # their values do matter
