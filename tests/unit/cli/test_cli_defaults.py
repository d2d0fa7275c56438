"""Help texts state the defaults the code uses: read from the configuration, never typed in."""

from __future__ import annotations

import dataclasses
import re

import pytest
from clitext import flat
from typer.testing import CliRunner

from hagekit.cli import _defaults as dflt


def test_defaults_read_from_source_equal_the_classes() -> None:
    from hagekit.config import RunSettings, load_recipe
    from hagekit.genes import coexpression, quality
    from hagekit.hage.model import HAGEConfig

    for f in dataclasses.fields(HAGEConfig):
        assert dflt.hage(f.name) == f.default, f.name
    for f in dataclasses.fields(RunSettings):
        if f.default is not dataclasses.MISSING:
            assert dflt.run(f.name) == f.default, f.name
    paper = load_recipe("paper")
    assert all(dflt.paper_recipe(k) == v for k, v in paper.items() if k in {f.name for f in dataclasses.fields(HAGEConfig)})
    assert dflt.module_constant("hagekit.genes.coexpression", "DEFAULT_THRESHOLD") == coexpression.DEFAULT_THRESHOLD
    assert dflt.module_constant("hagekit.genes.quality", "DEFAULT_EVAL_THRESHOLD") == quality.DEFAULT_EVAL_THRESHOLD
    from hagekit.bench.expression import ablation, tune
    from hagekit.data.synthetic import SynthConfig

    assert dflt.module_constant("hagekit.bench.expression.ablation", "DEFAULT_K1") == ablation.DEFAULT_K1
    assert dflt.module_constant("hagekit.bench.expression.ablation", "DEFAULT_K2") == ablation.DEFAULT_K2
    assert dflt.module_constant("hagekit.bench.expression.tune", "MIN_GAIN") == tune.MIN_GAIN
    assert dflt.module_constant("hagekit.bench.expression.tune", "DEFAULT_METHOD") == tune.DEFAULT_METHOD
    assert dflt.config_default("hagekit.data.synthetic", "SynthConfig", "n_patients") == SynthConfig.n_patients


@pytest.mark.parametrize(
    ("option", "field"), [("--batch-size", "batch_size"), ("--lr", "lr"), ("--d", "d"), ("--epochs", "epochs"), ("--k1", "k1")]
)
def test_train_help_states_the_real_defaults(option: str, field: str) -> None:
    from hagekit.cli.main import app
    from hagekit.hage.model import HAGEConfig

    text = flat(CliRunner().invoke(app, ["train", "--help"]).output)
    m = re.search(rf"{re.escape(option)} <\w+> [^(]*\(default ([0-9.e-]+); --recipe paper: ([0-9.e-]+)", text)
    assert m is not None, text
    assert float(m.group(1)) == pytest.approx(float(getattr(HAGEConfig(), field)))
