"""Options shared by several commands, defined once as Typer ``Annotated`` aliases.

Use as ``from hagekit.cli import _options as opt`` and ``dataset: opt.Dataset = "her2"``:
the flag names, help texts and defaults-display stay identical in every command that takes
them. Options with a command-specific meaning (``--out``, ``--sections``) stay in the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hagekit.cli import _defaults as _dflt

__all__ = [
    "Workspace",
    "Seed",
    "SeedOrConfig",
    "Overwrite",
    "Dataset",
    "DatasetFolder",
    "DataRoot",
    "Features",
    "FeatureEncoder",
    "Panel",
    "GeneEmbeddings",
    "Config",
    "Run",
    "Split",
    "Folds",
    "Trials",
    "Device",
    "AllowLeak",
    "NoPerFoldEmbeddings",
    "leak_overrides",
]

# where things are ---------------------------------------------------------------------------
Workspace = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        envvar="HAGEKIT_HOME",
        help="Workspace root (default ./hagekit-work, or $HAGEKIT_HOME).",
        show_default=False,
    ),
]
Dataset = Annotated[str, typer.Option("--dataset", "-d", help="Dataset name (her2, cscc, synth, ...).")]
DatasetFolder = Annotated[str, typer.Option("--dataset", "-d", help="Dataset folder name.")]
DataRoot = Annotated[Path | None, typer.Option("--data-root", help="Folder with <dataset>/<section>.h5ad (default: <workspace>/data).")]
Features = Annotated[Path | None, typer.Option("--features", help="Feature folder with <section>.h5 (default: <workspace>/features/<dataset>/<encoder>).")]
FeatureEncoder = Annotated[str, typer.Option("--encoder", help="Encoder whose workspace features to use when --features is not given.")]
Panel = Annotated[Path | None, typer.Option("--genes", help="Gene panel, one symbol per line (default: <workspace>/genes/<dataset>/panel.txt).")]
GeneEmbeddings = Annotated[Path | None, typer.Option("--gene-embeddings", help="Gene2Vec-format embeddings for HAGE (default: <workspace>/genes/<dataset>/embeddings.txt).")]
Config = Annotated[Path | None, typer.Option("--config", help="TOML/YAML settings: run and HAGE keys ([run], [hage] or [hage.<section>]; bench: also baselines.<method> tables); flags override it.")]
Run = Annotated[Path, typer.Option("--run", help="Run folder written by `hagekit train`.")]

# protocol -----------------------------------------------------------------------------------
Split = Annotated[str | None, typer.Option("--split", help="section (leave-one-section-out, the paper) or patient (leak-free).")]
Folds = Annotated[str | None, typer.Option("--folds", help="Held-out sections/patients to run, comma-separated (default: all).")]
Trials = Annotated[int | None, typer.Option("--trials", help=f"Random 4:1 train/validation trials per fold (default {_dflt.run('trials')}).")]

# behaviour ----------------------------------------------------------------------------------
Seed = Annotated[int, typer.Option("--seed", help="Random seed; same seed, same numbers.")]
SeedOrConfig = Annotated[int | None, typer.Option("--seed", help=f"Random seed; same seed, same numbers (default {_dflt.run('seed')}).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Recompute outputs that already exist instead of skipping them.")]
Device = Annotated[str, typer.Option("--device", help="auto (CUDA when present; this rank's GPU under torchrun), cpu, cuda or cuda:N.")]
AllowLeak = Annotated[bool, typer.Option("--allow-leak", help="Use gene embeddings trained on a held-out section (warns).")]
NoPerFoldEmbeddings = Annotated[bool, typer.Option("--no-per-fold-embeddings", help="Refuse leaking gene embeddings instead of training leak-free ones per fold.")]


def leak_overrides(allow_leak: bool, no_per_fold_embeddings: bool) -> dict[str, bool | None]:
    """``--allow-leak`` / ``--no-per-fold-embeddings`` as run-setting overrides (None: not given)."""
    return {"allow_leak": True if allow_leak else None,
            "per_fold_embeddings": False if no_per_fold_embeddings else None}


def device_name(name: str) -> str:
    """``--device`` resolved through :func:`hagekit.device.resolve_device` (``auto`` -> cuda when present)."""
    from hagekit.device import resolve_device

    return str(resolve_device(name))
