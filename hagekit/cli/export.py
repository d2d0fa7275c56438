"""``hagekit export-encoder``: a trained run's gene-informed encoder as one .safetensors file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hagekit.cli._common import console, handle_errors


def register(app: typer.Typer) -> None:
    app.command("export-encoder")(export_encoder)


@handle_errors
def export_encoder(
    run: Annotated[Path, typer.Option("--run", help="Run folder written by `hagekit train`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file (.safetensors), loadable as --encoder ge:FILE.")],
    fold: Annotated[str | None, typer.Option("--fold", help="Fold whose model to export (default: the first).")] = None,
    trial: Annotated[int | None, typer.Option("--trial", help="Trial of --fold (default 0).")] = None,
) -> None:
    """Export the GE module (weights, config, gene embeddings, base encoder spec) of a run."""
    from hagekit.hage.ge_encoder import export_encoder as export
    from hagekit.io.atomic import check_output_file

    path = export(run, check_output_file(out, "--out"), fold=fold, trial=trial)
    console.print(f"wrote {path}; use it with --encoder ge:{path}")
