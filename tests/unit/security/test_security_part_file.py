"""The ``.part`` file of a download is never followed as a link, and the final file is never a
link (issue 19, item 11). Servers on 127.0.0.1 only."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from clitext import flat
from localhttp import LocalServer
from typer.testing import CliRunner

from hagekit.cli.main import app
from hagekit.data.download import download
from hagekit.data.manifests import load_manifest

PAYLOAD = bytes(range(256)) * 2048  # 512 KiB
VICTIM = b"another user's file: must not change\n"


@pytest.fixture
def server() -> Iterator[LocalServer]:
    s = LocalServer()
    s.files["/file.bin"] = PAYLOAD
    try:
        yield s
    finally:
        s.close()


def _manifest(tmp_path: Path, server: LocalServer, *, sha: bool) -> Path:
    entry = {"name": "file.bin", "url": server.url() + "/file.bin"}
    if sha:
        entry["sha256"] = hashlib.sha256(PAYLOAD).hexdigest()
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"name": "mini", "kind": "dataset", "title": "t", "licence": "l", "citation": "c",
                                    "files": [entry]}))
    return path


@pytest.mark.parametrize("sha", [True, False], ids=["published-sha", "no-sha"])
@pytest.mark.parametrize("victim_size", ["shorter", "longer"])
def test_planted_part_symlink_is_not_followed(server: LocalServer, tmp_path: Path, sha: bool, victim_size: str) -> None:
    out = tmp_path / "shared"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_bytes(VICTIM if victim_size == "shorter" else VICTIM * 20000)
    before = victim.read_bytes()
    (out / ".file.bin.part").symlink_to(victim)
    res = CliRunner().invoke(app, ["-q", "data", "download", "--manifest", str(_manifest(tmp_path, server, sha=sha)),
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert victim.read_bytes() == before and not victim.is_symlink()
    final = out / "file.bin"
    assert not final.is_symlink() and final.read_bytes() == PAYLOAD
    assert not os.path.lexists(out / ".file.bin.part")
    assert all("Range" not in h for _, h in server.requests)  # nothing was "resumed" from the victim


def test_hard_linked_part_is_not_resumed(server: LocalServer, tmp_path: Path) -> None:
    out = tmp_path / "shared"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_bytes(VICTIM)
    os.link(victim, out / ".file.bin.part")
    download(load_manifest(_manifest(tmp_path, server, sha=True)), out)
    assert victim.read_bytes() == VICTIM
    assert (out / "file.bin").read_bytes() == PAYLOAD and (out / "file.bin").stat().st_nlink == 1


def test_own_regular_part_is_still_resumed(server: LocalServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / ".file.bin.part").write_bytes(PAYLOAD[:100_000])
    got = download(load_manifest(_manifest(tmp_path, server, sha=True)), out).files[0]
    assert got.status == "resumed" and server.requests[0][1].get("Range") == "bytes=100000-"
    assert (out / "file.bin").read_bytes() == PAYLOAD


def test_target_that_is_a_link_is_refused(server: LocalServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_bytes(VICTIM)
    (out / "file.bin").symlink_to(victim)
    res = CliRunner().invoke(app, ["-q", "data", "download", "--manifest", str(_manifest(tmp_path, server, sha=False)),
                                   "--out", str(out)])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "is a symbolic link" in flat(res.stderr)
    assert victim.read_bytes() == VICTIM and not server.requests
