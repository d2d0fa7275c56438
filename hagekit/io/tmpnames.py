"""Names of unfinished outputs (``.X.tmp-<pid>.h5``, ``.X.part``) and the final names they stand for.

Kept apart from :mod:`hagekit.io.atomic` so that :mod:`hagekit.errors` can report a temporary
under its final name without importing the writer (no import circle).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["TMP_NAME", "tmp_path_for", "is_temporary", "public_path"]

#: ``.<stem>.tmp-<tag><suffix>`` (files) or ``.<name>.tmp-<tag>`` (folders); ``<tag>`` starts with the pid.
TMP_NAME = re.compile(r"^\.(?P<stem>.+)\.tmp-(?P<tag>[A-Za-z0-9_-]+)(?P<suffix>\.[^.]*)?$")


def tmp_path_for(path: Path) -> Path:
    """The temporary sibling used while ``path`` is being written (keeps the suffix)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


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
