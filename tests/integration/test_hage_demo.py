"""``hagekit demo`` end to end (synthetic, offline): under 3 minutes, PCC(all) >= 0.3 on held-out sections."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from clitext import flat
from typer.testing import CliRunner

from hagekit.cli.main import app


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path):
    t0 = time.perf_counter()
    res = CliRunner().invoke(app, ["--quiet", "demo", "--out", str(tmp_path / "demo"), "--seed", "0"])
    elapsed = time.perf_counter() - t0
    assert res.exit_code == 0, res.output
    assert "PCC(all) on held-out synthetic sections" in flat(res.output)
    value = float(flat(res.output).split("PCC(all) on held-out synthetic sections:")[1].split()[0])
    assert value >= 0.3
    report = tmp_path / "demo" / "report"
    for name in ("summary.md", "per_gene_pcc.csv", "pcc_histogram.png", "A2_prediction.h5ad"):
        assert (report / name).is_file(), name
    assert list(report.glob("A2_*.png"))
    assert elapsed < 180
    # a second run into the same non-empty folder is refused, and nothing is changed
    before = sorted(p.name for p in (tmp_path / "demo").iterdir())
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo")])
    assert res.exit_code == 2 and "not empty" in res.output
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == before
