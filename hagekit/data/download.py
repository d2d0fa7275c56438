"""Resumable, verified downloads of the files a manifest lists.

Each file streams into ``.<name>.part`` beside its target; a rerun resumes it with an HTTP
``Range`` request. The sha256 (when the manifest publishes one) and size are checked before
the part is renamed to its final name, so a final name always holds a complete, verified
file. Archives marked ``extract`` are unpacked safely (no absolute paths, no ``..``, no links
leaving the folder) into a temporary folder that is renamed when complete.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tarfile
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from hagekit.data.manifests import Manifest, ManifestFile
from hagekit.errors import ConfigError, DataError, at
from hagekit.progress import Reporter, reporter_or_null

__all__ = ["DownloadedFile", "DownloadResult", "download", "download_file", "safe_extract", "sha256_file"]

log = logging.getLogger(__name__)

CHUNK = 1 << 20


@dataclass(frozen=True)
class DownloadedFile:
    """One file: where it is, its size and sha256, and what happened (downloaded, resumed, present)."""

    name: str
    path: Path
    size: int
    sha256: str
    status: str
    verified: bool


@dataclass
class DownloadResult:
    """The outcome of :func:`download`."""

    name: str
    folder: Path
    files: list[DownloadedFile] = field(default_factory=list)

    @property
    def unverified(self) -> list[DownloadedFile]:
        return [f for f in self.files if not f.verified]


def sha256_file(path: Path, *, start: Any = None) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = start or hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _part_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.part")


def _headers(url: str) -> dict[str, str]:
    headers = {"User-Agent": "hagekit-download"}
    host = urlparse(url).hostname or ""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token and host.endswith("huggingface.co"):
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _expected_size(headers: Any, have: int) -> int | None:
    """Full file size the server announces: ``Content-Range`` total, else ``have`` + ``Content-Length``."""
    rng = headers.get("Content-Range") or ""
    total = rng.rpartition("/")[2].strip()
    if total.isdigit():
        return int(total)
    length = (headers.get("Content-Length") or "").strip()
    return have + int(length) if length.isdigit() else None


def download_file(
    entry: ManifestFile, target: Path, *, progress: Reporter | None = None, timeout: float = 60.0
) -> DownloadedFile:
    """Download one manifest file to ``target`` with resume and checksum verification."""
    import http.client
    import urllib.error
    import urllib.request

    target = Path(target)
    if target.is_file():
        digest = sha256_file(target)
        if entry.sha256 and digest != entry.sha256:
            raise DataError(
                at(target, f"exists but its sha256 {digest[:12]}… differs from the manifest's {entry.sha256[:12]}…; delete it and rerun")
            )
        return DownloadedFile(entry.name, target, target.stat().st_size, digest, "present", bool(entry.sha256))
    target.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(target)
    have = part.stat().st_size if part.is_file() else 0
    headers = _headers(entry.url)
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(entry.url, headers=headers)
    status = "downloaded"
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - manifest URLs are http(s)/file
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part already holds every byte
            response = None
        elif exc.code in (401, 403):
            raise DataError(
                f"{entry.url}: HTTP {exc.code}: access denied (gated source: accept its licence on the website and set HF_TOKEN)"
            ) from None
        else:
            raise DataError(f"{entry.url}: HTTP {exc.code} {exc.reason}; rerun to retry (partial data is kept)") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DataError(f"{entry.url}: download failed ({getattr(exc, 'reason', exc)}); rerun to resume") from None
    h = hashlib.sha256()
    total: int | None = None
    if response is not None:
        with response:
            code = getattr(response, "status", None) or response.getcode()
            if have and code == 206:
                status = "resumed"
                sha256_file(part, start=h)
                mode = "ab"
            else:
                have = 0
                mode = "wb"
            total = _expected_size(response.headers, have) or entry.size
            task = reporter_or_null(progress).task(f"download {entry.name}", total=total)
            task.advance(have)
            try:
                with part.open(mode) as out:
                    for chunk in iter(lambda: response.read(CHUNK), b""):
                        out.write(chunk)
                        h.update(chunk)
                        task.advance(len(chunk))
            except (OSError, TimeoutError, http.client.HTTPException) as exc:
                raise DataError(f"{entry.url}: connection lost ({exc}); rerun to resume") from None
            finally:
                task.close()
    else:
        status = "resumed"
        sha256_file(part, start=h)
    digest = h.hexdigest()
    size = part.stat().st_size
    if response is not None and total is not None and size != total:
        if size > total:
            part.unlink()
            raise DataError(at(target, f"received {size:,} bytes but the server announced {total:,} (download discarded); rerun"))
        raise DataError(
            f"{entry.url}: connection closed after {size:,} of {total:,} bytes; "
            f"the partial file {part} is kept: rerun to resume"
        )
    if entry.size is not None and size != entry.size:
        if size > entry.size:
            part.unlink()
        raise DataError(
            at(target, f"size {size:,} bytes != the manifest's {entry.size:,}" + ("; rerun to resume" if size < entry.size else ""))
        )
    if entry.sha256 and digest != entry.sha256:
        part.unlink()
        raise DataError(at(target, f"checksum mismatch: sha256 {digest[:16]}… != the manifest's {entry.sha256[:16]}… (download discarded)"))
    os.replace(part, target)
    if not entry.sha256:
        log.warning("%s: no published checksum; sha256 is %s", target, digest)
    return DownloadedFile(entry.name, target, size, digest, status, bool(entry.sha256))


def _member_ok(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return not p.is_absolute() and ".." not in p.parts and not (p.parts and p.parts[0].endswith(":"))


def safe_extract(archive: Path, dest: Path) -> Path:
    """Unpack a .zip/.tar(.gz/.bz2/.xz) into folder ``dest`` (or gunzip a lone .gz to file ``dest``).

    Atomic: ``dest`` appears only when complete. Absolute paths, ``..`` and links are refused.
    """
    import gzip

    from hagekit.io.atomic import atomic_dir, atomic_path

    archive = Path(archive)
    if dest.exists():
        log.info("%s: already extracted, kept", dest)
        return dest
    try:
        is_zip, is_tar = zipfile.is_zipfile(archive), tarfile.is_tarfile(archive)
    except (OSError, EOFError, tarfile.TarError, zlib.error) as exc:
        raise DataError(at(archive, f"corrupt or truncated archive ({exc or type(exc).__name__}); delete it and rerun")) from None
    if not is_zip and not is_tar and archive.name.lower().endswith(".gz"):
        try:
            with gzip.open(archive, "rb") as src, atomic_path(dest) as tmp, tmp.open("wb") as out:
                for chunk in iter(lambda: src.read(CHUNK), b""):
                    out.write(chunk)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(at(archive, f"corrupt gzip file ({exc})")) from None
        return dest
    with atomic_dir(dest) as tmp:
        if is_zip:
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    if not _member_ok(info.filename):
                        raise DataError(at(archive, f"unsafe path in archive: {info.filename!r}"))
                    mode = (info.external_attr >> 16) & 0o170000
                    if mode == 0o120000:
                        raise DataError(at(archive, f"archive holds a symbolic link: {info.filename!r}"))
                try:
                    zf.extractall(tmp)
                except (zipfile.BadZipFile, OSError) as exc:
                    raise DataError(at(archive, f"corrupt zip archive ({exc})")) from None
        elif is_tar:
            try:
                with tarfile.open(archive) as tf:
                    members = tf.getmembers()
                    for m in members:
                        if not _member_ok(m.name):
                            raise DataError(at(archive, f"unsafe path in archive: {m.name!r}"))
                        if m.issym() or m.islnk():
                            raise DataError(at(archive, f"archive holds a link: {m.name!r}"))
                        if not (m.isfile() or m.isdir()):
                            raise DataError(at(archive, f"archive holds a special file: {m.name!r}"))
                    if hasattr(tarfile, "data_filter"):
                        tf.extractall(tmp, members=members, filter="data")
                    else:  # pragma: no cover - Python < 3.11.4; members were checked above
                        tf.extractall(tmp, members=members)
            except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                raise DataError(at(archive, f"corrupt tar archive ({exc})")) from None
        else:
            raise DataError(at(archive, "marked for extraction but not a zip or tar archive"))
    return dest


def _extract_dest(target: Path) -> Path:
    name = target.name
    for suffix in (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar", ".zip", ".gz"):
        if name.lower().endswith(suffix):
            return target.with_name(name[: -len(suffix)])
    return target.with_name(name + ".d")


def download(
    manifest: Manifest,
    out_dir: Path | str,
    *,
    files: Sequence[str] | None = None,
    extract: bool = True,
    progress: Reporter | None = None,
    timeout: float = 60.0,
) -> DownloadResult:
    """Download (resuming) and verify the manifest's files into ``out_dir``; unpack archives."""
    out = Path(out_dir)
    entries = list(manifest.files)
    if not entries:
        raise ConfigError(f"{manifest.path or manifest.name}: lists no downloadable files ({manifest.notes.strip()[:200]})")
    if files:
        names = [e.name for e in entries]
        unknown = [f for f in files if f not in names]
        if unknown:
            raise ConfigError(f"--files: unknown file(s) {', '.join(unknown)} (valid choices: {', '.join(names)})")
        entries = [e for e in entries if e.name in set(files)]
    result = DownloadResult(name=manifest.name, folder=out)
    for entry in entries:
        target = out / entry.name
        got = download_file(entry, target, progress=progress, timeout=timeout)
        result.files.append(got)
        if extract and entry.extract:
            safe_extract(target, _extract_dest(target))
    return result
