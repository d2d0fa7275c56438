"""``torchrun --nproc_per_node 2 -m hagekit extract`` (CPU, gloo) on the real slides and HER2ST
sections gives the same bytes as one process (builtin encoder)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _torchrun(args, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "hagekit", "extract", *args, "--device", "cpu", "--num-workers", "0"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", COLUMNS="200")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    return r.returncode, " ".join(r.stdout.split()), r.stderr


def test_slides_two_ranks_same_bytes(wsi_dir, tmp_path, same_h5):
    from hagekit.extract import extract_slides

    slides = [wsi_dir / "cmu-1-small-region.svs", wsi_dir / "tcga-cr-7395-01a-01-ts1.svs"]
    ref = extract_slides(slides, out_dir=tmp_path / "one", mpp=0.25, device="cpu", num_workers=0)
    assert len(ref.done) == 2
    args = [a for s in slides for a in ("--slides", str(s))]
    rc, out, err = _torchrun([*args, "--mpp", "0.25", "--out", str(tmp_path / "two")], tmp_path)
    assert rc == 0, err[-3000:]
    assert out.count("2 done, 0 skipped, 0 failed") == 1 and "2 ranks" in out  # one summary, from rank 0
    for item in ref.done:
        assert same_h5(tmp_path / "two" / f"{item.name}.h5", item.path)


def test_sections_two_ranks_same_bytes(her2_root, her2_builtin_features, tmp_path, same_h5):
    rc, out, err = _torchrun(["--dataset", "her2", "--data-root", str(her2_root), "--sections", "C2,C3",
                              "--out", str(tmp_path / "two")], tmp_path)
    assert rc == 0, err[-3000:]
    assert out.count("2 done, 0 skipped, 0 failed") == 1 and "2 ranks" in out
    for s in ("C2", "C3"):
        assert same_h5(tmp_path / "two" / f"{s}.h5", her2_builtin_features / f"{s}.h5")
    assert not [p for p in (tmp_path / "two").iterdir() if ".tmp-" in p.name or p.suffix == ".lock"]
