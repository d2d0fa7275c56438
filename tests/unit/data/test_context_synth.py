"""``data synth --context-dependence``: expression that follows the neighbours' tissue."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hagekit.cli.main import app
from hagekit.data.section import read_section
from hagekit.data.synthetic import REGIONS, SynthConfig, synthesize_dataset
from hagekit.errors import ConfigError
from hagekit.learn.neighbours import neighbour_graph, neighbour_mean


def _tumour_fit(path: Path) -> tuple[float, float]:
    """Correlation of the tumour markers' log counts with the spot's own tumour fraction and
    with its neighbours' mean tumour fraction."""
    a = read_section(path)
    counts = np.asarray(a.X.todense() if hasattr(a.X, "todense") else a.X, dtype=np.float64)
    markers = [i for i, g in enumerate(a.var_names) if g in {"ERBB2", "KRT8", "KRT18", "KRT19", "EPCAM", "CDH1"}]
    y = np.log1p(counts[:, markers].sum(axis=1) / counts.sum(axis=1) * 1e4)
    own = np.asarray(a.obs["frac_tumour"], dtype=np.float64)
    nb = neighbour_mean(own[:, None].astype(np.float32), neighbour_graph(np.asarray(a.obsm["spatial"]), radius=1.5)).ravel()
    return float(np.corrcoef(y, own)[0, 1]), float(np.corrcoef(y, nb)[0, 1])


@pytest.mark.slow  # a few seconds: nox -s tests runs it, the fast lane does not
def test_context_dependence_moves_expression_to_the_neighbourhood(tmp_path: Path) -> None:
    kw = dict(n_sections=1, n_spots=256, n_genes=60, seed=1)
    plain = synthesize_dataset(tmp_path / "plain", SynthConfig.resolve(**kw))[0]
    ctx = synthesize_dataset(tmp_path / "ctx", SynthConfig.resolve(**kw, context_dependence=1.0))[0]
    img = "images/A1.jpg"
    assert (plain.parent / img).read_bytes() == (ctx.parent / img).read_bytes()  # same tissue, same image
    a, b = read_section(plain), read_section(ctx)
    assert (a.X != b.X).nnz > 0
    np.testing.assert_array_equal(a.obs[[f"frac_{r}" for r in REGIONS]], b.obs[[f"frac_{r}" for r in REGIONS]])
    own_p, nb_p = _tumour_fit(plain)
    own_c, nb_c = _tumour_fit(ctx)
    assert own_p > nb_p and nb_c > own_c  # expression follows the spot, or its neighbours


def test_default_description_is_unchanged_and_range_checked() -> None:
    assert "context_dependence" not in SynthConfig().source()
    assert '"context_dependence": 0.5' in SynthConfig(context_dependence=0.5).source()
    with pytest.raises(ConfigError, match="--context-dependence"):
        SynthConfig(context_dependence=1.5).validate()


def test_cli_flag(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["data", "synth", "--out", str(tmp_path), "--sections", "1", "--spots", "16",
                                   "--genes", "20", "--context-dependence", "0.5"])
    assert res.exit_code == 0, res.output
    src = read_section(tmp_path / "synth" / "A1.h5ad").uns["hagekit"]["source"]
    assert '"context_dependence": 0.5' in src
    res = CliRunner().invoke(app, ["data", "synth", "--out", str(tmp_path / "b"), "--context-dependence", "2"])
    assert res.exit_code == 2 and "--context-dependence" in res.output
