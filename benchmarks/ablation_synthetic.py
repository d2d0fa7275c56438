"""GE and HA ablations on synthetic data with planted gene modules, over several seeds.

Data: ``hagekit.data.synthetic.synthesize_modules`` (expression driven by gene modules that
the gene embeddings encode; features a noisy non-linear map of the module activities).
Variants (the paper's Table 2 plus a control): ``full`` HAGE, ``no_ge`` (MLP image encoder),
``no_ha`` (no centroid alignment), ``random_emb`` (full HAGE with random gene embeddings of
the same per-dimension mean and std: a set of G tokens with no module information). Permuting
the real embeddings across genes would be no control at all: GE attends over the panel's
embeddings as an unordered set, so a permutation gives the same model (test
``test_ge_is_invariant_to_the_order_of_gene_embeddings``). Each seed is a new dataset;
each is run leave-one-section-out (1 trial) with the given HAGE settings, and the paired
test (Wilcoxon signed-rank over seed x section rows, two-sided) of ``full`` against each
variant is printed with the mean difference and the number of rows ``full`` wins.

    python benchmarks/ablation_synthetic.py [--seeds 5] [--config recipe.toml] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

VARIANTS = {
    "full": {},
    "no_ge": {"use_ge": False},
    "no_ha": {"use_hierarchy": False},
    "random_emb": {},
}


def as_dataset(data):
    """A ``STDataset`` (targets log1p_norm) from :class:`ModuleData`."""
    from hagekit.targets import expression_targets
    from hagekit.training.dataset import SectionData, STDataset

    sections = {}
    for name, x in data.features.items():
        n = len(x)
        sections[name] = SectionData(
            section=name, patient=data.patients[name], barcodes=np.array([f"s{i}" for i in range(n)], dtype=object),
            features=x, counts=data.counts[name].astype(np.float32),
            targets=expression_targets(data.counts[name]), spatial=np.zeros((n, 2)),
        )
    return STDataset("modules", list(data.genes), sections)


def run_variant(dataset, emb: np.ndarray, config, seed: int) -> dict[str, float]:
    """PCC(all) per held-out section, leave-one-section-out, one trial."""
    from hagekit.hage.estimator import HAGERegressor
    from hagekit.training.protocol import ProtocolSettings, run_protocol

    def factory(ctx):
        return HAGERegressor(config, emb, random_state=ctx.seed, genes=list(ctx.genes))

    res = run_protocol(dataset, factory, ProtocolSettings(split="section", trials=1, seed=seed))
    return {r["section"]: float(r["pcc_all"]) for r in res.rows}


def ablation(seeds: int, base_config, *, data_kwargs: dict | None = None) -> dict[str, dict[str, float]]:
    """``{variant: {"seed/section": pcc}}`` over ``seeds`` synthetic datasets."""
    from hagekit.data.synthetic import ModuleSpec, synthesize_modules

    out: dict[str, dict[str, float]] = {v: {} for v in VARIANTS}
    for seed in range(seeds):
        data = synthesize_modules(ModuleSpec(seed=seed, **(data_kwargs or {})))
        dataset = as_dataset(data)
        for name, change in VARIANTS.items():
            emb = data.gene_embeddings
            if name == "random_emb":
                rng = np.random.default_rng(1000 + seed)
                emb = (rng.standard_normal(emb.shape) * emb.std(axis=0) + emb.mean(axis=0)).astype(emb.dtype)
            res = run_variant(dataset, emb, base_config.replace(**change), seed)
            out[name].update({f"{seed}/{k}": v for k, v in res.items()})
    return out


def paired(results: dict[str, dict[str, float]], reference: str = "full") -> list[dict]:
    """Wilcoxon signed-rank of ``reference`` against every other variant over shared rows."""
    from scipy.stats import wilcoxon

    rows = []
    ref = results[reference]
    for name, vals in results.items():
        if name == reference:
            continue
        keys = sorted(set(ref) & set(vals))
        a, b = np.array([ref[k] for k in keys]), np.array([vals[k] for k in keys])
        diff = a - b
        p = float(wilcoxon(a, b).pvalue) if np.any(diff != 0) else 1.0
        rows.append({"variant": name, "n": len(keys), "full_mean": float(a.mean()), "variant_mean": float(b.mean()),
                     "mean_diff": float(diff.mean()), "full_wins": int((diff > 0).sum()), "wilcoxon_p": p})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--config", default=None, help="TOML/YAML with HAGE settings (default: the shipped defaults)")
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE HAGE override (repeatable)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    from hagekit.training.run import resolve_settings

    torch.set_num_threads(args.threads)
    overrides = dict(kv.split("=", 1) for kv in args.set)
    config, _ = resolve_settings(args.config, overrides)
    t0 = time.perf_counter()
    results = ablation(args.seeds, config)
    table = paired(results)
    print(json.dumps({"config": config.to_dict(), "seeds": args.seeds, "seconds": time.perf_counter() - t0,
                      "paired": table}, indent=2))
    print("| variant | rows | full PCC(all) | variant PCC(all) | mean diff | full wins | Wilcoxon p |")
    print("|---|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['variant']} | {r['n']} | {r['full_mean']:.4f} | {r['variant_mean']:.4f} | "
              f"{r['mean_diff']:+.4f} | {r['full_wins']}/{r['n']} | {r['wilcoxon_p']:.3g} |")


if __name__ == "__main__":
    main()
