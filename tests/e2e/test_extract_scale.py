"""Extraction across jobs: --shard shares, shared-folder locks, OOM retry, loud bugs, torchrun."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hagekit.extract import EncoderSpec, ExtractionSpec, TilingSpec, extract_slides
from hagekit.io.h5 import read_features

CPU = EncoderSpec(device="cpu", num_workers=0)
TILES = TilingSpec(mpp=0.5, tile_size=32)

REPO = Path(__file__).resolve().parents[2]


def _slide(path, w, h, seed):
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 243, np.uint8)
    img[32 : h - 32, 32 : w - 32] = rng.integers(90, 210, (h - 64, w - 64, 3))
    img[32 : h - 32, 32 : w - 32, 1] //= 2
    Image.fromarray(img).save(path)


@pytest.fixture()
def slides(tmp_path):
    d = tmp_path / "slides"
    d.mkdir()
    for i, (w, h) in enumerate([(320, 256), (256, 192), (192, 192), (384, 320)]):
        _slide(d / f"s{i}.png", w, h, i)
    return d


_JOB = """
import json, sys
from hagekit.extract import EncoderSpec, ExtractionSpec, TilingSpec, extract_slides
from hagekit.io.h5 import read_features
s = extract_slides(sys.argv[1], encoder=EncoderSpec(device="cpu", num_workers=0),
                   spec=ExtractionSpec(out_dir=sys.argv[2], tiling=TilingSpec(mpp=0.5, tile_size=32), shard=sys.argv[3] or None))
print(json.dumps({"done": [i.name for i in s.done], "items": {i.name: i.status for i in s.items}}))
"""


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WORLD_SIZE": "1"}


def _jobs(slides, out, shards):
    procs = [subprocess.Popen([sys.executable, "-c", _JOB, str(slides), str(out), s], env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in shards]
    results = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    return results


def _leftovers(out):
    return [p.name for p in out.iterdir() if ".tmp-" in p.name or p.suffix == ".lock" or ".stale-" in p.name]


def test_concurrent_shards_and_shared_folder_each_slide_once(slides, tmp_path, same_h5):
    names = {f"s{i}" for i in range(4)}
    out = tmp_path / "halves"
    a, b = _jobs(slides, out, ["0/2", "1/2"])
    assert set(a["done"]) | set(b["done"]) == names and not set(a["done"]) & set(b["done"])
    assert set(a["items"]).isdisjoint(b["items"])  # deterministic disjoint shares
    # the same share on rerun: everything is skipped
    again = extract_slides(slides, encoder=CPU, spec=ExtractionSpec(out_dir=out, shard="0/2", tiling=TILES))
    assert {i.name for i in again.items} == set(a["items"]) and not again.done
    # two identical jobs on one folder split the work through the locks
    out2 = tmp_path / "same"
    c, d = _jobs(slides, out2, ["0/1", "0/1"])
    assert sorted(c["done"] + d["done"]) == sorted(names)
    assert not _leftovers(out) and not _leftovers(out2)
    ref = extract_slides(slides, encoder=CPU, spec=ExtractionSpec(out_dir=tmp_path / "ref", tiling=TILES))
    assert len(ref.done) == 4
    for n in names:  # same bytes as one process
        assert same_h5(out / f"{n}.h5", tmp_path / "ref" / f"{n}.h5")


def test_live_lock_skips_and_dead_lock_is_reclaimed(slides, tmp_path):
    out = tmp_path / "f"
    out.mkdir()
    (out / "s0.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                              "start": time.time(), "token": "t"}))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / "s1.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid,
                                              "start": time.time(), "token": "u"}))
    s = extract_slides(slides, encoder=CPU, spec=ExtractionSpec(out_dir=out, tiling=TILES))
    st = {i.name: i for i in s.items}
    assert st["s0"].status == "skipped" and f"locked by {socket.gethostname()}:{os.getpid()}" in st["s0"].reason
    assert st["s1"].status == "done" and not (out / "s1.lock").exists()
    assert (out / "s0.lock").exists() and not (out / "s0.h5").exists()


def _oom_extract(monkeypatch, fail_above):
    """Simulate the CUDA allocator: batches larger than ``fail_above`` raise torch's OOM."""
    import torch

    from hagekit.extract import engine

    real = engine._encode_loop
    seen = []

    def fake(bundle, loader, *args, **kwargs):
        seen.append(loader.batch_size)
        if loader.batch_size > fail_above:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(bundle, loader, *args, **kwargs)

    monkeypatch.setattr(engine, "_encode_loop", fake)
    return seen


def test_cuda_oom_halves_the_batch_and_retries(slides, tmp_path, monkeypatch):
    extract_slides(slides / "s3.png", encoder=EncoderSpec(batch_size=16, num_workers=0),
                   spec=ExtractionSpec(out_dir=tmp_path / "ref", tiling=TILES))
    seen = _oom_extract(monkeypatch, fail_above=4)
    s = extract_slides(slides / "s3.png", encoder=EncoderSpec(batch_size=16, num_workers=0),
                       spec=ExtractionSpec(out_dir=tmp_path, tiling=TILES))
    item = s.items[0]
    assert item.status == "done" and "out of memory at batch 8: retried with batch 4" in item.reason
    assert seen == [16, 8, 4] and s.ranks[0].batch_size == 4
    ref, got = (read_features(p).features for p in (tmp_path / "ref" / "s3.h5", tmp_path / "s3.h5"))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)  # same features at the smaller batch


def test_oom_at_batch_one_and_bugs_stop_the_run(slides, tmp_path, monkeypatch):
    import torch

    _oom_extract(monkeypatch, fail_above=0)
    with pytest.raises(torch.OutOfMemoryError):
        extract_slides(slides / "s3.png", encoder=EncoderSpec(batch_size=2, num_workers=0),
                       spec=ExtractionSpec(out_dir=tmp_path, tiling=TILES))
    from hagekit.extract import engine

    def bug(*a, **k):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(engine, "_encode_loop", bug)
    with pytest.raises(TypeError):
        extract_slides(slides, encoder=EncoderSpec(num_workers=0), spec=ExtractionSpec(out_dir=tmp_path, tiling=TILES))
    assert not _leftovers(tmp_path)


def test_torchrun_two_ranks_same_bytes(slides, tmp_path, same_h5):
    """2 CPU ranks (gloo): every slide once, identical to one process, one summary from rank 0."""
    ref = extract_slides(slides, encoder=CPU, spec=ExtractionSpec(out_dir=tmp_path / "ref", tiling=TILES))
    out = tmp_path / "dist"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "hagekit", "extract", "--slides", str(slides), "--mpp", "0.5", "--tile-size", "32",
           "--num-workers", "0", "--device", "cpu", "--out", str(out)]
    env = {k: v for k, v in _env().items() if k != "WORLD_SIZE"}
    r = subprocess.run(cmd, env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    text = " ".join(r.stdout.split())
    assert text.count("4 done, 0 skipped, 0 failed") == 1 and "2 ranks" in text
    for item in ref.done:
        assert same_h5(out / f"{item.name}.h5", item.path)
    assert not _leftovers(out)
    print(textwrap.shorten(text, 400))
