"""Contract of the context methods on a tiny input: fit, predict, clone, save, load, seeds,
the protocol (validation spots placed in their sections, resume), and what context buys."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.base import clone
from toys import context_toy as toy
from toys import hage_toy

from hagekit.baselines import make_method
from hagekit.errors import ConfigError, DataError
from hagekit.metrics import evaluate_section
from hagekit.training.protocol import ProtocolSettings, run_protocol

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _make(name: str, seed: int = 0, **extra):
    return make_method(name, context={**toy.HAGE_CONTEXT, "random_state": seed}, **{**toy.CONTEXT_METHODS[name], **extra})


def _fit(est, data):
    X, Y, S, g = data.stack(["A1", "A2"])
    va = np.arange(len(X)) % 5 == 0
    return est.fit(X[~va], Y[~va], X_val=X[va], Y_val=Y[va], spatial=S[~va], spatial_val=S[va],
                   groups=g[~va], groups_val=g[va])


#: The methods that feed their core [own features, neighbour mean] (NeighbourMeanContext); the
#: section models (triplex, histogene, hist2st) have their contract in test_context_models.py.
MEAN_CONTEXT = [m for m in toy.CONTEXT_METHODS if m in ("ridge-ctx", "hage")]


@pytest.fixture(scope="module")
def data():
    return toy.toy_dataset()


@pytest.mark.parametrize("name", MEAN_CONTEXT)
def test_fit_predict_clone_and_seeds(name, data):
    est = _make(name)
    twin = clone(est)
    assert not hasattr(twin, "n_features_in_") and repr(twin.get_params(deep=False)) == repr(est.get_params(deep=False))
    _fit(est, data)
    X, _, S, _ = data.stack(["B1"])
    pred = est.predict(X, spatial=S)
    assert pred.shape == (len(X), toy.GENES) and pred.dtype == np.float32 and np.isfinite(pred).all()
    assert est.n_spot_features_ == toy.DIM and est.n_features_in_ == 2 * toy.DIM
    again = _fit(_make(name), data).predict(X, spatial=S)
    np.testing.assert_array_equal(pred, again)  # same seed, same numbers
    with pytest.raises(DataError, match=rf"\(N, {toy.DIM}\)"):
        est.predict(X[:, :3], spatial=S)
    with pytest.raises(DataError, match="spatial"):
        est.predict(X, spatial=S[:5])


@pytest.mark.parametrize("name", MEAN_CONTEXT)
def test_save_and_load_give_the_same_predictions(name, data, tmp_path):
    est = _fit(_make(name), data)
    X, _, S, _ = data.stack(["B1"])
    out = est.save(tmp_path / name)
    loaded = type(est).load(out)
    assert loaded.n_spot_features_ == toy.DIM
    np.testing.assert_allclose(loaded.predict(X, spatial=S), est.predict(X, spatial=S), rtol=1e-5, atol=1e-6)


def test_hage_without_context_ignores_positions(data):
    est = _fit(_make("hage", config__context="none"), data)
    X, _, S, _ = data.stack(["B1"])
    np.testing.assert_array_equal(est.predict(X, spatial=S), est.predict(X, spatial=S[::-1]))
    assert est.n_features_in_ == toy.DIM


def test_no_positions_means_no_context_and_is_warned(data, caplog):
    X, Y, _, _ = data.stack(["A1"])
    with caplog.at_level(logging.WARNING):
        est = make_method("ridge-ctx", pca=None, cv=2).fit(X, Y)
    assert "no spot positions" in caplog.text
    np.testing.assert_allclose(est.predict(X), est.predict(X, spatial=None))


def test_bad_context_settings_are_refused(data):
    X, Y, S, _ = data.stack(["A1"])
    with pytest.raises(ConfigError, match="radius"):
        make_method("ridge-ctx", radius=0.0).fit(X, Y, spatial=S)
    with pytest.raises(ConfigError, match="context"):
        make_method("hage", context=toy.HAGE_CONTEXT, config__context="ring")
    with pytest.raises(DataError, match="spatial_val"):
        make_method("ridge-ctx", pca=None, cv=2).fit(X, Y, X_val=X[:4], Y_val=Y[:4], spatial=S)


@pytest.mark.parametrize("name", MEAN_CONTEXT)
def test_protocol_runs_resumes_and_context_beats_no_context(name, data, tmp_path, caplog):
    def factory(ctx):
        return _make(name, seed=ctx.seed)

    first = run_protocol(data, factory, ProtocolSettings(folds=["B1"], trials=1, method=name, out_dir=tmp_path / "run"))
    with caplog.at_level(logging.WARNING):
        again = run_protocol(data, factory, ProtocolSettings(folds=["B1"], trials=1, method=name, out_dir=tmp_path / "run"))
    # the saved model (fed [x, context]) is recognised as this run's: the trial is not refitted
    assert "damaged" not in caplog.text and again.rows == first.rows
    if name == "ridge-ctx":  # the planted signal: neighbours' features matter (ridge is exact enough here)
        X, Y, S, g = data.stack(["A1", "A2"])
        Xt, Yt, St, _ = data.stack(["B1"])
        plain = make_method("ridge", pca=None, cv=2).fit(X, Y, groups=g).predict(Xt)
        ctx = make_method("ridge-ctx", pca=None, cv=2).fit(X, Y, spatial=S, groups=g).predict(Xt, spatial=St)
        assert evaluate_section(Yt, ctx).pcc_all > evaluate_section(Yt, plain).pcc_all + 0.1


@pytest.mark.slow  # a few seconds: nox -s tests runs it, the fast lane does not
def test_ablation_names_hage_ctx_and_the_cli_runs_context_rows(tmp_path):
    import json

    from typer.testing import CliRunner

    from hagekit.bench.expression.ablation import ablation_specs
    from hagekit.cli.main import app

    assert "hage-ctx" not in [s.name for s in ablation_specs()]  # the paper's Table 2 by default
    assert ablation_specs(["hage-ctx"])[0].params == {"config__context": "mean"}
    root, feats, panel, emb = hage_toy.make_toy(tmp_path, n=49)
    cfg = tmp_path / "fast.toml"
    cfg.write_text("d = 16\nn_heads = 4\nk1 = 3\nk2 = 2\nbatch_size = 32\nlr = 1e-3\n[baselines.ridge-ctx]\npca = 8\n")
    common = ["--dataset", "toy", "--data-root", str(root), "--features", str(feats), "--genes", str(panel),
              "--gene-embeddings", str(emb), "--trials", "1", "--folds", "B1", "--config", str(cfg)]
    runner = CliRunner()
    res = runner.invoke(app, ["bench", "ablation", *common, "--epochs", "1", "--jobs", "1",
                              "--variants", "full,hage-ctx", "--out", str(tmp_path / "abl")])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "abl" / "summary.json").read_text())
    assert [e["method"] for e in summary["table"]] == ["full", "hage-ctx"]
    res = runner.invoke(app, ["bench", "baselines", *common, "--methods", "ridge,ridge-ctx",
                              "--out", str(tmp_path / "base")])
    assert res.exit_code == 0, res.output
    table = {e["method"]: e for e in json.loads((tmp_path / "base" / "summary.json").read_text())["table"]}
    assert {"ridge", "ridge-ctx"} <= set(table) and table["ridge-ctx"]["n_rows"] == 1


def test_hagekit_predict_reproduces_the_runs_context_predictions(tmp_path):
    """A HAGE run with context, then ``predict``: same positions as the protocol, same scores."""
    import json

    from hagekit.encoders import create_encoder
    from hagekit.predict import ModelChoice, predict_section
    from hagekit.study import StudyInputs
    from hagekit.training.run import train_run

    base = create_encoder("builtin")
    root, feats, panel, emb = hage_toy.make_toy(tmp_path, n=49, dim=base.dim, encoder="builtin", sha=base.weights_sha256)
    train_run(inputs=StudyInputs(root, "toy", feats, panel, emb),
              out=tmp_path / "run", overrides={**hage_toy.FAST, "folds": "A1", "context": "mean"})
    saved = json.loads((tmp_path / "run" / "A1" / "trial0" / "metrics.json").read_text())["rows"][0]
    res = predict_section(tmp_path / "run", feats / "A1.h5", section=root / "toy" / "A1.h5ad", models=ModelChoice(fold="A1", trial=0))
    assert res.metrics is not None
    assert res.metrics["pcc_all"] == pytest.approx(saved["pcc_all"], abs=1e-5)
