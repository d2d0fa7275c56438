"""Scale-out pieces: balanced dealing, --shard parsing, per-item locks, temporary names."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from hagekit.distributed import deal_balanced, env_world_size, init_distributed, parse_shard
from hagekit.errors import ConfigError
from hagekit.io.atomic import atomic_path, remove_stale_temporaries, tmp_path_for
from hagekit.io.locks import ItemLock, LockInfo, is_stale, item_lock, read_lock, try_lock
from hagekit.io.tmpnames import pid_alive, this_host


def test_deal_largest_first_to_least_loaded():
    weights = [1, 10, 3, 7, 2, 2]
    bins = deal_balanced(weights, 2)
    assert sorted(i for b in bins for i in b) == list(range(6))  # every item exactly once
    loads = [sum(weights[i] for i in b) for b in bins]
    assert loads == [12, 13] or loads == [13, 12]
    assert 1 in bins[0]  # the largest item goes to rank 0 first
    assert deal_balanced(weights, 2) == bins  # deterministic
    # round-robin by name would give [1+3+2, 10+7+2] = [6, 19]
    assert max(loads) - min(loads) <= 1
    assert deal_balanced([], 3) == [[], [], []]
    assert deal_balanced([5, 5, 5, 5], 4) == [[0], [1], [2], [3]]
    with pytest.raises(ConfigError):
        deal_balanced([1], 0)


def test_parse_shard():
    assert parse_shard(None) is None
    s = parse_shard(" 3/16 ")
    assert (s.index, s.count) == (3, 16) and str(s) == "3/16"
    for bad in ("16/16", "-1/4", "a/b", "3", "1/0", "1/2/3"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)


def test_single_process_context(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = init_distributed("cpu")
    assert not ctx.distributed and ctx.is_main and env_world_size() == 1


def test_lock_excludes_then_releases(tmp_path):
    first = try_lock(tmp_path, "s1")
    assert isinstance(first, ItemLock)
    info = read_lock(tmp_path / "s1.lock")
    assert info.host == socket.gethostname() and info.pid == os.getpid() and info.start <= time.time()
    second = try_lock(tmp_path, "s1")
    assert isinstance(second, LockInfo) and second.pid == os.getpid()
    first.release()
    assert not (tmp_path / "s1.lock").exists()
    with item_lock(tmp_path, "s1") as again:
        assert isinstance(again, ItemLock)
    assert not (tmp_path / "s1.lock").exists()


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_locks_are_reclaimed(tmp_path):
    lock = tmp_path / "s1.lock"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid(), "start": time.time(), "token": "x"}))
    assert is_stale(read_lock(lock))
    got = try_lock(tmp_path, "s1")
    assert isinstance(got, ItemLock) and read_lock(lock).token == got.token
    got.release()
    # another host's job that stopped beating: stale only after the timeout
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "start": time.time() - 100, "token": "y"}))
    os.utime(lock, (time.time() - 100, time.time() - 100))
    assert isinstance(try_lock(tmp_path, "s1", stale_after=1000), LockInfo)
    got = try_lock(tmp_path, "s1", stale_after=50)
    assert isinstance(got, ItemLock)
    got.release()
    # a half-written lock (killed while writing) is judged by its age
    lock.write_text("{")
    os.utime(lock, (time.time() - 100, time.time() - 100))
    assert isinstance(try_lock(tmp_path, "s1", stale_after=50), ItemLock)
    assert not [p for p in tmp_path.iterdir() if ".stale-" in p.name]


def test_temporary_names_carry_host_pid_and_random(tmp_path):
    a, b = tmp_path_for(tmp_path / "x.h5"), tmp_path_for(tmp_path / "x.h5")
    assert a != b and a.suffix == ".h5" and a.name.startswith(".x.tmp-")
    assert f"-{os.getpid()}-" in a.name
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "y.h5") as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_stale_temporaries_are_those_of_dead_or_own_writers(tmp_path):
    host = this_host()
    target = tmp_path / "x.h5"
    dead = tmp_path / f".x.tmp-{_dead_pid()}-{host}-0123abcd.h5"
    own = tmp_path / f".x.tmp-{os.getpid()}-{host}-4567abcd.h5"  # an earlier write of this very process
    live = tmp_path / f".x.tmp-{os.getppid()}-{host}-89abcdef.h5"  # a running writer
    remote = tmp_path / f".x.tmp-{_dead_pid()}-elsewhere-0a1b2c3d.h5"  # another node's: cannot tell
    for p in (dead, own, live, remote):
        p.write_bytes(b"partial")
    assert pid_alive(os.getpid()) and pid_alive(os.getppid()) and not pid_alive(_dead_pid())
    assert sorted(remove_stale_temporaries(target)) == sorted([dead, own])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, remote.name])
