"""`hagekit data ...` through the CLI: defaults via the workspace, tables, exit code 2 on bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from clitext import flat
from toys.raw_formats import make_cscc, make_her2st, make_hest, make_visium
from typer.testing import CliRunner

from hagekit.cli.main import app

runner = CliRunner()


def _invoke(*args: str, env: dict | None = None):
    return runner.invoke(app, ["-q", *args], env={"COLUMNS": "200", **(env or {})})


def test_prepare_her2st_then_list_with_workspace_default(tmp_path: Path) -> None:
    raw = make_her2st(tmp_path / "her2st")
    ws = tmp_path / "ws"
    result = _invoke("data", "prepare", "her2st", "--raw", str(raw), "-w", str(ws))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (ws / "data" / "her2").glob("*.h5ad")) == ["A1.h5ad", "B1.h5ad", "B2.h5ad"]
    assert "no (counts only)" in flat(result.output) and "3 written" in flat(result.output)
    listed = _invoke("data", "list", env={"HAGEKIT_HOME": str(ws)})
    assert listed.exit_code == 0, listed.output
    assert "3 section(s)" in flat(listed.output) and "her2: 3 sections, 2 with image" in flat(listed.output)
    again = _invoke("data", "prepare", "her2", "--raw", str(raw), "--out", str(ws / "data"), "--sections", "B1")
    assert again.exit_code == 0 and "kept" in again.output


@pytest.mark.parametrize(
    ("breakage", "needle"),
    [
        (lambda raw: raw.rename(raw.with_name("gone")), "her2st folder not found"),
        (lambda raw: (raw / "data" / "ST-spotfiles" / "B2_selection.tsv").unlink(), "counts file with no matching spot file"),
        (lambda raw: (raw / "data" / "ST-imgs" / "B" / "B1" / "HE_B1.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut"), "HE_B1.jpg: truncated"),
    ],
    ids=["missing-folder", "no-spot-file", "truncated-image"],
)
def test_bad_input_is_one_red_line_and_exit_2(tmp_path: Path, breakage, needle: str) -> None:
    raw = make_her2st(tmp_path / "her2st")
    breakage(raw)
    out = tmp_path / "data"
    result = _invoke("data", "prepare", "her2st", "--raw", str(raw), "--out", str(out), "--sections", "B1,B2")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert not list(out.rglob("*.h5ad")) if out.exists() else True


def test_repeated_section_option(tmp_path: Path) -> None:
    raw = make_her2st(tmp_path / "her2st")
    result = _invoke("data", "prepare", "her2st", "--raw", str(raw), "--out", str(tmp_path / "d"), "--sections", "B1,B1")
    assert result.exit_code == 2 and "section 'B1' named twice" in result.stderr


def test_prepare_cscc_visium_hest(tmp_path: Path) -> None:
    out = tmp_path / "data"
    assert _invoke("data", "prepare", "cscc", "--raw", str(make_cscc(tmp_path / "GSE")), "--out", str(out)).exit_code == 0
    outs, image = make_visium(tmp_path / "outs")
    r = _invoke("data", "prepare", "visium", "--raw", str(outs), "--name", "V1", "--image", str(image), "--out", str(out))
    assert r.exit_code == 0, r.output
    r = _invoke("data", "prepare", "hest", "--raw", str(make_hest(tmp_path / "hest")), "--ids", "TENX1", "--out", str(out))
    assert r.exit_code == 0, r.output
    listed = _invoke("data", "list", str(out))
    assert "cscc: 3 sections" in flat(listed.output) and "visium: 1 sections" in flat(listed.output) and "hest: 1 sections" in flat(listed.output)


def test_synth_cli_is_deterministic(tmp_path: Path) -> None:
    args = ["data", "synth", "--sections", "2", "--spots", "16", "--genes", "12", "--seed", "5"]
    r1 = _invoke(*args, "--out", str(tmp_path / "a"))
    r2 = _invoke(*args, "--out", str(tmp_path / "b"))
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output
    for s in ("A1", "B1"):
        a = (tmp_path / "a" / "synth" / "images" / f"{s}.jpg").read_bytes()
        assert a == (tmp_path / "b" / "synth" / "images" / f"{s}.jpg").read_bytes()
    bad = _invoke("data", "synth", "--genes", "3", "--out", str(tmp_path / "c"))
    assert bad.exit_code == 2 and "--genes" in bad.stderr and not (tmp_path / "c").exists()


def test_list_errors(tmp_path: Path) -> None:
    r = _invoke("data", "list", str(tmp_path / "nothing"))
    assert r.exit_code == 2 and "data root not found" in r.stderr
    (tmp_path / "empty").mkdir()
    r = _invoke("data", "list", str(tmp_path / "empty"))
    assert r.exit_code == 2 and "no prepared sections" in r.stderr


def test_cli_module_imports_stay_light() -> None:
    code = (
        "import sys, hagekit.cli.data; "
        "bad = [m for m in ('torch', 'anndata', 'scanpy', 'pandas', 'h5py') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
