"""(method, fold, trial) tasks dealt over torchrun ranks: `hagekit train` and `hagekit bench
baselines` under 2 CPU ranks (gloo) give the single-process tables; rank 0 writes them."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from toys import hage_toy as toy
from typer.testing import CliRunner

from hagekit.cli.main import app
from hagekit.distributed import DistContext, my_tasks, round_robin_device

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("one_torch_thread")

_TIMES = {"fit_seconds", "predict_seconds"}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return [{k: v for k, v in r.items() if k not in _TIMES} for r in csv.DictReader(fh)]


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "hagekit", *args]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", COLUMNS="200")
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=cwd)


def test_tasks_are_dealt_once_and_devices_round_robin():
    two = [my_tasks(5, DistContext(rank=r, world_size=2)) for r in range(2)]
    assert sorted(two[0] + two[1]) == list(range(5)) and not set(two[0]) & set(two[1])
    assert my_tasks(3, DistContext()) == [0, 1, 2]
    assert round_robin_device("cpu", 3) == "cpu"


@pytest.fixture(scope="module")
def toy_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("toy")
    root, feats, panel, emb = toy.make_toy(tmp)
    cfg = tmp / "fast.toml"
    cfg.write_text("\n".join(f"{k} = {v}" for k, v in toy.FAST.items() if k != "trials") + "\n")
    common = ["--dataset", "toy", "--data-root", str(root), "--features", str(feats), "--genes", str(panel),
              "--gene-embeddings", str(emb), "--trials", "2"]
    return tmp, common, cfg


def test_train_under_torchrun_matches_one_process(toy_files, tmp_path):
    tmp, common, cfg = toy_files
    args = ["train", *common, "--config", str(cfg), "--device", "cpu"]
    one = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    r = _torchrun([*args, "--out", str(tmp_path / "two")], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _rows(tmp_path / "two" / "metrics.csv") == _rows(tmp_path / "one" / "metrics.csv")
    trials = sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").glob("*/trial*/metrics.json"))
    assert len(trials) == 6  # 3 folds x 2 trials, written by whichever rank ran them
    assert r.stdout.count("run folder:") == 1  # printed by rank 0 only


def test_bench_baselines_under_torchrun_matches_one_process(toy_files, tmp_path):
    tmp, common, _ = toy_files
    args = ["bench", "baselines", *common, "--methods", "mean,ridge"]
    one = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    r = _torchrun([*args, "--out", str(tmp_path / "two")], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _rows(tmp_path / "two" / "results.csv") == _rows(tmp_path / "one" / "results.csv")
