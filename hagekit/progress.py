"""Progress reporting without printing: the library reports, the CLI draws.

Library functions take ``progress: Reporter | None``; the CLI passes a rich-backed reporter
(``hagekit.cli._common.RichReporter``), tests and scripts pass nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TypeVar

__all__ = ["Reporter", "Task", "NullReporter", "track"]

T = TypeVar("T")


class Task(Protocol):
    """One progress bar: advance it, update its live fields (loss, pcc, ...), close it."""

    def advance(self, n: float = 1, **fields: Any) -> None: ...

    def update(self, *, description: str | None = None, total: float | None = None, **fields: Any) -> None: ...

    def close(self) -> None: ...


class Reporter(Protocol):
    """Creates progress tasks and receives one-line status messages."""

    def task(self, description: str, total: float | None = None, **fields: Any) -> Task: ...

    def message(self, text: str) -> None: ...


class _NullTask:
    def advance(self, n: float = 1, **fields: Any) -> None:
        pass

    def update(self, *, description: str | None = None, total: float | None = None, **fields: Any) -> None:
        pass

    def close(self) -> None:
        pass


class NullReporter:
    """Reports nothing (the default for library calls)."""

    def task(self, description: str, total: float | None = None, **fields: Any) -> Task:
        return _NullTask()

    def message(self, text: str) -> None:
        pass


def reporter_or_null(progress: Reporter | None) -> Reporter:
    """``progress`` itself, or a :class:`NullReporter` when it is ``None``."""
    return progress if progress is not None else NullReporter()


def track(
    items: Iterable[T], description: str, *, total: int | None = None, progress: Reporter | None = None
) -> Iterator[T]:
    """Iterate ``items`` while advancing a progress task by one per item."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    task = reporter_or_null(progress).task(description, total)
    try:
        for item in items:
            yield item
            task.advance(1)
    finally:
        task.close()
