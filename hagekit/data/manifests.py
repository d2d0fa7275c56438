"""Dataset and weight manifests: where a source lives, its files, checksums, licence, citation.

One YAML per source in ``hagekit/data_manifests/`` (also reachable as the top-level
``data_manifests/``). Schema::

    name: her2st                 # what `hagekit data download NAME` takes
    kind: dataset | weights
    title, homepage, licence, citation, access (open | gated | registration)
    files:                       # what `download` fetches, in order
      - name: relative/path      # where it lands under --out
        url: https://...
        sha256: <hex> | null     # null: not published; the computed hash is reported
        size: <bytes> | null
        extract: true | false    # unpack a .zip/.tar(.gz) after verification
    layout: |                    # the expected layout after download (free text)
    prepare: hagekit data prepare ...   # the next command, if any
    notes: |
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hagekit.errors import ConfigError, DataError, at
from hagekit.io.paths import name_problem

__all__ = ["Manifest", "ManifestFile", "manifests_dir", "list_manifests", "load_manifest", "parse_manifest"]

_KINDS = ("dataset", "weights")
_ACCESS = ("open", "gated", "registration")


@dataclass(frozen=True)
class ManifestFile:
    """One downloadable file of a manifest."""

    name: str
    url: str
    sha256: str | None = None
    size: int | None = None
    extract: bool = False


@dataclass(frozen=True)
class Manifest:
    """A parsed, validated manifest."""

    name: str
    kind: str
    title: str
    licence: str
    citation: str
    homepage: str = ""
    access: str = "open"
    files: tuple[ManifestFile, ...] = ()
    layout: str = ""
    prepare: str = ""
    notes: str = ""
    path: Path | None = field(default=None, compare=False)


def manifests_dir() -> Path:
    """The folder of the built-in manifests (package data)."""
    return Path(__file__).resolve().parent.parent / "data_manifests"


def list_manifests() -> list[Manifest]:
    """Every built-in manifest, sorted by name."""
    return [load_manifest(p) for p in sorted(manifests_dir().glob("*.yaml"))]


def load_manifest(name_or_path: str | Path) -> Manifest:
    """Load a built-in manifest by name (``her2st``) or any manifest YAML by path."""
    import yaml

    path = Path(name_or_path)
    if isinstance(name_or_path, Path) and path.is_dir():
        raise DataError(at(path, "is a directory, expected a manifest YAML file"))
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        if path.suffix in (".yaml", ".yml") or "/" in str(name_or_path):
            raise DataError(at(path, "manifest file not found"))
        key = str(name_or_path).strip().lower()
        path = manifests_dir() / f"{key}.yaml"
        if not path.is_file():
            valid = ", ".join(sorted(p.stem for p in manifests_dir().glob("*.yaml")))
            raise ConfigError(f"NAME: unknown manifest {str(name_or_path)!r} (valid choices: {valid})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DataError(at(path, f"not valid YAML ({str(exc).splitlines()[0]})")) from None
    return parse_manifest(raw, path)


def parse_manifest(raw: Any, path: Path) -> Manifest:
    """Validate a manifest mapping; raise :class:`DataError` naming the file and key."""
    if not isinstance(raw, dict):
        raise DataError(at(path, "a manifest must be a YAML mapping"))
    for key in ("name", "kind", "title", "licence", "citation"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise DataError(at(path, f"'{key}' is missing or empty"))
    problem = name_problem(raw["name"].strip())
    if problem:
        raise DataError(at(path, f"name {raw['name']!r} {problem} (it names the download folder)"))
    if raw["kind"] not in _KINDS:
        raise DataError(at(path, f"kind {raw['kind']!r} is not valid (valid choices: {', '.join(_KINDS)})"))
    access = raw.get("access", "open")
    if access not in _ACCESS:
        raise DataError(at(path, f"access {access!r} is not valid (valid choices: {', '.join(_ACCESS)})"))
    files = []
    seen: set[str] = set()
    for k, entry in enumerate(raw.get("files") or []):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not isinstance(entry.get("url"), str):
            raise DataError(at(path, f"files[{k}] needs 'name' and 'url' strings"))
        name = entry["name"]
        problem = name_problem(name, nested=True)
        if problem:
            raise DataError(at(path, f"files[{k}].name {name!r} {problem}; it must be a relative path without '..' inside --out"))
        if name in seen:
            raise DataError(at(path, f"files[{k}].name {name!r} listed twice"))
        seen.add(name)
        if not re.match(r"^(https?|file)://", entry["url"]):
            raise DataError(at(path, f"files[{k}].url must be http(s):// or file://"))
        sha = entry.get("sha256")
        if sha is not None and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-fA-F]{64}", sha)):
            raise DataError(at(path, f"files[{k}].sha256 must be 64 hex digits or null"))
        size = entry.get("size")
        if size is not None and not (isinstance(size, int) and size >= 0):
            raise DataError(at(path, f"files[{k}].size must be a non-negative integer or null"))
        files.append(
            ManifestFile(name=name, url=entry["url"], sha256=sha.lower() if sha else None, size=size, extract=bool(entry.get("extract", False)))
        )
    return Manifest(
        name=raw["name"].strip(),
        kind=raw["kind"],
        title=raw["title"].strip(),
        licence=raw["licence"].strip(),
        citation=" ".join(raw["citation"].split()),
        homepage=str(raw.get("homepage", "") or ""),
        access=access,
        files=tuple(files),
        layout=str(raw.get("layout", "") or ""),
        prepare=str(raw.get("prepare", "") or ""),
        notes=str(raw.get("notes", "") or ""),
        path=path,
    )
