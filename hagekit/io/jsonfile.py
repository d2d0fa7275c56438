"""Reading the JSON files hagekit and other tools write (run configs, summaries, metrics,
estimator metadata, HEST metadata, scale factors, sidecars), once.

A missing (when ``missing`` says why it matters), undecodable or non-object file is a
:class:`~hagekit.errors.DataError` of one line naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hagekit.errors import DataError, at

__all__ = ["read_json_object"]


def read_json_object(path: Path | str, *, missing: str | None = None, what: str = "a JSON object file") -> dict[str, Any]:
    """The JSON object in ``path``.

    ``missing`` is the hint given when the file does not exist (else the OS error stands);
    ``what`` names the expected content when the file holds another JSON value.
    """
    path = Path(path)
    if missing is not None and not path.is_file():
        raise DataError(at(path, missing))
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(at(path, f"not valid JSON ({getattr(exc, 'msg', None) or exc})")) from None
    if not isinstance(value, dict):
        raise DataError(at(path, f"not {what} (expected a JSON object)"))
    return value
