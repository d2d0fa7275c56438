"""What every command shares: consoles, error handling, progress bars (options: ``_options.py``).

Only ``hagekit.cli`` prints. User errors (:class:`~hagekit.errors.HagekitError`) become one
red line on stderr and exit code 2; ``--verbose`` shows the traceback instead. This is also
the one place where OS errors (permission denied, no space left, is a directory, not a
directory, read-only file system; h5py's and safetensors' included) become one line naming
the path (exit 2), and where every command's numbers are checked: a float option must be
finite (``--lr inf`` is refused) and ``--seed`` must be >= 0, the same rule everywhere.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from hagekit.distributed import is_main_process

console = Console(quiet=not is_main_process())  # under torchrun, results are printed by rank 0 only
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


class _State:
    verbose: bool = False
    quiet: bool = False
    hard_exit: bool = False  # a fatal OS error was reported: skip interpreter clean-up (see main)


state = _State()


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one red line to stderr and return the ``typer.Exit`` to raise."""
    err_console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(code=code)


def handle_errors(fn: F) -> F:
    """Turn library errors into one-line messages and exit code 2 (traceback with --verbose)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from hagekit.errors import HagekitError, is_fatal_os_error, os_error_message

        state.hard_exit = False
        _printable_paths()
        try:
            check_numbers(kwargs)
            return fn(*args, **kwargs)
        except HagekitError as exc:
            if state.verbose:
                raise
            raise fail(_escape(str(exc))) from None
        except Exception as exc:  # OS errors only (h5py/safetensors wrap them); others propagate
            message = os_error_message(exc)
            if message is None or state.verbose:
                raise
            state.hard_exit = is_fatal_os_error(exc)
            raise fail(_escape(message)) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted: finished outputs are kept; rerun to resume[/]")
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


def _printable_paths() -> None:
    """Paths that are not valid UTF-8 (undecodable bytes held as surrogates) print with those
    bytes as ``\\xff`` escapes instead of failing the command after its work is done."""
    import sys

    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and getattr(stream, "errors", None) == "strict":
            with contextlib.suppress(Exception):
                stream.reconfigure(errors="backslashreplace")


def check_numbers(values: dict[str, Any]) -> None:
    """Refuse non-finite float options, a negative ``--seed`` and ``--jobs`` below 1 (named as the user typed them)."""
    import math

    from hagekit.errors import ConfigError

    for name, value in values.items():
        items = value if isinstance(value, (list, tuple)) else (value,)
        for item in items:
            if isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(f"{option_name(name)}: must be a finite number, got {item}")
        if name == "seed" and isinstance(value, int) and not isinstance(value, bool) and value < 0:
            raise ConfigError(f"--seed: must be >= 0, got {value}")
        if name == "jobs" and isinstance(value, int) and not isinstance(value, bool) and value < 1:
            raise ConfigError(f"{option_name(name)}: must be >= 1 worker process, got {value}")


def option_name(param: str) -> str:
    """The command-line spelling of a parameter (``eval_threshold`` -> ``--eval-threshold``)."""
    import click

    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        for p in ctx.command.params:
            if p.name == param and p.opts:
                return max(p.opts, key=len)
    return "--" + param.replace("_", "-")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text.replace("\n", " "))


def _h5py_close_noise(exc: BaseException | None, tb: Any) -> bool:
    """An h5py object dying on a full disk (reported after the command's own one-line error)."""
    from hagekit.errors import is_fatal_os_error

    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = tb.tb_frame.f_code.co_filename if tb is not None else ""
    return exc is not None and not state.verbose and "h5py" in where and is_fatal_os_error(exc)


def _quiet_unraisable(unraisable: Any) -> None:
    import sys

    if not _h5py_close_noise(unraisable.exc_value, unraisable.exc_traceback):
        sys.__unraisablehook__(unraisable)


def _quiet_excepthook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
    import sys

    if not _h5py_close_noise(exc, tb):
        sys.__excepthook__(kind, exc, tb)


def setup_logging(verbose: bool) -> None:
    """Route library logs (warnings by default, info with --verbose) to stderr via rich."""
    import sys

    from rich.logging import RichHandler

    sys.unraisablehook = _quiet_unraisable  # h5py prints its failed closes through both hooks
    sys.excepthook = _quiet_excepthook

    handler = RichHandler(console=err_console, show_time=False, show_path=False, markup=False)
    root = logging.getLogger("hagekit")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


class _RichTask:
    def __init__(self, progress: Progress, task_id: TaskID) -> None:
        self._progress = progress
        self._id = task_id

    def advance(self, n: float = 1, **fields: Any) -> None:
        self._progress.update(self._id, advance=n, **fields)

    def update(self, *, description: str | None = None, total: float | None = None, **fields: Any) -> None:
        kwargs: dict[str, Any] = dict(fields)
        if description is not None:
            kwargs["description"] = description
        if total is not None:
            kwargs["total"] = total
        self._progress.update(self._id, **kwargs)

    def close(self) -> None:
        self._progress.stop_task(self._id)


class RichReporter:
    """A :class:`hagekit.progress.Reporter` drawing rich progress bars on stderr.

    Tasks show ``{rate}`` (items/s) and any live fields such as ``loss`` or ``pcc`` passed
    as keyword arguments in ``status``.
    """

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def task(self, description: str, total: float | None = None, **fields: Any) -> _RichTask:
        fields.setdefault("status", "")
        return _RichTask(self.progress, self.progress.add_task(description, total=total, **fields))

    def message(self, text: str) -> None:
        self.progress.console.print(text, markup=False, highlight=False)


class RateColumn(ProgressColumn):
    """Items per second (patches/s, spots/s, steps/s)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.1f}/s" if speed else "  -/s", style="progress.data.speed")


def make_progress(enabled: bool = True) -> Progress:
    """The house progress bar: description, bar, n/total, rate, elapsed, remaining, status."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TextColumn("[cyan]{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
        disable=state.quiet or not enabled,
    )


class reporting:
    """Context manager yielding a :class:`RichReporter` (``with reporting() as progress:``).

    ``enabled=False`` draws nothing; by default only rank 0 draws under torchrun.
    """

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = is_main_process() if enabled is None else enabled

    def __enter__(self) -> RichReporter:
        self._progress = make_progress(self.enabled)
        self._progress.__enter__()
        return RichReporter(self._progress)

    def __exit__(self, *exc: Any) -> None:
        self._progress.__exit__(*exc)


def split_csv(value: str | None) -> list[str] | None:
    """Parse ``"A1,B2, C3"`` into ``["A1", "B2", "C3"]``; ``None``/empty stays ``None``."""
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items or None
