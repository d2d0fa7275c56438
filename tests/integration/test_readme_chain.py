"""The README as a script: every command of its ```bash blocks, in order, on the shared data.

Commands are read from README.md itself (so the README cannot drift from what runs, and a
command that moves to another block or file still is found) and classified by prefix in
:data:`RULES`: run (with speed flags appended: one fold, one trial, one epoch; every flag the
README shows is kept), or skipped with the reason (a GPU, UNI weights, Gene2Vec, a download,
hours on 2 cores, a placeholder for the user's own file). A README command that no rule
classifies fails :func:`test_every_readme_command_is_classified`, so new commands get a
decision. The workspace's data/ and builtin features/ are the session fixtures (the README's
`data prepare her2st` and `extract --dataset her2` then find them prepared and skip them).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from clitext import flat
from conftest import REPO
from typer.testing import CliRunner


@dataclass(frozen=True)
class Run:
    """A README command the test runs: speed flags appended, the exit code and text it must give."""

    speed: tuple[str, ...] = ()
    exit_code: int = 0
    expect: str = ""


GPU_UNI = "needs UNI weights (gated on Hugging Face) and a GPU"
GENE2VEC = "needs the Gene2Vec file (jingcheng-du/Gene2vec), not on these machines"
HOURS = "hours on 2 cores; the bench tests run it on tiny data"
FAST_TRAIN = ("--folds", "C2", "--trials", "1", "--epochs", "1")

#: (prefix, decision): the first rule whose prefix starts the command decides; str = skipped (reason).
RULES: list[tuple[str, Run | str]] = [
    ("pip install", "installs from PyPI (the test runs this checkout, with its environment)"),
    ("python -m venv", "creates a virtual environment"),
    (". .venv/bin/activate", "activates that virtual environment"),
    ("pytest", "runs the test suite itself"),
    ("nox ", "runs the project's own sessions (tests, lint, benchmarks)"),
    ("torchrun ", "several GPUs or nodes (torchrun on CPU: tests/e2e/test_extract_scale.py)"),
    ("G2V=", "shell variables for the paper's tables below"),
    ("hagekit demo", Run()),
    ("hagekit data prepare cscc", "cSCC (GEO GSE144240) is a download, not on these machines"),
    ("hagekit data prepare hest", "HEST-1k is a download, not on these machines"),
    ("hagekit data prepare visium", Run()),
    ("hagekit data prepare stutility", Run()),
    ("hagekit data prepare her2st", Run()),
    ("hagekit data synth", Run()),
    ("hagekit data list", Run()),
    ("hagekit data hest-bench-task", Run()),
    ("hagekit data download", "a download (no internet here)"),
    ("hagekit data probe-set", Run()),
    # the paper's literal rule empties the panel on HER2ST: the README says it prints where, and it must
    ("hagekit genes select --dataset her2 --top 1000 --rule intersect",
     Run(exit_code=2, expect="refusing to write an empty panel")),
    ("hagekit genes select --dataset her2 --rule min-sections:8 --vocab", GENE2VEC),
    ("hagekit genes select", Run()),
    ("hagekit genes embed", Run(speed=("--epochs", "3"))),
    ("hagekit genes check", GENE2VEC),
    ("hagekit encoders list", Run()),
    ("hagekit extract --dataset her2 --encoder uni", GPU_UNI),
    ("hagekit extract --dataset her2 --encoder timm:", "a ViT over every spot: minutes of CPU (the README's speed-test line)"),
    ("hagekit extract --dataset her2", Run()),
    ("hagekit extract --slides /shared/", GPU_UNI + " (a Slurm array over TCGA-BRCA)"),
    ("hagekit extract --slides", Run()),
    ("hagekit export-features", Run()),
    ("hagekit train --dataset her2 --config hage.toml", "a placeholder for your own config file"),
    ("hagekit train --dataset her2 --genes", "leave-one-patient-out needs images of 2+ patients; only patient C's "
     "(C2..C6) are on these machines (the embed line before it runs)"),
    ("hagekit train", Run(speed=FAST_TRAIN)),
    ("hagekit predict", Run()),
    ("hagekit report", Run()),
    ("hagekit export-encoder", Run()),
    ("hagekit bench linear-probe --dataset folder", Run()),
    ("hagekit bench linear-probe --dataset pcam", "PCAM is a download; " + GPU_UNI),
    ("hagekit bench hest", "HEST-Benchmark's task folders are a download; " + GPU_UNI),
    ("hagekit bench abmil", "TCGA-BRCA slides are a download; " + GPU_UNI),
    ("hagekit bench baselines --dataset her2 --encoder uni", GPU_UNI + "; " + GENE2VEC),
    ("hagekit bench ablation  --dataset her2 --encoder uni", GPU_UNI + "; " + GENE2VEC),
    ("hagekit bench grid      --dataset her2 --encoder uni", GPU_UNI + "; " + GENE2VEC),
    ("hagekit bench ", HOURS),
]


#: The documents whose commands run, in this order.
DOCUMENTS = ("README.md", "docs/commands.md")


def readme_commands(text: str | None = None) -> list[str]:
    """Every command of the ```bash blocks of :data:`DOCUMENTS`, in order: continuations joined,
    comments dropped, ``a && b`` split into two commands."""
    if text is None:  # the README's walk-through, then the command reference it points to
        text = "\n".join((REPO / name).read_text(encoding="utf-8") for name in DOCUMENTS)
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.split(r"(?:^|\s)#", line, maxsplit=1)[0].strip()
            commands.extend(part.strip() for part in line.split("&&") if part.strip())
    return commands


def classify(command: str) -> Run | str | None:
    """The decision of the first rule whose prefix starts ``command`` (None: no rule)."""
    normalised = " ".join(command.split())
    for prefix, decision in RULES:
        if normalised.startswith(" ".join(prefix.split())):
            return decision
    return None


def test_every_readme_command_is_classified():
    commands = readme_commands()
    assert sum(c.startswith("hagekit ") for c in commands) > 30
    unclassified = [c for c in commands if classify(c) is None]
    assert not unclassified, f"README commands with no rule in RULES (run or skip, with a reason): {unclassified}"
    run = [c for c in commands if isinstance(classify(c), Run)]
    for needed in ("hagekit genes select", "hagekit genes embed", "hagekit train", "hagekit predict", "hagekit export-encoder"):
        assert any(c.startswith(needed) for c in run), f"README lacks a runnable `{needed}`"


def test_parsing_and_classification_rules():
    text = "x\n```bash\npip install . && hagekit demo   # try it\nhagekit data list \\\n    --dataset her2\n```\n"
    assert [" ".join(c.split()) for c in readme_commands(text)] == ["pip install .", "hagekit demo", "hagekit data list --dataset her2"]
    assert classify("hagekit genes select --dataset her2 --rule min-sections:8 --vocab g.txt") == GENE2VEC
    assert isinstance(classify("hagekit genes select --dataset her2 --rule min-sections:8"), Run)
    assert classify("hagekit bench  tune --dataset her2") == HOURS  # spacing does not matter
    assert classify("hagekit frobnicate") is None


def _placeholders(tmp_path: Path, shared_data: Path) -> dict[str, str]:
    """README arguments that stand for the user's own files, mapped to real ones."""
    slides = tmp_path / "slides"
    slides.mkdir()
    (slides / "cmu-1-small-region.svs").symlink_to(shared_data / "wsi" / "cmu-1-small-region.svs")
    return {
        "slide.svs": str(shared_data / "wsi" / "tcga-cr-7395-01a-01-ts1.svs"),  # a real slide without mpp
        "slides/": str(slides),
        "her2st/": str(shared_data / "her2st"),
    }


def _argv(command: str, ws: Path, shared_data: Path, placeholders: dict[str, str]) -> list[str]:
    line = command.replace("../shared/data", str(shared_data)).replace("hagekit-work", str(ws))
    return [placeholders.get(tok, tok) for tok in shlex.split(line)[1:]]


@pytest.mark.slow
def test_readme_runs_in_order(her2_root, her2_builtin_features, shared_data, tmp_path, monkeypatch):
    import anndata as ad

    from hagekit.cli.main import app

    ws = tmp_path / "hagekit-work"
    (ws / "data").mkdir(parents=True)
    (ws / "features" / "her2").mkdir(parents=True)
    (ws / "data" / "her2").symlink_to(her2_root / "her2", target_is_directory=True)
    (ws / "features" / "her2" / "builtin").symlink_to(her2_builtin_features, target_is_directory=True)
    monkeypatch.setenv("HAGEKIT_HOME", str(ws))
    monkeypatch.chdir(tmp_path)
    placeholders = _placeholders(tmp_path, shared_data)
    runner = CliRunner()
    ran, skipped = [], []
    for command in readme_commands():
        decision = classify(command)
        if not isinstance(decision, Run):
            skipped.append((command, decision))
            continue
        args = _argv(command, ws, shared_data, placeholders) + list(decision.speed)
        res = runner.invoke(app, args)
        assert res.exit_code == decision.exit_code, f"`{command}` exited {res.exit_code}:\n{res.output}"
        assert decision.expect in flat(res.output), f"`{command}` did not say {decision.expect!r}:\n{res.output}"
        ran.append(command)
    assert len(ran) >= 25 and all(reason for _, reason in skipped)
    panel = (ws / "genes" / "her2" / "panel.txt").read_text().split()
    assert (ws / "genes" / "her2" / "embeddings.txt").is_file() and len(panel) > 500
    assert (ws / "runs" / "her2" / "hage" / "summary.json").is_file()
    pred = ad.read_h5ad(tmp_path / "C2_pred.h5ad")
    assert list(pred.var_names) == panel and (pred.X >= 0).all()
    assert (ws / "runs" / "her2" / "hage" / "report" / "summary.md").is_file()
    assert (tmp_path / "ge.safetensors").is_file()
