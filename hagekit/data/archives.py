"""Safe, atomic unpacking of downloaded archives (.zip, .tar(.gz/.bz2/.xz), a lone .gz).

Absolute paths, ``..``, links and special files are refused; the destination appears only
when complete. An archive that holds nothing (an all-zero file reads as an empty tar) is an
error, and an OS error while writing (a full disk) is reported as itself, never as a
"corrupt" archive: only data that fails to decode is called corrupt.
"""

from __future__ import annotations

import logging
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from hagekit.errors import DataError, at

__all__ = ["safe_extract"]

log = logging.getLogger(__name__)

CHUNK = 1 << 20


def _member_ok(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return not p.is_absolute() and ".." not in p.parts and not (p.parts and p.parts[0].endswith(":"))


def _os_error(exc: BaseException) -> bool:
    """A real OS error (full disk, permissions, I/O): raised as itself, never called corruption."""
    return isinstance(exc, OSError) and exc.errno is not None


def _corrupt(archive: Path, kind: str, exc: BaseException) -> DataError:
    return DataError(at(archive, f"corrupt or truncated {kind} ({exc or type(exc).__name__}); "
                                 "it does not decode: delete it and rerun the download"))


def safe_extract(archive: Path, dest: Path) -> Path:
    """Unpack a .zip/.tar(.gz/.bz2/.xz) into folder ``dest`` (or gunzip a lone .gz to file ``dest``).

    Atomic: ``dest`` appears only when complete. Absolute paths, ``..`` and links are refused;
    an archive with no files is an error.
    """
    from hagekit.io.atomic import atomic_dir

    archive = Path(archive)
    if dest.exists():
        log.info("%s: already extracted, kept", dest)
        return dest
    try:
        is_zip, is_tar = zipfile.is_zipfile(archive), tarfile.is_tarfile(archive)
    except (OSError, EOFError, tarfile.TarError, zlib.error) as exc:
        if _os_error(exc):
            raise
        raise _corrupt(archive, "archive", exc) from None
    if not is_zip and not is_tar and archive.name.lower().endswith(".gz"):
        return _gunzip(archive, dest)
    if not is_zip and not is_tar:
        raise DataError(at(archive, "marked for extraction but not a zip or tar archive"))
    with atomic_dir(dest) as tmp:
        n = _unzip(archive, tmp) if is_zip else _untar(archive, tmp)
        if n == 0:
            raise DataError(at(archive, "holds no files (an empty or all-zero archive); the source or the download is broken"))
    return dest


def _gunzip(archive: Path, dest: Path) -> Path:
    import gzip

    from hagekit.io.atomic import atomic_path

    try:
        with gzip.open(archive, "rb") as src, atomic_path(dest) as tmp:
            n = 0
            with open(tmp, "wb") as out:
                for chunk in iter(lambda: src.read(CHUNK), b""):
                    out.write(chunk)
                    n += len(chunk)
            if n == 0:
                raise DataError(at(archive, "unpacks to nothing (an empty gzip file)"))
    except (OSError, EOFError, zlib.error) as exc:
        if _os_error(exc):
            raise
        raise _corrupt(archive, "gzip file", exc) from None
    return dest


def _unzip(archive: Path, tmp: Path) -> int:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            if not _member_ok(info.filename):
                raise DataError(at(archive, f"unsafe path in archive: {info.filename!r}"))
            mode = (info.external_attr >> 16) & 0o170000
            if mode == 0o120000:
                raise DataError(at(archive, f"archive holds a symbolic link: {info.filename!r}"))
        try:
            zf.extractall(tmp)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
            if _os_error(exc):
                raise
            raise _corrupt(archive, "zip archive", exc) from None
    return sum(1 for i in infos if not i.is_dir())


def _untar(archive: Path, tmp: Path) -> int:
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
        if _os_error(exc):
            raise
        raise _corrupt(archive, "tar archive", exc) from None
    return sum(1 for m in members if m.isfile())
