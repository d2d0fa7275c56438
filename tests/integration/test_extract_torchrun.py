"""``torchrun --nproc_per_node 2 -m hagekit extract`` (CPU, gloo) on the real slides and HER2ST
sections gives the same bytes as one process (builtin encoder)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(launcher, args, tmp_path):
    # Both runs get the same thread count (torchrun sets OMP_NUM_THREADS=1 per rank): float
    # reductions on the CPU depend on it, and "same bytes" compares like with like.
    cmd = [sys.executable, "-m", *launcher, "hagekit", "extract", *args, "--device", "cpu", "--num-workers", "0"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", COLUMNS="200")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    return r.returncode, " ".join(r.stdout.split()), r.stderr


def _torchrun(args, tmp_path):
    return _run(["torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"], args, tmp_path)


def _single(args, tmp_path):
    return _run([], args, tmp_path)


def test_slides_two_ranks_same_bytes(wsi_dir, tmp_path, same_h5):
    slides = [wsi_dir / "cmu-1-small-region.svs", wsi_dir / "tcga-cr-7395-01a-01-ts1.svs"]
    args = [a for s in slides for a in ("--slides", str(s))] + ["--mpp", "0.25"]
    rc, _, err = _single([*args, "--out", str(tmp_path / "one")], tmp_path)
    assert rc == 0, err[-3000:]
    rc, out, err = _torchrun([*args, "--out", str(tmp_path / "two")], tmp_path)
    assert rc == 0, err[-3000:]
    assert out.count("2 done, 0 skipped, 0 failed") == 1 and "2 ranks" in out  # one summary, from rank 0
    for slide in slides:
        assert same_h5(tmp_path / "two" / f"{slide.stem}.h5", tmp_path / "one" / f"{slide.stem}.h5")


def test_sections_two_ranks_same_bytes(her2_root, tmp_path, same_h5):
    args = ["--dataset", "her2", "--data-root", str(her2_root), "--sections", "C2,C3"]
    rc, _, err = _single([*args, "--out", str(tmp_path / "one")], tmp_path)
    assert rc == 0, err[-3000:]
    rc, out, err = _torchrun([*args, "--out", str(tmp_path / "two")], tmp_path)
    assert rc == 0, err[-3000:]
    assert out.count("2 done, 0 skipped, 0 failed") == 1 and "2 ranks" in out
    for s in ("C2", "C3"):
        assert same_h5(tmp_path / "two" / f"{s}.h5", tmp_path / "one" / f"{s}.h5")
    assert not [p for p in (tmp_path / "two").iterdir() if ".tmp-" in p.name or p.suffix == ".lock"]
