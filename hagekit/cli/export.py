"""``hagekit export-encoder`` (a run's gene-informed encoder as one .safetensors file) and
``hagekit export-features`` (feature files in another tool's folder layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hagekit.cli import _options as opt
from hagekit.cli._common import console, fail, handle_errors


def register(app: typer.Typer) -> None:
    app.command("export-encoder")(export_encoder)
    app.command("export-features", no_args_is_help=True)(export_features)


@handle_errors
def export_features(
    features: Annotated[Path, typer.Argument(help="Folder of <slide>.h5 feature files (or one file) from `hagekit extract`.")],
    to: Annotated[str, typer.Option("--to", help="Target layout: clam (h5_files/ + pt_files/).")] = "clam",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: <features>/clam).")] = None,
    overwrite: opt.Overwrite = False,
) -> None:
    """Write feature files in CLAM's layout: h5_files/<slide>.h5 (coords attrs in CLAM's
    meaning) and pt_files/<slide>.pt (torch.load gives the (N, D) tensor)."""
    from hagekit.io.clam import export_clam

    if to != "clam":
        raise fail(f"--to: unknown layout {to!r} (valid: clam)")
    target = out if out is not None else (features if features.is_dir() else features.parent) / "clam"
    res = export_clam(features, target, overwrite=overwrite)
    console.print(f"CLAM layout in {res.out_dir}: {len(res.written)} written, {len(res.skipped)} kept "
                  f"(use data_dir={res.out_dir} in CLAM)")


@handle_errors
def export_encoder(
    run: opt.Run,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file (.safetensors), loadable as --encoder ge:FILE.")],
    fold: Annotated[str | None, typer.Option("--fold", help="Fold whose model to export (default: the first).")] = None,
    trial: Annotated[int | None, typer.Option("--trial", help="Trial of --fold (default 0).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Export even if the run's embeddings collapsed.")] = False,
) -> None:
    """Export the GE module (weights, config, gene embeddings, base encoder spec) of a run; says
    (and records in the file) which fold/trial it is and which sections it was trained on."""
    from hagekit.hage.ge_encoder import describe_training, exported_training
    from hagekit.hage.ge_encoder import export_encoder as export
    from hagekit.io.atomic import check_output_file

    path = export(run, check_output_file(out, "--out"), fold=fold, trial=trial, force=force)
    console.print(f"wrote {path}; use it with --encoder ge:{path}")
    note = "" if fold is not None else " (the first; choose with --fold/--trial)"
    console.print(f"exported {describe_training(exported_training(path))}{note}", soft_wrap=True)
