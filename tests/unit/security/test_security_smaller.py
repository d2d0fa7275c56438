"""Issue 19, smaller items: a full disk while unpacking reads "no space left" (never "corrupt",
never "delete it"), an empty or all-zero archive is an error, ``--jobs`` below 1 is refused.

The full disk is the kernel's ``/dev/full`` (every write fails with ENOSPC), swapped in for the
files the unpacker creates.
"""

from __future__ import annotations

import builtins
import errno
import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest
from clitext import flat
from typer.testing import CliRunner

from hagekit.cli.main import app
from hagekit.data import archives
from hagekit.data.download import safe_extract
from hagekit.errors import DataError, os_error_message

needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")


def _tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _writes_hit_a_full_disk(real_open=builtins.open):
    def fake(file, mode="r", *args, **kwargs):
        return real_open("/dev/full", mode, *args, **kwargs) if any(c in mode for c in "wax") else real_open(file, mode, *args, **kwargs)

    return fake


@needs_dev_full
@pytest.mark.parametrize("kind", ["tar.gz", "gz"])
def test_full_disk_while_unpacking_says_no_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    if kind == "tar.gz":
        archive = _tar_gz(tmp_path / "x.tar.gz", {"data/a.bin": b"x" * 100_000})
        monkeypatch.setattr(tarfile, "bltn_open", _writes_hit_a_full_disk())
        dest = tmp_path / "x"
    else:
        archive = tmp_path / "x.h5.gz"
        archive.write_bytes(gzip.compress(b"x" * 100_000))
        monkeypatch.setattr(archives, "open", _writes_hit_a_full_disk(), raising=False)
        dest = tmp_path / "x.h5"
    with pytest.raises(OSError) as info:
        safe_extract(archive, dest)
    assert info.value.errno == errno.ENOSPC
    message = os_error_message(info.value)
    assert message.startswith("no space left on ") and str(dest) in message
    assert "corrupt" not in message and "delete" not in message
    assert archive.is_file() and not dest.exists()  # the good archive is kept, nothing half-written


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("zeros.gz", b"\x00" * 4096, "holds no files"),
        ("zeros.tar.gz", b"\x00" * 4096, "holds no files"),
        ("empty.tar.gz", None, "holds no files"),
        ("empty.h5.gz", gzip.compress(b""), "unpacks to nothing"),
    ],
)
def test_empty_or_all_zero_archive_is_an_error(tmp_path: Path, name: str, content: bytes | None, match: str) -> None:
    archive = tmp_path / name
    if content is None:
        _tar_gz(archive, {})
    else:
        archive.write_bytes(content)
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match=match):
        safe_extract(archive, dest)
    assert not dest.exists()


def test_corrupt_gzip_is_still_called_corrupt(tmp_path: Path) -> None:
    archive = tmp_path / "x.h5.gz"
    archive.write_bytes(gzip.compress(b"x" * 10_000)[:-30])
    with pytest.raises(DataError, match=r"x.h5.gz: corrupt or truncated"):
        safe_extract(archive, tmp_path / "x.h5")


@pytest.mark.parametrize("command", ["baselines", "ablation", "grid"])
@pytest.mark.parametrize("jobs", ["0", "-1"])
def test_jobs_below_one_is_refused(tmp_path: Path, command: str, jobs: str) -> None:
    res = CliRunner().invoke(app, ["-q", "bench", command, "--workspace", str(tmp_path / "ws"), "--jobs", jobs])
    assert res.exit_code == 2, res.output
    assert len(res.stderr.strip().splitlines()) == 1
    assert f"--jobs: must be >= 1 worker process, got {jobs}" in flat(res.stderr)
    assert list(tmp_path.iterdir()) == []  # refused before anything is written


def test_library_refuses_jobs_below_one() -> None:
    from hagekit.bench.expression.compare import Schedule, bench_baselines
    from hagekit.errors import ConfigError
    from hagekit.study import StudyInputs

    with pytest.raises(ConfigError, match="--jobs: must be >= 1"):
        bench_baselines(StudyInputs("x", "d", "f", "g"), "o", schedule=Schedule(n_jobs=0))
