"""Pins for downloads whose source publishes no checksum: ``<out>/hagekit-download.lock.json``.

The first download of such a file records its name, URL, size, sha256 and date here (trust
on first use); every later ``data download`` into the same folder re-hashes the file and
refuses one that no longer matches its pin. A file whose manifest publishes a sha256 is
checked against that instead and needs no pin.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hagekit.errors import DataError, at

__all__ = ["LOCK_NAME", "Pin", "DownloadLock", "CHECKS"]

LOCK_NAME = "hagekit-download.lock.json"

#: What was checked, as ``data download`` prints it.
CHECKS = {
    "published": "verified against published sha256",
    "pinned": "pinned on first download",
    "pinned-present": "pinned on first use (file was already here)",
    "pin": "verified against pin",
}


@dataclass(frozen=True)
class Pin:
    """One pinned file: where it came from, its size, sha256 and when it was pinned (UTC)."""

    name: str
    url: str
    size: int
    sha256: str
    date: str


class DownloadLock:
    """The pins of one download folder (read once, written atomically after each new pin)."""

    def __init__(self, folder: Path | str) -> None:
        self.path = Path(folder) / LOCK_NAME
        self.pins: dict[str, Pin] = self._read()

    def _read(self) -> dict[str, Pin]:
        if not self.path.exists():
            return {}
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            files = raw["files"]
            pins = {name: Pin(name, str(v["url"]), int(v["size"]), str(v["sha256"]).lower(), str(v["date"]))
                    for name, v in files.items()}
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(at(self.path, f"not a readable download lock ({type(exc).__name__}); "
                                          "restore it or remove it to pin the files again")) from None
        return pins

    def get(self, name: str) -> Pin | None:
        return self.pins.get(name)

    def check(self, name: str, size: int, sha256: str, where: Path) -> None:
        """Refuse a file that differs from its pin (one line naming the file, the lock and both hashes)."""
        pin = self.pins.get(name)
        if pin is None or (pin.sha256 == sha256 and pin.size == size):
            return
        raise DataError(at(where, f"sha256 {sha256[:16]}… ({size:,} bytes) differs from the pin {pin.sha256[:16]}… "
                                  f"({pin.size:,} bytes, pinned {pin.date}) in {self.path}; if the source changed on "
                                  f"purpose, remove the entry {name!r} from the lock and rerun"))

    def record(self, name: str, url: str, size: int, sha256: str) -> Pin:
        """Pin a file now and write the lock atomically."""
        from hagekit.io.atomic import write_text

        date = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        pin = Pin(name, url, int(size), sha256.lower(), date)
        self.pins[name] = pin
        body: dict[str, Any] = {
            "format": 1,
            "note": "sha256 of each downloaded file, pinned on first download; hagekit data download verifies them",
            "files": {n: {"url": p.url, "size": p.size, "sha256": p.sha256, "date": p.date}
                      for n, p in sorted(self.pins.items())},
        }
        write_text(self.path, json.dumps(body, indent=2) + "\n")
        return pin
