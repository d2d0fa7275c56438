"""``hagekit bench linear-probe`` end to end on real H&E crops with the builtin encoder.

Two classes of crops (as cut, and with haematoxylin/eosin channels swapped) in the ``folder``
layout; the builtin descriptor separates them. A rerun is served from the embedding cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from clitext import flat
from PIL import Image
from toys.patches import he_crops
from typer.testing import CliRunner

from hagekit.cli.main import app

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def folder_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("probe_folder")
    crops = he_crops(30)
    for i, img in enumerate(crops):
        cls, pic = ("as_cut", img) if i % 2 == 0 else ("swapped", img[..., ::-1])
        (root / cls).mkdir(exist_ok=True)
        Image.fromarray(np.ascontiguousarray(pic)).save(root / cls / f"p{i // 6}_{i}.png")
    return root


def test_linear_probe_cli_runs_caches_and_refuses_overwrite(tmp_path, folder_dataset, monkeypatch):
    # 20 training patches per fold: small batches and a larger step than the default (1e-3,
    # sized for PCAM/SkinCancer) so that 10 epochs are enough steps to fit the layer
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = [
        "bench", "linear-probe", "--dataset", "folder", "--data", str(folder_dataset), "--encoder", "builtin",
        "--group-regex", r"^(p\d+)_", "--folds", "3", "--batch-size", "8", "--lr", "0.01", "--out", str(out), "--cache-dir", str(cache), "--seed", "1",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    s = summary["encoders"][0]
    assert s["encoder"] == "builtin" and len(s["folds"]) == 3
    assert s["mean"]["auc"] > 0.9 and s["mean"]["accuracy"] > 0.8
    config = json.loads((out / "config.json").read_text())
    assert config["grouped"] and config["n_groups"] == 5 and config["probe"]["epochs"] == 10
    assert (out / "figure3.png").exists() and (out / "summary.csv").exists()
    assert len(list(cache.rglob("*.h5"))) == 1
    # same output without --overwrite: refused, nothing touched
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.output
    # rerun with --overwrite: every embedding comes from the cache (the encoder is never run)
    import hagekit.bench.downstream.linear_probe as lp

    def boom(*a, **k):
        raise AssertionError("encoder ran although every embedding is cached")

    monkeypatch.setattr(lp, "_encode_rows", boom)
    rerun = runner.invoke(app, [*args, "--overwrite"])
    assert rerun.exit_code == 0, rerun.output
    assert json.loads((out / "summary.json").read_text())["encoders"][0]["folds"] == s["folds"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--dataset", "imagenet"], "unknown patch dataset"),
        (["--dataset", "folder", "--weights", "uni=/x.bin"], "must be ENCODER=PATH"),
        (["--dataset", "folder", "--folds", "9"], "at least 9 slides/patients"),
        (["--dataset", "folder", "--encoder", "nope"], "unknown encoder"),
        (["--dataset", "pcam"], "no PCAM files"),
    ],
)
def test_linear_probe_cli_bad_inputs(tmp_path, folder_dataset, extra, message):
    out = tmp_path / "out"
    enc = [] if "--encoder" in extra else ["--encoder", "builtin"]
    if "--weights" in extra:
        enc += ["--encoder", "timm:resnet18"]
    groups = [] if "pcam" in extra else ["--group-regex", r"^(p\d+)_"]
    res = runner.invoke(app, [
        "bench", "linear-probe", "--data", str(folder_dataset), *groups,
        *enc, *extra, "--out", str(out), "--cache-dir", str(tmp_path / "c"),
    ])
    assert res.exit_code == 2, res.output
    assert message in flat(res.output)
    assert not out.exists()


def test_linear_probe_cli_needs_an_encoder(tmp_path, folder_dataset):
    res = runner.invoke(app, ["bench", "linear-probe", "--dataset", "folder", "--data", str(folder_dataset)])
    assert res.exit_code == 2 and "--encoder" in res.output
