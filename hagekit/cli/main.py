"""The ``hagekit`` command: a root Typer app joining one module per command group.

Every entry of :data:`COMMANDS` (a :class:`hagekit.registry.Registry`) is a module's
``register(app)``; modules import only typer/rich at import time so that ``hagekit --help``
stays fast (no torch, no anndata).
"""

from __future__ import annotations

from typing import Annotated

import typer

from hagekit import __version__
from hagekit.cli._common import setup_logging, state
from hagekit.registry import Registry

#: The command groups of ``hagekit``, in ``--help`` order: name -> its module's ``register(app)``.
COMMANDS: Registry = Registry("command", option="hagekit")
for _group in ("data", "genes", "encoders", "extract", "train", "predict", "report", "bench", "export", "demo"):
    COMMANDS.register(_group, f"hagekit.cli.{_group}:register")

app = typer.Typer(
    name="hagekit",
    help="Gene-aware pathology representation learning (HAGE): data -> genes -> extract -> train -> predict/bench.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode="rich",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"hagekit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs and full tracebacks on errors.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Hide progress bars.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """hagekit: HAGE end to end, with honest benchmarks."""
    state.verbose = verbose
    state.quiet = quiet
    setup_logging(verbose)


for _group in COMMANDS.names():
    COMMANDS.get(_group)(app)


def main() -> None:
    """Console-script entry point.

    After a fatal OS error (disk full) HDF5 may still hold a file it cannot flush; its
    clean-up at interpreter exit crashed the process (exit 139) after the one-line error.
    The process then ends at once with the error's exit code, skipping that clean-up.
    """
    try:
        app()
    except SystemExit as exc:
        _leave_process_group(exc.code in (0, None))
        if state.hard_exit:
            import os
            import sys

            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exc.code if isinstance(exc.code, int) else 1)
        raise
    _leave_process_group(True)


def _leave_process_group(finished: bool) -> None:
    """Under torchrun: meet the other ranks once more (only after success), then leave the group."""
    import sys

    if "torch.distributed" in sys.modules:  # never import torch just to find out
        from hagekit.distributed import shutdown_distributed

        shutdown_distributed(wait=finished)
