"""Faults and bad input across every command (issue 13).

Every command runs once on minimal valid inputs, then on a table of bad inputs and faults;
each bad case must end with the documented exit code (2), exactly one ``error:`` line naming
the file or option, no ``Traceback``, and nothing under the output but complete files.

Read-only folders: the tests run as root here, where ``chmod`` does not stop writes, so a
read-only folder is a real read-only tmpfs mount where one can be mounted (root), else a
``chmod 0o500`` folder (non-root), else the case is skipped with the reason. Paths under a
regular *file* (NotADirectoryError) are used everywhere as the always-available variant.
Disk full: a small tmpfs when mountable (in a subprocess: HDF5 on a full disk must not be
exercised inside pytest's own process), otherwise ENOSPC injected at the atomic-write boundary.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml
from clitext import flat
from typer.testing import CliRunner

from hagekit.cli.main import app
from hagekit.io.tmpnames import is_temporary

REPO = Path(__file__).resolve().parents[2]


runner = CliRunner()

TRAIN = ["--epochs", "1", "--trials", "1", "--folds", "A1", "--d", "16", "--k1", "3", "--k2", "2",
         "--batch-size", "32", "--allow-leak"]


def invoke(*args: str):
    return runner.invoke(app, ["-q", *args], env={"COLUMNS": "200"})


def assert_one_line_error(res, needle: str, code: int = 2) -> None:
    """Exit ``code``, exactly one ``error:`` line containing ``needle``, no traceback."""
    out = res.output
    assert res.exit_code == code, out
    assert "Traceback" not in out, out
    errors = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, out
    assert needle in flat(errors[0]), out
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), res.exception


def leftovers(folder: Path) -> list[Path]:
    """Temporaries (unfinished outputs) anywhere under ``folder``."""
    if not folder.exists():
        return []
    return [p for p in folder.rglob("*") if is_temporary(p) or ".tmp-" in p.name]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A tiny complete workspace: 3 synthetic sections, panel, embeddings, features, one trained run."""
    import torch

    torch.set_num_threads(1)
    w = tmp_path_factory.mktemp("faults_ws")
    steps = [
        ["data", "synth", "-w", str(w), "--sections", "3", "--spots", "40", "--genes", "30"],
        ["genes", "select", "-w", str(w), "-d", "synth", "--top", "20"],
        ["genes", "embed", "-w", str(w), "-d", "synth", "--dim", "8", "--epochs", "2"],
        ["extract", "-w", str(w), "-d", "synth", "--device", "cpu", "--num-workers", "0", "--batch-size", "32"],
        ["train", "-w", str(w), "-d", "synth", *TRAIN],
    ]
    for args in steps:
        res = invoke(*args)
        assert res.exit_code == 0, (args, res.output)
    return w


def run_dir(w: Path) -> Path:
    return w / "runs" / "synth" / "hage"


def feats(w: Path) -> Path:
    return w / "features" / "synth" / "builtin"


def section(w: Path, name: str = "A1") -> Path:
    return w / "data" / "synth" / f"{name}.h5ad"


@pytest.fixture(scope="module")
def mil(tmp_path_factory) -> Path:
    """Feature bags of 8 slides (2 classes) and label CSVs of 2, 6 and 8 slides."""
    from hagekit.io.h5 import write_features

    root = tmp_path_factory.mktemp("faults_mil")
    rng = np.random.default_rng(0)
    (root / "feats").mkdir()
    for i in range(8):
        write_features(root / "feats" / f"s{i}.h5", rng.normal(size=(5, 4)) + i % 2, np.zeros((5, 2)))
    for n in (2, 6, 8):
        (root / f"l{n}.csv").write_text("slide_id,label,case_id\n" + "".join(f"s{i},{i % 2},c{i}\n" for i in range(n)))
    return root


@pytest.fixture(scope="module")
def raw_her2st(tmp_path_factory) -> Path:
    """A mini her2st repository (3 sections, 2 imaged) for `data prepare`."""
    from toys.raw_formats import make_her2st

    return make_her2st(tmp_path_factory.mktemp("faults_raw") / "her2st")


@pytest.fixture(scope="module")
def patches(tmp_path_factory) -> Path:
    """12 tiny patches in two class folders for `bench linear-probe`."""
    from PIL import Image

    root = tmp_path_factory.mktemp("faults_patches")
    rng = np.random.default_rng(0)
    for i in range(12):
        cls = root / ("dark" if i % 2 else "light")
        cls.mkdir(exist_ok=True)
        base = 60 if i % 2 else 200
        Image.fromarray(rng.integers(base - 20, base + 20, (32, 32, 3)).astype(np.uint8)).save(cls / f"p{i}.png")
    return root


# Minimal valid inputs: every command runs ---------------------------------------------------


def _valid_cases() -> list[tuple[str, Callable[[Path, Path, Path], list[str]], str]]:
    return [
        ("data list", lambda w, t, m: ["data", "list", "-w", str(w)], "synth"),
        ("encoders list", lambda w, t, m: ["encoders", "list"], "builtin"),
        ("data synth", lambda w, t, m: ["data", "synth", "--out", str(t / "d"), "--sections", "2", "--spots", "20",
                                        "--genes", "20"], "synth"),
        ("genes check", lambda w, t, m: ["genes", "check", str(w / "genes/synth/embeddings.txt"), "-w", str(w)], "genes"),
        ("predict", lambda w, t, m: ["predict", "--run", str(run_dir(w)), "--features", str(feats(w) / "A1.h5"),
                                     "--section", str(section(w)), "--out", str(t / "p.h5ad")], "predicted"),
        ("report", lambda w, t, m: ["report", str(run_dir(w)), "--out", str(t / "rep")], "PCC"),
        ("export-encoder", lambda w, t, m: ["export-encoder", "--force", "--run", str(run_dir(w)), "--out",
                                            str(t / "ge.safetensors")], "wrote"),
        ("bench baselines", lambda w, t, m: ["bench", "baselines", "-w", str(w), "-d", "synth", "--methods", "ridge",
                                             "--trials", "1", "--folds", "A1", "--out", str(t / "b")], "ridge"),
        ("extract --slides", lambda w, t, m: ["extract", "--slides", str(w / "data/synth/images/A1.jpg"), "--mpp", "1",
                                              "--tile-size", "64", "--device", "cpu", "--num-workers", "0",
                                              "--out", str(t / "s")], "done"),
        ("bench abmil 6 slides / 3 folds", lambda w, t, m: [
            "bench", "abmil", "--dataset", "csv", "--labels", str(m / "l6.csv"), "--features", str(m / "feats"),
            "--folds", "3", "--epochs", "2", "--min-epochs", "1", "--out", str(t / "ab")], "wrote"),
        ("bench abmil 8 slides / 2 folds", lambda w, t, m: [
            "bench", "abmil", "--dataset", "csv", "--labels", str(m / "l8.csv"), "--features", str(m / "feats"),
            "--folds", "2", "--epochs", "2", "--min-epochs", "1", "--out", str(t / "ab")], "wrote"),
    ]


@pytest.mark.parametrize("name,build,needle", _valid_cases(), ids=[c[0] for c in _valid_cases()])
def test_every_command_runs_on_minimal_valid_input(ws, mil, tmp_path, name, build, needle):
    """`data prepare` and `data download` run in the SIGKILL and download tests; `demo` (minutes) only
    on bad input here; `bench ablation`/`grid` in test_bench_tables_compare."""
    res = invoke(*build(ws, tmp_path, mil))
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    assert needle in flat(res.output)
    assert not leftovers(tmp_path) and not leftovers(ws)


# Bad inputs and faults: one line, exit 2, nothing half-written --------------------------------

BIN = b"\x00\x01\x02\xffbinary\x00"


def _file(t: Path) -> Path:
    """A regular file (outputs under it hit NotADirectoryError, whoever runs the test)."""
    f = t / "a_file"
    f.write_text("x")
    return f


def _dir(t: Path, name: str = "a_dir") -> Path:
    d = t / name
    d.mkdir(exist_ok=True)
    return d


def _bin(t: Path) -> Path:
    f = t / "binary.txt"
    f.write_bytes(BIN)
    return f


def _run_copy(w: Path, t: Path, damage: Callable[[Path], None]) -> Path:
    run = t / "run"
    shutil.copytree(run_dir(w), run)
    damage(run)
    return run


def _truncate_model(run: Path) -> None:
    model = run / "A1" / "trial0" / "model.safetensors"
    model.write_bytes(model.read_bytes()[:1000])


def _damage_estimator(how: str) -> Callable[[Path], None]:
    """Damage a run copy's ``A1/trial0/estimator.json``: cut short, a JSON list, without its config, or
    describing another feature width than its weights."""

    def damage(run: Path) -> None:
        meta = run / "A1" / "trial0" / "estimator.json"
        text = meta.read_text(encoding="utf-8")
        full = json.loads(text)
        meta.write_text({"truncated": text[: len(text) // 2], "list": "[]",
                         "no-config": json.dumps({k: v for k, v in full.items() if k != "config"}),
                         "width": json.dumps({**full, "n_features_in": 999})}[how], encoding="utf-8")

    return damage


def _toml(t: Path, text: str) -> Path:
    f = t / "cfg.toml"
    f.write_text(text)
    return f


def _nan_counts_root(w: Path, t: Path) -> Path:
    import anndata as ad

    root = t / "data"
    shutil.copytree(w / "data", root)
    a = ad.read_h5ad(root / "synth" / "A2.h5ad")
    x = a.X.toarray().astype(np.float32)
    x[0, 0] = np.nan
    import scipy.sparse as sp

    a.X = sp.csr_matrix(x)
    a.write_h5ad(root / "synth" / "A2.h5ad")
    return root


def _narrow_features(w: Path, t: Path, width: int | None = 8) -> Path:
    """A copy of the feature folder whose B1.h5 holds ``width``-wide features (``None``: same width, one NaN)."""
    import h5py

    out = t / "feats"
    shutil.copytree(feats(w), out)
    with h5py.File(out / "B1.h5", "r+") as f:
        n, d = f["features"].shape
        attrs = dict(f["features"].attrs)
        values = np.ones((n, width or d), np.float32)
        if width is None:
            values[0, 0] = np.nan
        del f["features"]
        f.create_dataset("features", data=values)
        f["features"].attrs.update(attrs)
    return out


def _train(w: Path, *extra: str) -> list[str]:
    return ["train", "-w", str(w), "-d", "synth", *TRAIN, *extra]


def _predict(w: Path, out: Path, *extra: str, run: Path | None = None) -> list[str]:
    return ["predict", "--run", str(run or run_dir(w)), "--features", str(feats(w) / "A1.h5"), "--out", str(out), *extra]


EMB = "genes/synth/embeddings.txt"
PANEL = "genes/synth/panel.txt"

#: (id, args(ws, tmp, mil) -> argv, text the error line must hold, output that must not appear)
BAD: list[tuple[str, Callable[[Path, Path, Path], list[str]], str, str | None]] = [
    # non-finite numbers and negative seeds, one rule in every command
    ("train --lr inf", lambda w, t, m: _train(w, "--lr", "inf", "--out", str(t / "o")), "--lr: must be a finite number", "o"),
    ("train --lr nan", lambda w, t, m: _train(w, "--lr", "nan", "--out", str(t / "o")), "--lr: must be a finite number", "o"),
    ("train --val-fraction nan", lambda w, t, m: _train(w, "--val-fraction", "nan", "--out", str(t / "o")), "--val-fraction", "o"),
    ("train --lr 1e38", lambda w, t, m: _train(w, "--lr", "1e38", "--out", str(t / "o")), "lr: must be in (0, 1]", "o"),
    ("train config lr = inf", lambda w, t, m: _train(w, "--config", str(_toml(t, "lr = inf\n")), "--out", str(t / "o")),
     "lr must be a finite number", "o"),
    ("train config seed = -1", lambda w, t, m: _train(w, "--config", str(_toml(t, "seed = -1\n")), "--out", str(t / "o")),
     "seed must be >= 0", "o"),
    ("data synth --seed -1", lambda w, t, m: ["data", "synth", "--out", str(t / "o"), "--seed", "-1"], "--seed: must be >= 0", "o"),
    ("genes embed --seed -1", lambda w, t, m: ["genes", "embed", "-w", str(w), "-d", "synth", "--seed", "-1", "--out",
                                               str(t / "o.txt")], "--seed: must be >= 0", "o.txt"),
    ("genes check --seed -1", lambda w, t, m: ["genes", "check", str(w / EMB), "-w", str(w), "--seed", "-1"], "--seed", None),
    ("train --seed -1", lambda w, t, m: _train(w, "--seed", "-1", "--out", str(t / "o")), "--seed: must be >= 0", "o"),
    ("genes embed --threshold inf", lambda w, t, m: ["genes", "embed", "-w", str(w), "-d", "synth", "--threshold", "inf",
                                                     "--out", str(t / "o.txt")], "--threshold", "o.txt"),
    ("genes check --eval-threshold nan", lambda w, t, m: ["genes", "check", str(w / EMB), "-w", str(w), "--eval-threshold",
                                                          "nan"], "--eval-threshold", None),
    ("extract --patch-um inf", lambda w, t, m: ["extract", "-w", str(w), "-d", "synth", "--patch-um", "inf", "--out",
                                                str(t / "o")], "--patch-um", "o"),
    ("bench abmil --lr inf", lambda w, t, m: ["bench", "abmil", "--dataset", "csv", "--labels", str(m / "l6.csv"),
                                              "--features", str(m / "feats"), "--lr", "inf", "--out", str(t / "o")], "--lr", "o"),
    ("bench linear-probe --lr nan", lambda w, t, m: ["bench", "linear-probe", "-d", "folder", "--data", str(t), "--lr", "nan",
                                                     "--out", str(t / "o")], "--lr", "o"),
    ("demo --seed -1", lambda w, t, m: ["demo", "--out", str(t / "o"), "--seed", "-1"], "--seed", "o"),
    # outputs that are a folder where a file is wanted, or the other way round
    ("predict --out DIR", lambda w, t, m: _predict(w, _dir(t)), "is a directory", None),
    ("predict --plot-dir FILE", lambda w, t, m: _predict(w, t / "p.h5ad", "--plot", "X", "--plot-dir", str(_file(t))),
     "--plot-dir", "p.h5ad"),
    ("report --out FILE", lambda w, t, m: ["report", str(run_dir(w)), "--out", str(_file(t))], "is a file", None),
    ("data synth --out FILE", lambda w, t, m: ["data", "synth", "--out", str(_file(t))], "is a file", None),
    ("genes select --out DIR --overwrite", lambda w, t, m: ["genes", "select", "-w", str(w), "-d", "synth", "--out",
                                                             str(_dir(t)), "--overwrite"], "is a directory", "a_dir.json"),
    ("genes embed --out DIR", lambda w, t, m: ["genes", "embed", "-w", str(w), "-d", "synth", "--out", str(_dir(t))],
     "is a directory", "a_dir.json"),
    ("genes check --out DIR", lambda w, t, m: ["genes", "check", str(w / EMB), "-w", str(w), "--genes", str(w / PANEL),
                                               "--out", str(_dir(t))], "is a directory", None),
    ("export-encoder --out DIR", lambda w, t, m: ["export-encoder", "--force", "--run", str(run_dir(w)), "--out",
                                                  str(_dir(t, "x.safetensors"))], "is a directory", None),
    ("extract --out FILE", lambda w, t, m: ["extract", "-w", str(w), "-d", "synth", "--out", str(_file(t))], "is a file", None),
    ("train --out FILE", lambda w, t, m: _train(w, "--out", str(_file(t))), "a_file", None),
    ("demo --out FILE", lambda w, t, m: ["demo", "--out", str(_file(t))], "is a file", None),
    ("data download --manifest .", lambda w, t, m: ["data", "download", "--manifest", str(t), "--out", str(t / "o")],
     "is a directory", "o"),
    # outputs under a regular file (NotADirectoryError at the OS boundary)
    *[
        (f"{name} under a file", build, "a_file", None)
        for name, build in [
            ("train", lambda w, t, m: _train(w, "--out", str(_file(t) / "run"))),
            ("data synth", lambda w, t, m: ["data", "synth", "--out", str(_file(t) / "d"), "--sections", "2"]),
            ("genes select", lambda w, t, m: ["genes", "select", "-w", str(w), "-d", "synth", "--top", "20",
                                              "--out", str(_file(t) / "p.txt")]),
            ("genes embed", lambda w, t, m: ["genes", "embed", "-w", str(w), "-d", "synth", "--dim", "8", "--epochs", "1",
                                             "--out", str(_file(t) / "e.txt")]),
            ("genes check", lambda w, t, m: ["genes", "check", str(w / EMB), "-w", str(w), "--genes", str(w / PANEL),
                                             "--out", str(_file(t) / "m.txt")]),
            ("report", lambda w, t, m: ["report", str(run_dir(w)), "--out", str(_file(t) / "r")]),
            ("export-encoder", lambda w, t, m: ["export-encoder", "--force", "--run", str(run_dir(w)), "--out",
                                                str(_file(t) / "x.safetensors")]),
            ("predict", lambda w, t, m: _predict(w, _file(t) / "p.h5ad")),
            ("extract", lambda w, t, m: ["extract", "-w", str(w), "-d", "synth", "--out", str(_file(t) / "f")]),
            ("bench baselines", lambda w, t, m: ["bench", "baselines", "-w", str(w), "-d", "synth", "--methods", "ridge",
                                                 "--trials", "1", "--folds", "A1", "--out", str(_file(t) / "b")]),
            ("bench ablation", lambda w, t, m: ["bench", "ablation", "-w", str(w), "-d", "synth", "--variants", "full",
                                                "--trials", "1", "--folds", "A1", "--out", str(_file(t) / "o")]),
            ("bench grid", lambda w, t, m: ["bench", "grid", "-w", str(w), "-d", "synth", "--k1", "2", "--k2", "2",
                                            "--trials", "1", "--folds", "A1", "--out", str(_file(t))]),
            ("bench abmil", lambda w, t, m: ["bench", "abmil", "--dataset", "csv", "--labels", str(m / "l6.csv"),
                                             "--features", str(m / "feats"), "--folds", "3", "--epochs", "1",
                                             "--out", str(_file(t) / "ab")]),
        ]
    ],
    # corrupt run files
    ("export-encoder corrupt model", lambda w, t, m: ["export-encoder", "--run", str(_run_copy(w, t, _truncate_model)),
                                                      "--out", str(t / "x.safetensors")], "model.safetensors", "x.safetensors"),
    ("extract ge:RUN corrupt model", lambda w, t, m: ["extract", "-w", str(w), "-d", "synth", "--encoder",
                                                      f"ge:{_run_copy(w, t, _truncate_model)}", "--out", str(t / "o")],
     "model.safetensors", "o"),
    ("predict corrupt model", lambda w, t, m: _predict(w, t / "p.h5ad", run=_run_copy(w, t, _truncate_model)),
     "model.safetensors", "p.h5ad"),
    ("export-encoder truncated estimator.json", lambda w, t, m: ["export-encoder", "--run", str(_run_copy(
        w, t, _damage_estimator("truncated"))), "--out", str(t / "x.safetensors")], "estimator.json: not valid JSON",
     "x.safetensors"),
    ("extract ge:RUN estimator.json not an object", lambda w, t, m: [
        "extract", "-w", str(w), "-d", "synth", "--encoder", f"ge:{_run_copy(w, t, _damage_estimator('list'))}",
        "--out", str(t / "o")], "estimator.json: not a HAGE estimator description", "o"),
    ("predict estimator.json of another width", lambda w, t, m: _predict(w, t / "p.h5ad", run=_run_copy(
        w, t, _damage_estimator("width"))), "model.safetensors: weights do not match estimator.json", "p.h5ad"),
    ("export-encoder estimator.json without config", lambda w, t, m: ["export-encoder", "--run", str(_run_copy(
        w, t, _damage_estimator("no-config"))), "--out", str(t / "x.safetensors")], "estimator.json: incomplete",
     "x.safetensors"),
    ("train rerun non-JSON config.json", lambda w, t, m: _train(w, "--out", str(_run_copy(
        w, t, lambda r: (r / "config.json").write_text("not json {")))), "config.json: not valid JSON", None),
    ("report empty metrics.json", lambda w, t, m: ["report", str(_run_copy(
        w, t, lambda r: (r / "A1" / "trial0" / "metrics.json").write_text(""))), "--out", str(t / "rep")],
     "metrics.json", "rep"),
    # binary text files, NaN counts
    ("genes select --compare BINARY", lambda w, t, m: ["genes", "select", "-w", str(w), "-d", "synth", "--compare",
                                                       str(_bin(t)), "--out", str(t / "p.txt")], "binary.txt: binary file", "p.txt"),
    ("train --genes BINARY", lambda w, t, m: _train(w, "--genes", str(_bin(t)), "--out", str(t / "o")),
     "binary.txt: binary file", "o"),
    ("genes embed --genes BINARY", lambda w, t, m: ["genes", "embed", "-w", str(w), "-d", "synth", "--genes", str(_bin(t)),
                                                    "--out", str(t / "e.txt")], "binary.txt", "e.txt"),
    ("genes check BINARY embeddings", lambda w, t, m: ["genes", "check", str(_bin(t)), "-w", str(w)], "binary.txt", None),
    ("genes select NaN counts", lambda w, t, m: ["genes", "select", "-d", "synth", "--data-root", str(_nan_counts_root(w, t)),
                                                 "--out", str(t / "p.txt")], "A2.h5ad: counts hold 1 NaN", "p.txt"),
    ("train NaN counts", lambda w, t, m: _train(w, "--data-root", str(_nan_counts_root(w, t)), "--out", str(t / "o")),
     "A2.h5ad: counts hold 1 NaN", "o"),
    # tiny MIL sets and wrongly typed per-method values
    ("bench abmil 2 slides", lambda w, t, m: ["bench", "abmil", "--dataset", "csv", "--labels", str(m / "l2.csv"),
                                              "--features", str(m / "feats"), "--folds", "2", "--out", str(t / "o")],
     "at least 2 slides in one class", "o"),
    ("bench baselines alphas='x'", lambda w, t, m: ["bench", "baselines", "-w", str(w), "-d", "synth", "--methods", "ridge",
                                                    "--config", str(_toml(t, '[baselines.ridge]\nalphas = "x"\n')),
                                                    "--out", str(t / "o")], "ridge: parameter alphas must be", "o"),
    # options named as the command spells them; feature files checked before anything is written
    ("genes embed --eval-sections Z9", lambda w, t, m: ["genes", "embed", "-w", str(w), "-d", "synth", "--dim", "8", "--epochs",
                                                        "1", "--eval-sections", "Z9", "--out", str(t / "e.txt")],
     "--eval-sections: unknown section(s) Z9", "e.txt"),
    ("genes embed --eval-threshold 5", lambda w, t, m: ["genes", "embed", "-w", str(w), "-d", "synth", "--dim", "8", "--epochs",
                                                        "1", "--eval-threshold", "5", "--out", str(t / "e.txt")],
     "--eval-threshold", "e.txt"),
    ("train features of another width", lambda w, t, m: _train(w, "--features", str(_narrow_features(w, t)), "--out",
                                                               str(t / "o")), "B1.h5", "o"),
    ("train NaN features", lambda w, t, m: _train(w, "--features", str(_narrow_features(w, t, width=None)), "--out",
                                                  str(t / "o")), "B1.h5: features contain NaN", "o"),
    ("extract --overlap >= tile", lambda w, t, m: ["extract", "--slides", str(w / "data/synth/images/A1.jpg"), "--mpp", "1",
                                                   "--overlap", "256", "--out", str(t / "o")], "--overlap", "o"),
]


@pytest.mark.parametrize("name,build,needle,output", BAD, ids=[c[0] for c in BAD])
def test_bad_input_is_one_line_exit_2_and_no_partial_output(ws, mil, tmp_path, name, build, needle, output):
    before = sorted(p.relative_to(ws) for p in ws.rglob("*"))
    res = invoke(*build(ws, tmp_path, mil))
    assert_one_line_error(res, needle)
    if output is not None:
        assert not (tmp_path / output).exists(), f"{name} left {output}"
    assert not leftovers(tmp_path)
    assert sorted(p.relative_to(ws) for p in ws.rglob("*")) == before, "the shared workspace changed"


# Read-only folders ---------------------------------------------------------------------------


@contextlib.contextmanager
def _tmpfs(path: Path, options: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def readonly_dir(tmp_path) -> Iterator[Path]:
    """A folder nobody can write: a read-only tmpfs as root (chmod does not stop root), else chmod 0o500."""
    if os.geteuid() != 0:
        d = tmp_path / "ro"
        d.mkdir()
        d.chmod(0o500)
        yield d
        d.chmod(0o700)
        return
    if shutil.which("mount") is None:
        pytest.skip("running as root without `mount`: no way to make a read-only folder")
    with _tmpfs(tmp_path / "ro", "ro,size=1m") as d:
        yield d


READONLY = [
    ("train", lambda w, ro: _train(w, "--out", str(ro / "run"))),
    ("data synth", lambda w, ro: ["data", "synth", "--out", str(ro / "d"), "--sections", "2"]),
    ("genes select", lambda w, ro: ["genes", "select", "-w", str(w), "-d", "synth", "--top", "20", "--out", str(ro / "p.txt")]),
    ("report", lambda w, ro: ["report", str(run_dir(w)), "--out", str(ro / "r")]),
    ("export-encoder", lambda w, ro: ["export-encoder", "--force", "--run", str(run_dir(w)), "--out", str(ro / "x.safetensors")]),
    ("predict", lambda w, ro: _predict(w, ro / "p.h5ad")),
]


@pytest.mark.parametrize("name,build", READONLY, ids=[c[0] for c in READONLY])
def test_read_only_output_folder_is_one_line(ws, readonly_dir, name, build):
    res = invoke(*build(ws, readonly_dir))
    assert_one_line_error(res, str(readonly_dir))
    assert any(s in res.output for s in ("read-only file system", "permission denied")), res.output
    assert not any(readonly_dir.iterdir())


# Resume validates what it skips; a diverging run saves nothing ---------------------------------


@pytest.mark.parametrize(
    "damage",
    [_truncate_model, lambda r: (r / "A1" / "trial0" / "metrics.json").write_text(""),
     lambda r: (r / "A1" / "trial0" / "model.safetensors").unlink(), _damage_estimator("width"),
     _damage_estimator("no-config")],
    ids=["truncated model", "empty metrics.json", "model missing", "estimator.json of another width",
         "estimator.json without config"],
)
def test_resume_redoes_a_damaged_trial(ws, tmp_path, damage):
    from hagekit.hage.estimator import HAGERegressor

    run = _run_copy(ws, tmp_path, damage)
    res = invoke(*_train(ws, "--out", str(run)))
    assert res.exit_code == 0, res.output
    assert "done earlier" not in res.output
    HAGERegressor.load(run / "A1" / "trial0")  # readable, right shapes
    assert json.loads((run / "A1" / "trial0" / "metrics.json").read_text())["rows"]
    again = invoke(*_train(ws, "--out", str(run)))
    assert again.exit_code == 0 and not leftovers(run)


def test_non_finite_loss_stops_training_naming_fold_trial_epoch(ws, tmp_path):
    import torch

    from hagekit.errors import TrainingError
    from hagekit.io.genelist import read_gene_list
    from hagekit.learn.loop import LoopConfig, train_loop
    from hagekit.training.dataset import load_dataset
    from hagekit.training.protocol import ProtocolSettings, run_protocol

    class Diverging:
        """A linear model whose loss turns NaN in its second epoch, trained by the shared loop."""

        def fit(self, X, Y, **_):
            self.lin = torch.nn.Linear(X.shape[1], Y.shape[1])
            opt = torch.optim.SGD(self.lin.parameters(), lr=0.0)
            x, y = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(Y, dtype=torch.float32)
            calls = {"n": 0}

            def step(idx):
                calls["n"] += 1
                loss = ((self.lin(x[idx]) - y[idx]) ** 2).mean()
                return loss * float("nan") if calls["n"] > 1 else loss

            train_loop(self.lin, opt, step, n=len(x), config=LoopConfig(epochs=3, batch_size=len(x)))
            return self

        def predict(self, X):
            return self.lin(torch.as_tensor(X, dtype=torch.float32)).detach().numpy()

        def save(self, d):
            (Path(d) / "w.txt").write_text("saved")

    genes = read_gene_list(ws / PANEL)
    data = load_dataset(ws / "data", "synth", feats(ws), genes)
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"fold A1 trial 0: epoch 2: training loss is nan"):
        run_protocol(data, lambda ctx: Diverging(), ProtocolSettings(folds=["A1"], trials=1, out_dir=out, method="toy"))
    assert not (out / "A1" / "trial0").exists() and not leftovers(out)


def test_bom_is_dropped_from_panels_and_embeddings(ws, tmp_path):
    from hagekit.genes.embeddings import load_gene_embeddings
    from hagekit.io.genelist import read_gene_list

    panel = tmp_path / "panel.txt"
    panel.write_bytes(b"\xef\xbb\xbf" + (ws / PANEL).read_bytes())
    emb = tmp_path / "emb.txt"
    emb.write_bytes(b"\xef\xbb\xbf" + (ws / EMB).read_bytes())
    assert read_gene_list(panel) == read_gene_list(ws / PANEL)
    assert list(load_gene_embeddings(emb).symbols) == list(load_gene_embeddings(ws / EMB).symbols)
    res = invoke("genes", "check", str(emb), "--genes", str(panel), "-w", str(ws))
    assert res.exit_code == 0, res.output


# Downloads that drop the connection -------------------------------------------------------------

PAYLOAD = bytes(range(256)) * 2048  # 512 KiB


class _DroppingServer:
    """127.0.0.1 server that announces the full length, sends ``cut`` bytes and hangs up; Range honoured."""

    def __init__(self, body: bytes) -> None:
        self.body, self.cut = body, len(body) // 3
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                rng = self.headers.get("Range")
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(server.body) - 1}/{len(server.body)}")
                self.send_header("Content-Length", str(len(server.body) - start))
                self.end_headers()
                end = len(server.body) if server.cut is None else server.cut
                self.wfile.write(server.body[start:end])
                self.wfile.flush()
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/a.bin"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("with_sha", [True, False], ids=["sha256", "no-sha256"])
def test_dropped_download_keeps_a_resumable_part_and_the_rerun_completes(tmp_path, with_sha):
    server = _DroppingServer(PAYLOAD)
    try:
        entry = {"name": "a.bin", "url": server.url, "sha256": hashlib.sha256(PAYLOAD).hexdigest() if with_sha else None}
        man = tmp_path / "m.yaml"
        man.write_text(yaml.safe_dump({"name": "mini", "kind": "dataset", "title": "Mini", "licence": "CC0",
                                       "citation": "Nobody (2026).", "files": [entry]}))
        out = tmp_path / "out"
        res = invoke("data", "download", "--manifest", str(man), "--out", str(out))
        assert_one_line_error(res, "rerun to resume")
        part = out / ".a.bin.part"
        assert part.is_file() and part.stat().st_size == server.cut and not (out / "a.bin").exists()
        listed = invoke("data", "download", "--manifest", str(man), "--out", str(out))  # still cut: resumes, still short
        assert listed.exit_code == 2 and not (out / "a.bin").exists()
        server.cut = None
        res = invoke("data", "download", "--manifest", str(man), "--out", str(out))
        assert res.exit_code == 0, res.output
        assert (out / "a.bin").read_bytes() == PAYLOAD and not part.exists()
    finally:
        server.close()


def test_corrupt_archive_is_one_line(tmp_path):
    from hagekit.data.download import safe_extract
    from hagekit.errors import DataError

    bad = tmp_path / "x.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 20)  # a gzip header and nothing else
    with pytest.raises(DataError, match="x.tar.gz: corrupt"):
        safe_extract(bad, tmp_path / "x")
    assert not (tmp_path / "x").exists() and not leftovers(tmp_path)


# SIGKILL while writing: readers ignore the temporary, writers clean it --------------------------

#: Runs the CLI and SIGKILLs itself the moment the finished temporary of its n-th ``<suffix>``
#: output (argument ``SUFFIX:N``) would be renamed: the state a kill mid-write leaves
#: (deterministic, unlike a timed kill).
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    real, (suffix, nth) = os.replace, sys.argv[1].split(":")
    seen = [0]
    def replace(src, dst, *args, **kwargs):
        if str(dst).endswith(suffix):
            seen[0] += 1
            if seen[0] == int(nth):
                os.kill(os.getpid(), signal.SIGKILL)
        return real(src, dst, *args, **kwargs)
    os.replace = replace
    from hagekit.cli.main import main
    sys.argv = ["hagekit", "-q", *sys.argv[2:]]
    main()
    """
)


def _subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def _killed(suffix: str, *args: str) -> None:
    done = subprocess.run([sys.executable, "-c", KILLER, suffix, *args], env=_subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]


def test_sigkill_during_data_prepare_then_list_select_and_rerun(raw_her2st, tmp_path):
    raw = raw_her2st
    w = tmp_path / "w"
    _killed(".h5ad:2", "data", "prepare", "her2st", "--raw", str(raw), "-w", str(w))
    assert leftovers(w / "data"), "the kill should leave a temporary behind"
    listed = invoke("data", "list", "-w", str(w))
    assert listed.exit_code == 0 and ".tmp-" not in listed.output and "1 section(s)" in flat(listed.output), listed.output
    rerun = invoke("data", "prepare", "her2st", "--raw", str(raw), "-w", str(w))
    assert rerun.exit_code == 0, rerun.output
    assert not leftovers(w) and len(list((w / "data" / "her2").glob("*.h5ad"))) == 3
    selected = invoke("genes", "select", "-w", str(w), "-d", "her2", "--top", "4")
    assert selected.exit_code == 0, selected.output


def test_sigkill_during_synth_and_extract_then_list_train_and_rerun(ws, tmp_path):
    w = tmp_path / "w"
    shutil.copytree(ws, w, ignore=shutil.ignore_patterns("runs"))
    _killed(".h5ad:1", "data", "synth", "-w", str(w), "--sections", "3", "--spots", "40", "--genes", "30", "--overwrite")
    _killed(".h5:1", "extract", "-w", str(w), "-d", "synth", "--device", "cpu", "--num-workers", "0", "--overwrite")
    left = leftovers(w)
    assert {p.suffix for p in left} >= {".h5ad", ".h5"}, left
    listed = invoke("data", "list", "-w", str(w))
    assert listed.exit_code == 0 and "3 section(s)" in flat(listed.output), listed.output
    trained = invoke(*_train(w, "--out", str(tmp_path / "run")))
    assert trained.exit_code == 0, trained.output
    for args in (["data", "synth", "-w", str(w), "--sections", "3", "--spots", "40", "--genes", "30", "--overwrite"],
                 ["extract", "-w", str(w), "-d", "synth", "--device", "cpu", "--num-workers", "0", "--overwrite"]):
        rerun = invoke(*args)
        assert rerun.exit_code == 0, rerun.output
    assert not leftovers(w) and not leftovers(tmp_path / "run")


# Disk full ----------------------------------------------------------------------------------------


@pytest.fixture
def full_disk(tmp_path) -> Iterator[Path]:
    """A 512 KiB tmpfs filled but for ~24 KiB (skips where no tmpfs can be mounted)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and `mount`; the injected-ENOSPC test covers this case")
    with _tmpfs(tmp_path / "full", "size=512k") as d:
        st = os.statvfs(d)
        (d / "ballast").write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - 24 * 1024))
        yield d


@pytest.mark.parametrize(
    "name,build",
    [
        ("data synth", lambda w, d: ["data", "synth", "--out", str(d / "o"), "--sections", "2", "--spots", "40", "--genes", "30"]),
        ("extract", lambda w, d: ["extract", "-w", str(w), "-d", "synth", "--device", "cpu", "--num-workers", "0",
                                  "--out", str(d / "o")]),
    ],
    ids=["data synth", "extract"],
)
def test_disk_full_is_one_line_and_leaves_no_partial_file(ws, full_disk, name, build):
    # a subprocess: HDF5 objects that failed to flush must not live on in pytest's own process
    done = subprocess.run([sys.executable, "-m", "hagekit", "-q", *build(ws, full_disk)], env=_subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and f"no space left on {full_disk / 'o'}" in errors[0], done.stderr[-3000:]
    _no_partial_file(full_disk)


def test_disk_full_during_train_is_one_line(ws, full_disk):
    # in-process: training writes JSON and safetensors only (no HDF5)
    res = invoke(*_train(ws, "--out", str(full_disk / "o")))
    assert_one_line_error(res, f"no space left on {full_disk / 'o'}")
    _no_partial_file(full_disk)


def _no_partial_file(folder: Path) -> None:
    assert not leftovers(folder)
    assert not [p for p in folder.rglob("*") if p.suffix in (".h5ad", ".h5", ".safetensors")]


def test_disk_full_injected_at_the_write_boundary(ws, tmp_path, monkeypatch):
    """Where no tmpfs can be mounted: ENOSPC raised by the rename that would publish the model."""
    import errno

    real = os.replace

    def no_space(src, dst, *args, **kwargs):
        if str(dst).endswith(".safetensors"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", no_space)
    out = tmp_path / "run"
    res = invoke(*_train(ws, "--out", str(out)))
    assert_one_line_error(res, f"no space left on {out / 'A1' / 'trial0' / 'model.safetensors'}")
    assert not (out / "A1" / "trial0").exists() and not leftovers(out)


def test_image_section_without_features_is_named_not_silently_dropped(ws, tmp_path):
    partial = tmp_path / "feats"
    shutil.copytree(feats(ws), partial)
    (partial / "B1.h5").unlink()
    res = invoke(*_train(ws, "--features", str(partial), "--out", str(tmp_path / "run")))
    assert res.exit_code == 0, res.output
    assert "no feature file for image section(s) B1" in flat(res.output)


def test_duplicate_spot_ids_name_the_file():
    from hagekit.data.prepare import match_barcodes
    from hagekit.errors import DataError

    with pytest.raises(DataError, match=r"C2\.tsv: 1 duplicated spot id\(s\), e\.g\. 1x1"):
        match_barcodes(["1x1", "1x1", "2x2"], ["1x1", "2x2"], counts_file="C2.tsv", spots_file="C2_sel.tsv")
    with pytest.raises(DataError, match="C2_sel.tsv: 1 duplicated"):
        match_barcodes(["1x1", "2x2"], ["1x1", "2x2", "2x2"], counts_file="C2.tsv", spots_file="C2_sel.tsv")


def test_linear_probe_and_prepare_run_and_refuse_bad_outputs(patches, raw_her2st, tmp_path):
    res = invoke("bench", "linear-probe", "-d", "folder", "--data", str(patches), "-e", "builtin", "--folds", "2",
                 "--epochs", "2", "--out", str(tmp_path / "lp"), "--cache-dir", str(tmp_path / "cache"))
    assert res.exit_code == 0, res.output
    res = invoke("bench", "linear-probe", "-d", "folder", "--data", str(patches), "-e", "builtin", "--folds", "2",
                 "--epochs", "2", "--out", str(_file(tmp_path) / "lp"), "--cache-dir", str(tmp_path / "cache"))
    assert_one_line_error(res, "a_file")
    res = invoke("data", "prepare", "her2st", "--raw", str(raw_her2st), "--out", str(_file(tmp_path)))
    assert_one_line_error(res, "is a file")
    assert not leftovers(tmp_path)


def test_prepare_into_a_read_only_folder_is_one_line(raw_her2st, readonly_dir):
    res = invoke("data", "prepare", "her2st", "--raw", str(raw_her2st), "--out", str(readonly_dir / "d"))
    assert_one_line_error(res, str(readonly_dir))
    assert not any(readonly_dir.iterdir())


def test_extract_resume_redoes_a_damaged_feature_file(ws, tmp_path):
    from hagekit.io.h5 import read_features

    out = tmp_path / "feats"
    shutil.copytree(feats(ws), out)
    (out / "A1.h5").write_bytes((out / "A1.h5").read_bytes()[:3000])
    res = invoke("extract", "-w", str(ws), "-d", "synth", "--device", "cpu", "--num-workers", "0", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert read_features(out / "A1.h5").features.shape == read_features(feats(ws) / "A1.h5").features.shape
    assert "skipped" in flat(res.output) and not leftovers(out)


def test_one_damaged_section_does_not_hide_the_others(ws, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(ws / "data", root)
    (root / "synth" / "B1.h5ad").write_bytes(b"not an h5ad")
    res = invoke("data", "list", "-w", str(tmp_path))
    assert res.exit_code == 0, res.output
    assert "2 section(s)" in flat(res.output) and "B1.h5ad" in flat(res.output)
