"""Adding a method is one file: a Regressor subclass registered from this test module alone
(no edit anywhere else) runs in `bench baselines` and in `bench tune --method` with the search
space its class declares."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from toys import hage_toy as toy
from typer.testing import CliRunner

from hagekit.baselines import METHODS, get_method, list_methods, make_method, register_method
from hagekit.cli.main import app
from hagekit.errors import ConfigError
from hagekit.learn.estimator import Regressor
from hagekit.learn.param_checks import Interval


class ShrunkMean(Regressor):
    """Toy method: a least-squares fit of the first feature, shrunk towards the mean by ``shrink``."""

    method: ClassVar[str] = "toy-shrunk"
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {"shrink": (0.0, 0.5, 1.0)}
    param_constraints: ClassVar[dict[str, Any]] = {"shrink": Interval(0.0, 1.0)}

    def __init__(self, *, shrink: float = 0.5, random_state: int = 0) -> None:
        self.shrink = shrink
        self.random_state = random_state

    def _fit(self, X, Y, *, val, spatial, groups, progress) -> None:
        x = X[:, :1] - X[:, :1].mean()
        self.mean_ = Y.mean(axis=0)
        self.slope_ = (x * (Y - self.mean_)).sum(axis=0) / max(float((x**2).sum()), 1e-12)
        self.x0_ = float(X[:, 0].mean())

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self.mean_ + (1.0 - self.shrink) * (X[:, :1] - self.x0_) * self.slope_

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean_.astype(np.float32), "slope": self.slope_.astype(np.float32)}


@pytest.fixture
def registered():
    register_method("toy-shrunk", ShrunkMean)
    yield
    METHODS.unregister("toy-shrunk")


def test_a_registered_method_is_listed_last_before_hage_and_refused_twice(registered):
    names = list_methods()
    assert names[-1] == "hage" and names[-2] == "toy-shrunk"
    assert get_method("TOY-shrunk") is ShrunkMean
    with pytest.raises(ConfigError, match="already registered"):
        register_method("toy-shrunk", ShrunkMean)
    with pytest.raises(ConfigError, match="module:Class"):
        register_method("other", "no_colon_here")
    with pytest.raises(ConfigError, match=r"shrink = 2\.0: must be a number >= 0 and <= 1"):
        make_method("toy-shrunk", shrink=2.0)  # its declared range is checked before any fit


def test_a_registered_method_runs_in_bench_baselines_and_tune(registered, tmp_path: Path):
    root, feats, panel, _ = toy.make_toy(tmp_path)
    common = ["--data-root", str(root), "--dataset", "toy", "--features", str(feats), "--genes", str(panel)]
    res = CliRunner().invoke(app, ["bench", "baselines", *common, "--methods", "ridge,toy-shrunk", "--trials", "1",
                                   "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((tmp_path / "b" / "results.csv").open()))
    assert {r["method"] for r in rows} == {"mean", "ridge", "toy-shrunk"}

    out = tmp_path / "tune"
    res = CliRunner().invoke(app, ["bench", "tune", *common, "--method", "toy-shrunk", "--min-gain", "0",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    trials = list(csv.DictReader((out / "trials.csv").open()))
    assert {float(r["shrink"]) for r in trials} == {0.0, 0.5, 1.0}  # the class's declared space
    assert json.loads((out / "tune.json").read_text())["method"] == "toy-shrunk"
    assert "[baselines.toy-shrunk]" in (out / "chosen.toml").read_text()
