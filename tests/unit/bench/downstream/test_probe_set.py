"""``hagekit data probe-set``: spot patches in high/low class folders by a gene's median expression."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hagekit.cli.main import app


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    from hagekit.data.synthetic import SynthConfig, synthesize_dataset

    root = tmp_path_factory.mktemp("probe_synth")
    synthesize_dataset(root, SynthConfig.resolve(n_sections=1, n_spots=36, n_genes=80, seed=1))
    return root


def test_probe_set_splits_at_the_median_and_reads_as_a_folder_dataset(synth_root: Path, tmp_path: Path):
    import anndata as ad

    from hagekit.bench.downstream.patch_datasets import read_image_folder
    from hagekit.bench.downstream.probe_set import GROUP_REGEX
    from hagekit.targets import expression_targets

    sec = synth_root / "synth" / "A1.h5ad"
    genes = [g for g in ad.read_h5ad(sec).var_names if g in ("ERBB2", "COL1A1", "CD74")]
    assert genes
    out = tmp_path / "probe"
    args = ["data", "probe-set", "--section", str(sec), "--genes", ",".join(genes), "--out", str(out), "--size", "32"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    a = ad.read_h5ad(sec)
    expr = expression_targets(a.X.toarray() if hasattr(a.X, "toarray") else a.X)
    for g in genes:
        v = expr[:, list(a.var_names).index(g)]
        high = {f"{b}" for b, x in zip(a.obs_names, v, strict=True) if x > np.median(v)}
        got = {p.name.split("_", 1)[1].removesuffix(".png") for p in (out / g / "high").iterdir()}
        assert got == high
        assert len(list((out / g / "low").iterdir())) == a.n_obs - len(high)
        ds = read_image_folder(out / g, group_regex=GROUP_REGEX)
        assert ds.n == a.n_obs and sorted(ds.class_names) == ["high", "low"]
        assert ds.read([0])[0].shape == (32, 32, 3) and len(set(ds.groups)) > 1
    # existing output is not overwritten silently; an unknown gene is one clear line
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "--overwrite" in res.output
    res = CliRunner().invoke(app, ["data", "probe-set", "--section", str(sec), "--genes", "NOPE1", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "NOPE1" in res.output and not (tmp_path / "x" / "NOPE1").exists()
