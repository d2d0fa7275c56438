"""`hagekit data download`: resume over HTTP Range, sha256 verification, safe extraction.

A local HTTP server on 127.0.0.1 (a thread) serves fixture bytes; no network is used.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from clitext import flat
from localhttp import LocalServer, write_manifest
from typer.testing import CliRunner

from hagekit.cli.main import app
from hagekit.data.download import download, safe_extract
from hagekit.data.manifests import load_manifest
from hagekit.errors import ConfigError, DataError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class _Server(LocalServer):
    """The recording 127.0.0.1 server of tests/localhttp.py, plain HTTP; ``url`` is its base URL."""

    def __init__(self) -> None:
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"  # type: ignore[assignment]


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    try:
        yield s
    finally:
        s.close()


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_download_and_verify(server: _Server, tmp_path: Path) -> None:
    server.files["/a.bin"] = PAYLOAD
    man = load_manifest(write_manifest(tmp_path, [{"name": "a.bin", "url": server.url + "/a.bin", "sha256": _sha(PAYLOAD), "size": len(PAYLOAD)}]))
    result = download(man, tmp_path / "out")
    f = result.files[0]
    assert (f.status, f.verified, f.size) == ("downloaded", True, len(PAYLOAD))
    assert (tmp_path / "out" / "a.bin").read_bytes() == PAYLOAD
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.bin"]
    again = download(man, tmp_path / "out")
    assert again.files[0].status == "present" and len(server.ranges) == 1


def test_resume_from_partial(server: _Server, tmp_path: Path) -> None:
    server.files["/a.bin"] = PAYLOAD
    out = tmp_path / "out"
    out.mkdir()
    (out / ".a.bin.part").write_bytes(PAYLOAD[:300_000])
    man = load_manifest(write_manifest(tmp_path, [{"name": "a.bin", "url": server.url + "/a.bin", "sha256": _sha(PAYLOAD)}]))
    f = download(man, out).files[0]
    assert server.ranges == ["bytes=300000-"]
    assert f.status == "resumed" and f.verified
    assert (out / "a.bin").read_bytes() == PAYLOAD and not (out / ".a.bin.part").exists()


def test_complete_partial_gets_416_and_is_finished(server: _Server, tmp_path: Path) -> None:
    server.files["/a.bin"] = PAYLOAD
    out = tmp_path / "out"
    out.mkdir()
    (out / ".a.bin.part").write_bytes(PAYLOAD)
    man = load_manifest(write_manifest(tmp_path, [{"name": "a.bin", "url": server.url + "/a.bin", "sha256": _sha(PAYLOAD)}]))
    assert download(man, out).files[0].verified
    assert (out / "a.bin").read_bytes() == PAYLOAD


def test_server_without_range_support_restarts(server: _Server, tmp_path: Path) -> None:
    server.files["/a.bin"] = PAYLOAD
    server.honour_range = False
    out = tmp_path / "out"
    out.mkdir()
    (out / ".a.bin.part").write_bytes(b"x" * 1000)
    man = load_manifest(write_manifest(tmp_path, [{"name": "a.bin", "url": server.url + "/a.bin", "sha256": _sha(PAYLOAD)}]))
    f = download(man, out).files[0]
    assert f.status == "downloaded" and (out / "a.bin").read_bytes() == PAYLOAD


def test_checksum_mismatch_leaves_nothing(server: _Server, tmp_path: Path) -> None:
    server.files["/a.bin"] = PAYLOAD
    man = load_manifest(write_manifest(tmp_path, [{"name": "a.bin", "url": server.url + "/a.bin", "sha256": "0" * 64}]))
    with pytest.raises(DataError, match=r"a.bin: checksum mismatch: sha256 [0-9a-f]{16}… != the manifest's 0{16}…"):
        download(man, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_corrupt_partial_is_caught_by_the_checksum(server: _Server, tmp_path: Path) -> None:
    server.files["/a.bin"] = PAYLOAD
    out = tmp_path / "out"
    out.mkdir()
    (out / ".a.bin.part").write_bytes(b"\xff" * 1000)
    man = load_manifest(write_manifest(tmp_path, [{"name": "a.bin", "url": server.url + "/a.bin", "sha256": _sha(PAYLOAD)}]))
    with pytest.raises(DataError, match="checksum mismatch"):
        download(man, out)
    assert list(out.iterdir()) == []
    assert download(man, out).files[0].verified  # the rerun starts clean


def test_unverified_file_reports_its_hash(server: _Server, tmp_path: Path, caplog) -> None:
    server.files["/a.bin"] = PAYLOAD
    man = load_manifest(write_manifest(tmp_path, [{"name": "sub/a.bin", "url": server.url + "/a.bin"}]))
    result = download(man, tmp_path / "out")
    assert result.unverified and result.files[0].sha256 == _sha(PAYLOAD)
    assert (tmp_path / "out" / "sub" / "a.bin").is_file()
    assert "no published checksum" in caplog.text


def test_http_error_and_unknown_file(server: _Server, tmp_path: Path) -> None:
    man = load_manifest(write_manifest(tmp_path, [{"name": "a.bin", "url": server.url + "/missing.bin"}]))
    with pytest.raises(DataError, match=r"/missing.bin: HTTP 404"):
        download(man, tmp_path / "out")
    with pytest.raises(ConfigError, match=r"--files: unknown file\(s\) b.bin \(valid choices: a.bin\)"):
        download(man, tmp_path / "out", files=["b.bin"])


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_archive_is_extracted(server: _Server, tmp_path: Path) -> None:
    blob = _zip_bytes({"repo-main/data/x.txt": b"hello"})
    server.files["/repo.zip"] = blob
    man = load_manifest(write_manifest(tmp_path, [{"name": "repo.zip", "url": server.url + "/repo.zip", "sha256": _sha(blob), "extract": True}]))
    download(man, tmp_path / "out")
    assert (tmp_path / "out" / "repo" / "repo-main" / "data" / "x.txt").read_bytes() == b"hello"


def test_unsafe_archives_are_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.zip"
    evil.write_bytes(_zip_bytes({"../escape.txt": b"x"}))
    with pytest.raises(DataError, match=r"evil.zip: unsafe path in archive: '../escape.txt'"):
        safe_extract(evil, tmp_path / "dest")
    assert not (tmp_path / "dest").exists() and not (tmp_path / "escape.txt").exists()

    tar_path = tmp_path / "link.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tf:
        info = tarfile.TarInfo("data/link")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(DataError, match="archive holds a link"):
        safe_extract(tar_path, tmp_path / "dest2")
    assert not (tmp_path / "dest2").exists()


def test_gzip_single_file(tmp_path: Path) -> None:
    import gzip

    src = tmp_path / "x.h5.gz"
    src.write_bytes(gzip.compress(b"payload"))
    assert safe_extract(src, tmp_path / "x.h5").read_bytes() == b"payload"


def test_cli_download(server: _Server, tmp_path: Path) -> None:
    server.files["/a.bin"] = PAYLOAD
    good = write_manifest(tmp_path, [{"name": "a.bin", "url": server.url + "/a.bin", "sha256": _sha(PAYLOAD)}])
    runner = CliRunner()
    result = runner.invoke(app, ["-q", "data", "download", "--manifest", str(good), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "a.bin" in flat(result.output) and "downloaded" in result.output
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    bad = write_manifest(bad_dir, [{"name": "a.bin", "url": server.url + "/a.bin", "sha256": "1" * 64}])
    result = runner.invoke(app, ["-q", "data", "download", "--manifest", str(bad), "--out", str(tmp_path / "out2")])
    assert result.exit_code == 2
    assert "checksum mismatch" in flat(result.stderr) and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out2" / "a.bin").exists()
