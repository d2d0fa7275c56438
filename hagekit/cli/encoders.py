"""``hagekit encoders list``: the encoder registry (names, dimensions, weights sources)."""

from __future__ import annotations

import typer

from hagekit.cli._common import console, handle_errors

encoders_app = typer.Typer(help="Patch encoders: what `--encoder` accepts.", no_args_is_help=True)


@encoders_app.command("list")
@handle_errors
def list_cmd() -> None:
    """List registered encoders with their feature dimension, input size and weights source."""
    from rich.table import Table

    from hagekit.encoders import encoder_infos

    table = Table(title="encoders", header_style="bold")
    for col in ("name", "dim", "input px", "weights", "description"):
        table.add_column(col, overflow="fold")
    for info in encoder_infos():
        table.add_row(
            info.name,
            str(info.dim) if info.dim else "-",
            str(info.input_size) if info.input_size else "-",
            info.weights,
            info.description,
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(encoders_app, name="encoders")
