"""The README's command chain, run as written on the shared HER2ST data.

The commands are read from README.md itself (so the README cannot drift from what runs):
`genes select` -> `genes embed` -> `extract` -> `train` -> `predict --plot` -> `report` ->
`export-encoder`, in a workspace whose data/ and builtin features/ are the session fixtures
(the README's `data prepare her2st` and `extract --dataset her2`, already run once per
session). Only speed flags are appended (fewer Word2Vec epochs, one fold/trial/epoch);
every flag the README shows is kept.
"""

from __future__ import annotations

import re
import shlex

import pytest
from conftest import REPO
from typer.testing import CliRunner

#: README commands of the chain, in order (matched by prefix), and the speed flags appended.
CHAIN = [
    ("hagekit genes select --dataset her2 --rule min-sections:8 --compare", []),
    ("hagekit genes embed  --dataset her2", ["--epochs", "3"]),
    ("hagekit extract --dataset her2", []),
    ("hagekit train --dataset her2", ["--folds", "C2", "--trials", "1", "--epochs", "1"]),
    ("hagekit predict --run hagekit-work/runs/her2/hage", []),
    ("hagekit report hagekit-work/runs/her2/hage", []),
    ("hagekit export-encoder --run hagekit-work/runs/her2/hage", []),
]


def readme_commands() -> list[str]:
    """Every `hagekit ...` command of README.md's bash blocks (continuations joined, comments dropped)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].rstrip()
            if line.startswith("hagekit "):
                commands.append(line)
    return commands


def test_readme_lists_the_chain():
    cmds = readme_commands()
    for prefix, _ in CHAIN:
        assert sum(c.startswith(prefix) for c in cmds) >= 1, f"README lacks `{prefix}`"


@pytest.mark.slow
def test_readme_chain_runs_as_written(her2_root, her2_builtin_features, shared_data, tmp_path, monkeypatch):
    import anndata as ad

    from hagekit.cli.main import app

    ws = tmp_path / "hagekit-work"
    (ws / "features" / "her2").mkdir(parents=True)
    (ws / "data").symlink_to(her2_root, target_is_directory=True)
    (ws / "features" / "her2" / "builtin").symlink_to(her2_builtin_features, target_is_directory=True)
    monkeypatch.setenv("HAGEKIT_HOME", str(ws))
    monkeypatch.chdir(tmp_path)
    cmds = readme_commands()
    runner = CliRunner()
    for prefix, speed in CHAIN:
        line = next(c for c in cmds if c.startswith(prefix))
        line = line.replace("../shared/data", str(shared_data)).replace("hagekit-work", str(ws))
        args = shlex.split(line)[1:] + speed
        res = runner.invoke(app, args)
        assert res.exit_code == 0, f"`{line}` failed:\n{res.output}"
    panel = (ws / "genes" / "her2" / "panel.txt").read_text().split()
    assert (ws / "genes" / "her2" / "embeddings.txt").is_file() and len(panel) > 500
    assert (ws / "runs" / "her2" / "hage" / "summary.json").is_file()
    pred = ad.read_h5ad(tmp_path / "C2_pred.h5ad")
    assert list(pred.var_names) == panel and (pred.X >= 0).all()
    plotted = re.search(r"--plot (\S+)", next(c for c in cmds if c.startswith(CHAIN[4][0]))).group(1).split(",")
    assert all((tmp_path / f"C2_{g}.png").is_file() for g in plotted)
    assert (ws / "runs" / "her2" / "hage" / "report" / "summary.md").is_file()
    assert (tmp_path / "ge.safetensors").is_file()
