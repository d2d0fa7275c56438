"""Atomic outputs: write to ``.<name>.tmp-<host>-<pid>-<random>`` beside the target, then ``os.replace``.

A crash or Ctrl-C never leaves a half-written file under the final name, and a rerun can
trust that every existing output is complete. Temporaries are hidden (leading dot): readers
list inputs with :func:`visible_files`, which never returns one, and a writer removes the
stale temporaries of its target left by a killed process (``SIGKILL``, power loss).
OS errors raised while writing (h5py and safetensors included) are re-raised as
:class:`OSError` naming the final path, so the CLI can print one line.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hagekit.io.tmpnames import TMP_NAME as _TMP_NAME
from hagekit.io.tmpnames import (
    is_temporary,
    pid_alive,
    public_path,
    tag_owner,
    this_host,
    tmp_path_for,
    tmp_tag,
)

__all__ = [
    "atomic_path",
    "atomic_dir",
    "write_text",
    "write_json",
    "tmp_path_for",
    "is_temporary",
    "public_path",
    "visible_files",
    "remove_stale_temporaries",
    "check_output_file",
    "check_output_dir",
]

log = logging.getLogger(__name__)

def visible_files(folder: Path | str, pattern: str) -> list[Path]:
    """``sorted(folder.glob(pattern))`` without hidden names, so temporaries are never read as inputs."""
    folder = Path(folder)
    return sorted(p for p in folder.glob(pattern) if not any(part.startswith(".") for part in p.relative_to(folder).parts))


def remove_stale_temporaries(path: Path | str) -> list[Path]:
    """Delete ``path``'s temporaries whose writer (pid on this host) no longer runs; return them."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    removed = []
    for cand in path.parent.glob(f".{glob.escape(path.stem)}*.tmp-*"):
        m = _TMP_NAME.match(cand.name)
        if m is None or public_path(cand) != path:
            continue
        pid, host = tag_owner(m.group("tag"))
        # another node's writer may be alive; one of this process's is a leftover of an earlier write
        if pid is None or host != this_host() or (pid != os.getpid() and pid_alive(pid)):
            continue
        if cand.is_dir() and not cand.is_symlink():
            shutil.rmtree(cand, ignore_errors=True)
        else:
            cand.unlink(missing_ok=True)
        removed.append(cand)
        log.info("%s: removed the temporary %s left by an interrupted run", path, cand.name)
    return removed


def _current_umask() -> int:
    """The process umask (Linux: read from /proc, so no other thread sees a changed umask)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _honour_umask(tmp: Path) -> None:
    """Give a finished file at least the mode every other output gets (0666 less the umask): some writers
    (safetensors' ``save_file``) create theirs 0600, which a group-shared workspace cannot read."""
    with contextlib.suppress(OSError):
        if tmp.is_file() and not tmp.is_symlink():
            mode = os.stat(tmp).st_mode & 0o7777
            want = mode | (0o666 & ~_current_umask())
            if want != mode:
                os.chmod(tmp, want)


def _release(tmp: Path) -> None:
    """After a failed write, give the temporary's space back at once (a full disk needs it)."""
    with contextlib.suppress(OSError):
        if tmp.is_file():
            os.truncate(tmp, 0)


def _reraise_as_os_error(exc: BaseException, path: Path) -> None:
    from hagekit.errors import os_error_from

    err = os_error_from(exc, path)
    if err is not None and err is not exc:
        raise err from exc


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path to write; rename it to ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = tmp_path_for(path)
    try:
        yield tmp
        _honour_umask(tmp)
        os.replace(tmp, path)
    except Exception as exc:
        _release(tmp)
        _reraise_as_os_error(exc, path)
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Yield a temporary directory; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp-{tmp_tag()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():  # a file (or link) where the folder belongs: replaced too
            path.unlink()
        os.replace(tmp, path)
    except Exception as exc:
        _reraise_as_os_error(exc, path)
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def check_output_file(path: Path | str, option: str) -> Path:
    """Refuse, before any work, a file output that is a folder or lies under a file."""
    from hagekit.errors import ConfigError

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a directory; give a file path")
    _check_parents(path, option)
    return path


def check_output_dir(path: Path | str, option: str) -> Path:
    """Refuse, before any work, a folder output that is an existing file or lies under a file."""
    from hagekit.errors import ConfigError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path}: is a file; give a folder")
    _check_parents(path, option)
    return path


def _check_parents(path: Path, option: str) -> None:
    from hagekit.errors import ConfigError

    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{option} {path}: {parent} is a file, not a folder")
            return


def write_text(path: Path | str, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: Path | str, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (NaN becomes ``null``)."""
    return write_text(path, json.dumps(jsonable(obj), indent=2, sort_keys=False) + "\n")


def jsonable(obj: Any) -> Any:
    import math

    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
