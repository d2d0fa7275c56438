"""Names of unfinished outputs (``.X.tmp-<pid>.h5``, ``.X.part``) and the final names they stand for.

Kept apart from :mod:`hagekit.io.atomic` so that :mod:`hagekit.errors` can report a temporary
under its final name without importing the writer (no import circle).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = [
    "TMP_NAME", "tmp_path_for", "tmp_tag", "tag_owner", "this_host", "pid_alive", "is_temporary", "public_path",
]

#: ``.<stem>.tmp-<tag><suffix>`` (files) or ``.<name>.tmp-<tag>`` (folders); ``<tag>`` is
#: ``<pid>-<host>-<random>`` (older files: ``<pid>`` alone).
TMP_NAME = re.compile(r"^\.(?P<stem>.+)\.tmp-(?P<tag>[A-Za-z0-9_-]+)(?P<suffix>\.[^.]*)?$")


def this_host() -> str:
    """This machine's name as it appears in temporary names (letters, digits, ``-``, ``_``)."""
    import socket

    return "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())[:32]


def tmp_tag() -> str:
    """``<pid>-<host>-<random>``: unique across the nodes and jobs that share one output folder."""
    import uuid

    return f"{os.getpid()}-{this_host()}-{uuid.uuid4().hex[:8]}"


def tag_owner(tag: str) -> tuple[int | None, str]:
    """(pid, host) of a temporary's tag; a bare ``<pid>`` tag is taken as this host's."""
    m = re.match(r"^(\d+)(?:-(.*)-[0-9a-f]{8})?$", tag)
    if m is None:
        return None, ""
    return int(m.group(1)), m.group(2) if m.group(2) is not None else this_host()


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` runs on this host (one owned by another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def tmp_path_for(path: Path) -> Path:
    """The temporary sibling used while ``path`` is being written (keeps the suffix)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp-{tmp_tag()}{path.suffix}")


def is_temporary(path: Path | str) -> bool:
    """True for names hagekit writes while an output is unfinished (``.X.tmp-<pid>.h5``, ``.X.part``)."""
    name = Path(path).name
    return name.startswith(".") and (TMP_NAME.match(name) is not None or name.endswith(".part"))


def public_path(path: Path) -> Path:
    """The final name a temporary stands for (``.A1.tmp-42.h5ad`` -> ``A1.h5ad``, in every part)."""
    parts = []
    for part in Path(path).parts:
        m = TMP_NAME.match(part)
        parts.append(part if m is None else m.group("stem") + (m.group("suffix") or ""))
    return Path(*parts) if parts else Path(path)
