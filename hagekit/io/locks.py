"""Per-item lock files, so jobs sharing one output folder never compute an item twice.

``<folder>/<name>.lock`` is created with ``O_EXCL`` and holds JSON (host, pid, start time);
while held, a heartbeat thread touches it. A lock is stale, and is reclaimed, when its
process is dead on this host or when its heartbeat is older than ``stale_after`` seconds
(a crashed job on another node). Reclaiming renames the stale file first, so two jobs
cannot both take it over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hagekit.io.tmpnames import pid_alive

__all__ = ["ItemLock", "LockInfo", "try_lock", "item_lock", "wait_lock", "each_locked", "read_lock", "is_stale",
           "DEFAULT_STALE_S"]

log = logging.getLogger(__name__)

#: A lock whose heartbeat is older than this (seconds) belongs to a dead job.
DEFAULT_STALE_S = 600.0
_HEARTBEAT_S = 30.0


@dataclass(frozen=True)
class LockInfo:
    """Who holds a lock: host, pid, start time (epoch s), a unique token, last heartbeat."""

    host: str
    pid: int
    start: float
    token: str
    heartbeat: float

    def describe(self) -> str:
        return f"{self.host}:{self.pid} since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.start))}"


def read_lock(path: Path) -> LockInfo | None:
    """The lock's holder, or None when the file vanished; unreadable content counts as start 0."""
    try:
        text = path.read_text(encoding="utf-8")
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        data: dict[str, Any] = json.loads(text)
        return LockInfo(str(data["host"]), int(data["pid"]), float(data["start"]), str(data["token"]), mtime)
    except (ValueError, KeyError, TypeError):  # half-written by a killed job
        return LockInfo("?", -1, 0.0, "", mtime)


def is_stale(info: LockInfo, *, stale_after: float = DEFAULT_STALE_S, now: float | None = None) -> bool:
    """True when the holder is dead on this host, or silent for more than ``stale_after`` s."""
    now = time.time() if now is None else now
    if info.host == socket.gethostname() and info.pid > 0 and not pid_alive(info.pid):
        return True
    return now - max(info.start, info.heartbeat) > stale_after


class ItemLock:
    """A held lock: ``release()`` (or leaving ``item_lock``) removes it; a thread keeps it fresh."""

    def __init__(self, path: Path, token: str) -> None:
        self.path = path
        self.token = token
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lock-{path.name}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(_HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if it is still ours."""
        self._stop.set()
        self._thread.join(timeout=5)
        info = read_lock(self.path)
        if info is not None and info.token == self.token:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def _create(path: Path) -> str | None:
    token = uuid.uuid4().hex
    payload = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "start": time.time(), "token": token})
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())
    return token


def _reclaim(path: Path, seen: LockInfo) -> bool:
    """Move a stale lock aside; False when another job changed it first."""
    aside = path.with_name(f".{path.name}.stale-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return True  # someone else reclaimed (or released) it: try to create ours
    moved = read_lock(aside)
    if moved is not None and moved.token != seen.token:  # a fresh lock slipped in: put it back
        with contextlib.suppress(OSError):
            os.link(aside, path)
        with contextlib.suppress(OSError):
            aside.unlink()
        return False
    with contextlib.suppress(OSError):
        aside.unlink()
    log.warning("reclaimed stale lock %s (held by %s)", path, seen.describe())
    return True


def try_lock(folder: Path, name: str, *, stale_after: float = DEFAULT_STALE_S) -> ItemLock | LockInfo:
    """Take ``<folder>/<name>.lock``: an :class:`ItemLock`, or the live holder's :class:`LockInfo`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.lock"
    for _ in range(3):
        token = _create(path)
        if token is not None:
            return ItemLock(path, token)
        info = read_lock(path)
        if info is None:
            continue  # released meanwhile
        if not is_stale(info, stale_after=stale_after):
            return info
        if not _reclaim(path, info):
            current = read_lock(path)
            if current is not None:
                return current
    info = read_lock(path)
    return info if info is not None else LockInfo("?", -1, 0.0, "", 0.0)


@contextlib.contextmanager
def item_lock(folder: Path, name: str, *, stale_after: float = DEFAULT_STALE_S) -> Iterator[ItemLock | LockInfo]:
    """Context manager around :func:`try_lock`; a held lock is released on exit (even on error)."""
    got = try_lock(folder, name, stale_after=stale_after)
    try:
        yield got
    finally:
        if isinstance(got, ItemLock):
            got.release()


@contextlib.contextmanager
def wait_lock(folder: Path, name: str, *, stale_after: float = DEFAULT_STALE_S,
              on_wait: Callable[[LockInfo], None] | None = None) -> Iterator[ItemLock]:
    """Hold ``<folder>/<name>.lock``, waiting while another live process holds it (``on_wait``
    is told once who); the caller then rechecks whether that process already made the item."""
    delay, told = 0.1, False
    while True:
        got = try_lock(folder, name, stale_after=stale_after)
        if isinstance(got, ItemLock):
            break
        if on_wait is not None and not told:
            on_wait(got)
            told = True
        time.sleep(delay)
        delay = min(2.0, delay * 1.5)
    try:
        yield got
    finally:
        got.release()


T = TypeVar("T")


def each_locked(items: Iterable[T], folder: Callable[[T], Path], name: Callable[[T], str],
                work: Callable[[T], None], *, on_wait: Callable[[LockInfo], None] | None = None) -> None:
    """``work(item)`` for every item under its lock (as extraction divides its items): an item
    another process holds is put off and done after its lock frees, when ``work`` (which must
    recheck for a finished output) usually finds it made. Processes sharing a folder so make
    each item once, and each returns only when every item exists."""
    waiting: list[T] = []
    for item in items:
        got = try_lock(folder(item), name(item))
        if not isinstance(got, ItemLock):
            waiting.append(item)
            continue
        try:
            work(item)
        finally:
            got.release()
    for item in waiting:
        with wait_lock(folder(item), name(item), on_wait=on_wait):
            work(item)
