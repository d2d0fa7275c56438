"""Resumable, verified downloads of the files a manifest lists.

Each file streams into ``.<name>.part`` beside its target, created exclusively (never through
a planted link); a rerun resumes it with an HTTP ``Range`` request only when it is a regular
file of ours. Before the part is renamed to its final name its size and sha256 are checked:
against the manifest's published sha256, else against the pin in
``<out>/hagekit-download.lock.json`` (:mod:`hagekit.data.download_lock`), else the sha256 is
pinned there on this first download. A Hugging Face token only goes to the hub over HTTPS
(:mod:`hagekit.io.hub_auth`). Archives marked ``extract`` are unpacked safely
(:mod:`hagekit.data.archives`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hagekit.data.archives import safe_extract
from hagekit.data.download_lock import CHECKS, DownloadLock
from hagekit.data.manifests import Manifest, ManifestFile
from hagekit.errors import ConfigError, DataError, at
from hagekit.io.paths import child_path
from hagekit.progress import Reporter, reporter_or_null

__all__ = ["DownloadedFile", "DownloadResult", "download", "download_file", "safe_extract", "sha256_file"]

log = logging.getLogger(__name__)

CHUNK = 1 << 20
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


@dataclass(frozen=True)
class DownloadedFile:
    """One file: where it is, its size and sha256, what happened (downloaded, resumed, present)
    and what it was checked against (``check``: a key of :data:`~hagekit.data.download_lock.CHECKS`)."""

    name: str
    path: Path
    size: int
    sha256: str
    status: str
    verified: bool
    check: str = "published"

    @property
    def check_text(self) -> str:
        return CHECKS[self.check]


@dataclass
class DownloadResult:
    """The outcome of :func:`download`; ``lock`` is the folder's pin file."""

    name: str
    folder: Path
    files: list[DownloadedFile] = field(default_factory=list)
    lock: Path | None = None

    @property
    def unverified(self) -> list[DownloadedFile]:
        """Files with nothing to check against yet (their sha256 was pinned now)."""
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


def _ours(st: os.stat_result) -> bool:
    """A regular file with one link, owned by this user: safe to resume and to rename."""
    owner_ok = not hasattr(os, "getuid") or st.st_uid == os.getuid()
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and owner_ok


def _resumable_bytes(part: Path) -> int:
    """Size of a part we may resume; a link, another user's file or a hard-linked file is
    removed (the name, never what it points to) and the download starts over."""
    try:
        st = os.lstat(part)
    except FileNotFoundError:
        return 0
    if _ours(st):
        return st.st_size
    log.warning("%s: not a regular file of ours (a link, a hard link or another user's file); removed, not resumed", part)
    try:
        os.unlink(part)
    except OSError as exc:
        raise DataError(at(part, f"is not a regular file of ours and cannot be removed ({exc.strerror}); "
                                 "remove it or choose another --out")) from None
    return 0


def _open_part(part: Path, *, resume: bool) -> Any:
    """The part as a binary file object: the existing one (checked again through its handle) or a
    new one created exclusively; a link is never followed."""
    try:
        if resume:
            fd = os.open(part, os.O_RDWR | _NOFOLLOW)
            if not _ours(os.fstat(fd)):
                os.close(fd)
                raise DataError(at(part, "changed into a link or another user's file while resuming; rerun"))
            return os.fdopen(fd, "r+b")
        try:
            os.unlink(part)  # checked by _resumable_bytes: ours, or already gone
        except FileNotFoundError:
            pass
        return os.fdopen(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644), "wb")
    except FileExistsError:
        raise DataError(at(part, "appeared while the download started (another process?); rerun")) from None


def _finish(part: Path, target: Path, identity: tuple[int, int]) -> None:
    """Rename the part we wrote (same inode, still a regular file of ours) to ``target``."""
    st = os.lstat(part)
    if (st.st_dev, st.st_ino) != identity or not _ours(st):
        raise DataError(at(part, "was replaced during the download (a link or another file); nothing was renamed"))
    os.replace(part, target)


def _request(entry: ManifestFile, have: int, timeout: float) -> Any:
    """The open response (``None``: the part already holds every byte, HTTP 416)."""
    import urllib.error
    import urllib.request

    from hagekit.io.hub_auth import hub_headers, open_url

    headers = {"User-Agent": "hagekit-download", **hub_headers(entry.url)}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        return open_url(urllib.request.Request(entry.url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            return None
        if exc.code in (401, 403):
            raise DataError(
                f"{entry.url}: HTTP {exc.code}: access denied (gated source: accept its licence on the website and set HF_TOKEN)"
            ) from None
        raise DataError(f"{entry.url}: HTTP {exc.code} {exc.reason}; rerun to retry (partial data is kept)") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DataError(f"{entry.url}: download failed ({getattr(exc, 'reason', exc)}); rerun to resume") from None


def _expected_size(headers: Any, have: int) -> int | None:
    """Full file size the server announces: ``Content-Range`` total, else ``have`` + ``Content-Length``."""
    rng = headers.get("Content-Range") or ""
    total = rng.rpartition("/")[2].strip()
    if total.isdigit():
        return int(total)
    length = (headers.get("Content-Length") or "").strip()
    return have + int(length) if length.isdigit() else None


def _check(entry: ManifestFile, lock: DownloadLock, where: Path, size: int, digest: str, *, present: bool) -> str:
    """Check a file's size and sha256 against the published sha256, else its pin; the check made."""
    if entry.sha256:
        if digest != entry.sha256:
            raise DataError(at(where, f"checksum mismatch: sha256 {digest[:16]}… != the manifest's {entry.sha256[:16]}…"
                                      + ("; delete it and rerun" if present else " (download discarded)")))
        return "published"
    if lock.get(entry.name) is not None:
        lock.check(entry.name, size, digest, where)
        return "pin"
    return "pinned-present" if present else "pinned"


def _present(entry: ManifestFile, target: Path, lock: DownloadLock) -> DownloadedFile:
    digest = sha256_file(target)
    size = target.stat().st_size
    check = _check(entry, lock, target, size, digest, present=True)
    return DownloadedFile(entry.name, target, size, digest, "present", check in ("published", "pin"), check)


def download_file(
    entry: ManifestFile,
    target: Path,
    *,
    progress: Reporter | None = None,
    timeout: float = 60.0,
    lock: DownloadLock | None = None,
) -> DownloadedFile:
    """Download one manifest file to ``target`` with resume and checksum (or pin) verification.

    ``lock``: the folder's pins (default: the one beside ``target``); a new pin is recorded by
    :func:`download` once the file is usable (unpacked, when it is an archive).
    """
    import http.client

    target = Path(target)
    lock = lock if lock is not None else DownloadLock(target.parent)
    if target.is_symlink():
        raise DataError(at(target, "is a symbolic link; a download target must be a regular file (remove the link)"))
    if target.is_file():
        return _present(entry, target, lock)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(target)
    have = _resumable_bytes(part)
    response = _request(entry, have, timeout)
    h = hashlib.sha256()
    status, total = "resumed", None
    resume = response is None or (have > 0 and (getattr(response, "status", None) or response.getcode()) == 206)
    try:
        out_file = _open_part(part, resume=resume)
    except BaseException:
        if response is not None:
            response.close()
        raise
    with out_file as out:
        if resume:
            for chunk in iter(lambda: out.read(CHUNK), b""):
                h.update(chunk)
        if response is not None:
            have = have if resume else 0
            status = "resumed" if resume else "downloaded"
            total = _expected_size(response.headers, have) or entry.size
            task = reporter_or_null(progress).task(f"download {entry.name}", total=total)
            task.advance(have)
            try:
                with response:
                    while True:
                        try:
                            chunk = response.read(CHUNK)
                        except (OSError, http.client.HTTPException) as exc:
                            raise DataError(f"{entry.url}: connection lost ({exc}); rerun to resume") from None
                        if not chunk:
                            break
                        out.write(chunk)  # an OS error here (a full disk) is reported as itself
                        h.update(chunk)
                        task.advance(len(chunk))
            finally:
                task.close()
        out.flush()
        st = os.fstat(out.fileno())
    return _verify_part(entry, part, target, lock, total, status, h.hexdigest(), st)


def _verify_part(entry: ManifestFile, part: Path, target: Path, lock: DownloadLock, total: int | None,
                 status: str, digest: str, st: os.stat_result) -> DownloadedFile:
    """Size and checksum checks of a finished part (``st``: its stat through our handle), then the rename."""
    size = st.st_size
    if total is not None and size != total:
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
    try:
        check = _check(entry, lock, target, size, digest, present=False)
    except DataError:
        part.unlink()
        raise
    _finish(part, target, (st.st_dev, st.st_ino))
    return DownloadedFile(entry.name, target, size, digest, status, check != "pinned", check)


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
    """Download (resuming) and verify the manifest's files into ``out_dir``; unpack archives.

    Each file is checked against its published sha256, else its pin in
    ``<out_dir>/hagekit-download.lock.json``, else pinned there now (``DownloadedFile.check``).
    """
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
    lock = DownloadLock(out)
    targets = {e.name: child_path(out, e.name, what="manifest file", nested=True, source=manifest.path or manifest.name)
               for e in entries}
    result = DownloadResult(name=manifest.name, folder=out, lock=lock.path)
    for entry in entries:
        target = targets[entry.name]
        got = download_file(entry, target, progress=progress, timeout=timeout, lock=lock)
        if extract and entry.extract:
            safe_extract(target, _extract_dest(target))
        if not entry.sha256 and lock.get(entry.name) is None:  # pinned once usable (unpacked, for an archive)
            lock.record(entry.name, entry.url, got.size, got.sha256)
            log.warning("%s: no published checksum; its sha256 %s is now pinned in %s", target, got.sha256, lock.path)
        result.files.append(got)
    return result
