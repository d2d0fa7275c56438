"""Reading the JSON files hagekit writes (run configs, summaries, estimator metadata), once.

A missing, undecodable or non-object file is a :class:`DataError` of one line naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hagekit.errors import DataError, at

__all__ = ["read_json_object"]


def read_json_object(path: Path | str, *, missing: str) -> dict[str, Any]:
    """The JSON object in ``path``; ``missing`` is the hint given when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        raise DataError(at(path, missing))
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(at(path, f"not valid JSON ({getattr(exc, 'msg', exc)})")) from None
    if not isinstance(value, dict):
        raise DataError(at(path, "expected a JSON object"))
    return value
