"""Names that come from data or a flag and become paths: checked to stay inside their folder.

A slide id in a labels CSV, a gene symbol, a spot barcode, a run ``--name`` or a manifest's
file name is joined to a folder only through :func:`child_path`, which refuses absolute
paths, ``..``, ``.``, empty parts, backslashes and NUL bytes in one line. The check is
lexical (symbolic links the user made inside the folder are theirs to follow).
"""

from __future__ import annotations

from pathlib import Path

from hagekit.errors import ConfigError, DataError, at

__all__ = ["child_path", "name_problem"]


def name_problem(name: object, *, nested: bool = False) -> str | None:
    """Why ``name`` cannot be a file name inside a folder (``None`` when it can).

    ``nested`` allows ``a/b`` (relative, ``/``-separated, no ``.``/``..``/empty part).
    """
    if not isinstance(name, str) or not name:
        return "is empty"
    if "\x00" in name:
        return "contains a NUL byte"
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/"):
        return "is an absolute path"
    parts = name.split("/")
    if len(parts) > 1 and not nested:
        return "contains '/' (must be one name, not a path)"
    if any(p in ("", ".", "..") for p in parts):
        return "would leave its folder ('.', '..' or an empty part)"
    return None


def child_path(
    root: Path | str, name: str, *, what: str, nested: bool = False, source: Path | str | None = None
) -> Path:
    """``root / name`` when ``name`` stays inside ``root``; else one line naming ``what``.

    ``what`` names the name's origin (``"--name"``, ``"gene symbol"``); ``source`` the file it
    came from (a :class:`DataError` then, else a :class:`ConfigError` about a flag).
    """
    problem = name_problem(name, nested=nested)
    if problem is None:
        return Path(root) / name
    message = f"{what} {name!r} {problem}; refused as a path under {root}"
    if source is not None:
        raise DataError(at(source, message))
    raise ConfigError(message)
