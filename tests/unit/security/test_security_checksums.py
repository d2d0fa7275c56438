"""Downloads are verified: against a published sha256, else against the sha256 pinned on the first
download in ``<out>/hagekit-download.lock.json``; ``data download`` says which (issue 19, item 14).
Servers on 127.0.0.1 only."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from clitext import flat
from localhttp import LocalServer, write_manifest
from typer.testing import CliRunner

from hagekit.cli.main import app
from hagekit.data.download import download
from hagekit.data.download_lock import LOCK_NAME
from hagekit.data.manifests import list_manifests, load_manifest
from hagekit.errors import DataError

A = b"first version\n" * 5000
B = b"other bytes!!\n" * 5000  # same size, other content


@pytest.fixture
def server() -> Iterator[LocalServer]:
    s = LocalServer()
    try:
        yield s
    finally:
        s.close()


def _cli(*args: str):
    return CliRunner().invoke(app, ["-q", "data", "download", *args])


def test_pinned_on_first_download_then_verified_against_the_pin(server: LocalServer, tmp_path: Path) -> None:
    server.files["/a.bin"] = A
    server.files["/p.bin"] = A
    man = write_manifest(tmp_path, [{"name": "a.bin", "url": server.url() + "/a.bin"},
                               {"name": "p.bin", "url": server.url() + "/p.bin", "sha256": hashlib.sha256(A).hexdigest()}])
    out = tmp_path / "out"
    first = _cli("--manifest", str(man), "--out", str(out))
    assert first.exit_code == 0, first.output
    text = flat(first.output)
    assert "pinned on first download" in text and "verified against published sha256" in text
    lock = json.loads((out / LOCK_NAME).read_text())
    pin = lock["files"]["a.bin"]
    assert pin["sha256"] == hashlib.sha256(A).hexdigest() and pin["size"] == len(A)
    assert pin["url"] == server.url() + "/a.bin" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", pin["date"])
    assert "p.bin" not in lock["files"]  # a published sha256 needs no pin

    again = _cli("--manifest", str(man), "--out", str(out))
    assert again.exit_code == 0 and "verified against pin" in flat(again.output)

    # the file on disk changed after it was pinned: refused on the next use, in one line
    (out / "a.bin").write_bytes(B)
    bad = _cli("--manifest", str(man), "--out", str(out))
    assert bad.exit_code == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "differs from the pin" in flat(bad.stderr) and LOCK_NAME in flat(bad.stderr)


def test_source_that_changes_after_pinning_is_refused_and_nothing_replaced(server: LocalServer, tmp_path: Path) -> None:
    server.files["/a.bin"] = A
    man = load_manifest(write_manifest(tmp_path, [{"name": "a.bin", "url": server.url() + "/a.bin"}]))
    out = tmp_path / "out"
    assert download(man, out).files[0].check == "pinned"
    (out / "a.bin").unlink()  # the user deletes the file; the source now serves other bytes
    server.files["/a.bin"] = B
    with pytest.raises(DataError, match=r"a.bin: sha256 [0-9a-f]{16}… \(70,000 bytes\) differs from the pin"):
        download(man, out)
    assert not (out / "a.bin").exists() and not (out / ".a.bin.part").exists()
    server.files["/a.bin"] = A
    assert download(man, out).files[0].check == "pin"


def test_unreadable_lock_is_not_overwritten(server: LocalServer, tmp_path: Path) -> None:
    server.files["/a.bin"] = A
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text("{not json")
    man = load_manifest(write_manifest(tmp_path, [{"name": "a.bin", "url": server.url() + "/a.bin"}]))
    with pytest.raises(DataError, match="not a readable download lock"):
        download(man, out)
    assert (out / LOCK_NAME).read_text() == "{not json" and not server.requests


def test_corrupt_archive_is_not_pinned(server: LocalServer, tmp_path: Path) -> None:
    server.files["/x.tar.gz"] = b"\x1f\x8b\x08\x00" + b"\x00" * 40
    man = load_manifest(write_manifest(tmp_path, [{"name": "x.tar.gz", "url": server.url() + "/x.tar.gz", "extract": True}]))
    with pytest.raises(DataError, match="corrupt"):
        download(man, tmp_path / "out")
    assert not (tmp_path / "out" / LOCK_NAME).exists()


def test_builtin_manifests_publish_only_real_checksums() -> None:
    """Every built-in file either publishes a 64-hex sha256 or none (then it is pinned)."""
    for m in list_manifests():
        for f in m.files:
            assert f.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", f.sha256), (m.name, f.name)


def test_readme_says_what_a_download_verifies() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    assert "sha256-verified" not in readme
    assert "pinned on first download" in readme
