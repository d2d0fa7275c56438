"""Error types: every user-facing failure is a :class:`HagekitError` with a one-line message.

Messages name the file or option first, then the problem, then (where useful) the valid
choices, so that the CLI can print them as one red line and exit with code 2.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

__all__ = [
    "HagekitError",
    "ConfigError",
    "DataError",
    "ProvenanceError",
    "EncoderError",
    "TrainingError",
    "check_finite_loss",
    "at",
    "FATAL_ERRNOS",
    "is_fatal_os_error",
    "os_error_from",
    "os_error_message",
]


class HagekitError(Exception):
    """Base class for errors caused by user input (bad files, options, pairings)."""


class ConfigError(HagekitError):
    """An option or config file value is invalid or inconsistent."""


class DataError(HagekitError):
    """An input file or folder is missing, unreadable or malformed."""


class ProvenanceError(HagekitError):
    """Two inputs do not belong together (other panel, encoder, section or leak)."""


class EncoderError(HagekitError):
    """An encoder name, its weights or its configuration is invalid."""


class TrainingError(HagekitError):
    """Training diverged (non-finite loss or predictions); nothing of that trial is saved."""


def check_finite_loss(loss: float, epoch: int) -> None:
    """Stop training at the first epoch whose mean loss is NaN or infinite."""
    import math

    if not math.isfinite(loss):
        raise TrainingError(f"epoch {epoch}: training loss is {loss} (diverged; lower --lr or check the inputs)")


def at(path: Path | str, problem: str) -> str:
    """Format ``"<path>: <problem>"``, the house style for messages about a file."""
    return f"{path}: {problem}"


# OS errors -----------------------------------------------------------------------------------

#: errno -> the problem as a user reads it (``"<path>: <problem>"``).
_OS_PROBLEMS = {
    errno.EACCES: "permission denied (choose a folder you can write, e.g. another --out)",
    errno.EPERM: "operation not permitted (choose a folder you can write, e.g. another --out)",
    errno.EROFS: "read-only file system (choose a writable folder, e.g. another --out)",
    errno.EISDIR: "is a directory, expected a file (give a file path)",
    errno.ENOTDIR: "a parent of this path is a file, not a directory",
    errno.EEXIST: "already exists",
    errno.ENOENT: "no such file or directory",
    errno.ENAMETOOLONG: "file name too long",
    errno.EDQUOT: "disk quota exceeded (free space or choose another folder)",
    errno.EMFILE: "too many open files (raise `ulimit -n`)",
    errno.EIO: "input/output error (failing disk or network file system?)",
}

#: Errors after which no further item of a batch can succeed: stop the command, not just the item.
FATAL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})

_NAME_IN_MESSAGE = re.compile(r"\b(?:file)?name = '([^']+)'")
_OS_CODE_IN_MESSAGE = re.compile(r"(?:os error|code:)\s*(\d+)")


def os_error_from(exc: BaseException, path: Path | str | None = None) -> OSError | None:
    """``exc`` as an :class:`OSError` with an errno and a file name, or ``None`` if it is no OS error.

    Understands plain OS errors, h5py's (errno set, file name only inside the message) and
    safetensors' (``"... (os error 28)"``); ``path`` names the file when the error does not.
    """
    if isinstance(exc, (OSError, RuntimeError)) and "errno = " in str(exc):  # h5py: errno inside the message
        m = re.search(r"errno = (\d+)", str(exc))
        code = exc.errno if isinstance(exc, OSError) and exc.errno else (int(m.group(1)) if m else None)
        name = exc.filename if isinstance(exc, OSError) else None
    elif isinstance(exc, OSError):
        code = exc.errno
        name = exc.filename
    elif type(exc).__name__ == "SafetensorError":
        m = _OS_CODE_IN_MESSAGE.search(str(exc))
        code, name = (int(m.group(1)) if m else None), None
    else:
        return None
    if code is None:
        return None
    if name is None:
        m = _NAME_IN_MESSAGE.search(str(exc))
        name = m.group(1) if m else (str(path) if path is not None else None)
    if isinstance(exc, OSError) and exc.filename == name and exc.errno == code:
        return exc
    return OSError(code, os.strerror(code), name)


def is_fatal_os_error(exc: BaseException) -> bool:
    """True for errors that doom every later item too (disk full, quota, read-only file system)."""
    err = os_error_from(exc)
    return err is not None and err.errno in FATAL_ERRNOS


def os_error_message(exc: BaseException) -> str | None:
    """One line naming the path for an OS error (``None`` when ``exc`` is not one).

    ``ENOSPC`` reads ``"no space left on <path>"``; the others ``"<path>: <problem>"``.
    Temporary names (``.X.tmp-<pid>.h5``) are reported as the final name the user asked for.
    """
    err = os_error_from(exc)
    if err is None:
        return None
    name = _public_name(err.filename) if err.filename is not None else None
    if err.errno == errno.ENOSPC:
        return f"no space left on {name or 'device'} (free some space or choose another folder)"
    problem = _OS_PROBLEMS.get(err.errno, (err.strerror or str(err)).lower())
    return at(name, problem) if name else problem


def _public_name(name: str | bytes | int) -> str:
    from hagekit.io.tmpnames import public_path

    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    return str(public_path(Path(str(name))))
