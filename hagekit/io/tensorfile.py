"""Cheap structural check of a ``.safetensors`` file: header, dtypes, shapes and byte spans.

Resume uses it to trust a finished model file without importing torch or reading the data:
a truncated or overwritten file fails here with one line naming it.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

from hagekit.errors import DataError, at

__all__ = ["safetensors_shapes", "load_safetensors", "save_safetensors"]

_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}


def safetensors_shapes(path: Path | str) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of a safetensors file; raises :class:`DataError` if it is malformed."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise DataError(at(path, "not a safetensors file (truncated header)"))
            (n,) = struct.unpack("<Q", head)
            if n > size - 8 or n > 100_000_000:
                raise DataError(at(path, "not a safetensors file (header length out of range)"))
            header = json.loads(fh.read(n).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DataError(at(path, "not a safetensors file (unreadable header)")) from None
    if not isinstance(header, dict):
        raise DataError(at(path, "not a safetensors file (header is not a mapping)"))
    data_bytes = size - 8 - n
    shapes: dict[str, tuple[int, ...]] = {}
    end_max = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            shape = tuple(int(s) for s in info["shape"])
            start, end = (int(v) for v in info["data_offsets"])
            width = _DTYPE_BYTES[str(info["dtype"])]
        except (KeyError, TypeError, ValueError):
            raise DataError(at(path, f"tensor {name!r}: malformed header entry")) from None
        if end - start != math.prod(shape) * width or not 0 <= start <= end:
            raise DataError(at(path, f"tensor {name!r}: shape {shape} does not match its byte span"))
        end_max = max(end_max, end)
        shapes[name] = shape
    if end_max != data_bytes:
        raise DataError(at(path, f"truncated or padded: header describes {end_max:,} data bytes, file holds {data_bytes:,}"))
    return shapes


def _utf8(path: Path) -> bool:
    try:
        str(path).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def save_safetensors(tensors: dict[str, Any], path: Path | str, *, metadata: dict[str, str] | None = None) -> None:
    """Write torch tensors or numpy arrays (all of one kind) as safetensors, also under a path
    that is not valid UTF-8 (safetensors' ``save_file`` refuses one: the bytes are written here)."""
    import numpy as np

    path = Path(path)
    if metadata is not None:  # a value holding a non-UTF-8 path keeps its bytes as \\xff escapes
        metadata = {k: v.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                    for k, v in metadata.items()}
    numpy = all(isinstance(v, np.ndarray) for v in tensors.values())
    if numpy:
        from safetensors.numpy import save, save_file
    else:
        from safetensors.torch import save, save_file
    if _utf8(path):
        save_file(tensors, str(path), metadata=metadata)
    else:
        path.write_bytes(save(tensors, metadata=metadata))


def load_safetensors(path: Path | str, *, with_metadata: bool = False) -> Any:
    """The tensors of a safetensors file (torch, CPU), also under a path that is not valid UTF-8
    (safetensors' ``load_file``/``safe_open`` refuse such paths: the bytes are read here instead).
    With ``with_metadata``: ``(tensors, metadata)``."""
    path = Path(path)
    if _utf8(path):
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = dict(fh.metadata() or {})
            state = {k: fh.get_tensor(k) for k in fh.keys()}
    else:
        from safetensors.torch import load

        data = path.read_bytes()
        state = load(data)
        (n,) = struct.unpack("<Q", data[:8])
        meta = dict(json.loads(data[8:8 + n].decode("utf-8")).get("__metadata__") or {})
    return (state, meta) if with_metadata else state
