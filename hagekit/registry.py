"""One registry type for every pluggable kind: methods, encoders, ST readers, datasets, benchmarks.

A :class:`Registry` maps a name to a target (the object itself, or ``"module:attr"`` loaded on
first use, so listing names imports nothing heavy) plus the entry's metadata (:class:`Entry`:
help, tiny test parameters, search space, whether it is in the default table, its download
manifest). Entries come from ``register`` calls (as a decorator or directly), from modules the
registry imports on first lookup (their decorators register), and from an entry-point group of
installed packages (a ``"module:attr"`` value is registered under the entry's name; a plain
module value is imported). Duplicate names are refused unless ``replace=True``; unknown names
raise one line listing the known ones. This module imports no pipeline stage.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from hagekit.errors import ConfigError, HagekitError

__all__ = ["Entry", "Registry", "load_target"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered name: its target and what tests, listings and CLI defaults need to know."""

    name: str
    #: The registered object, or ``"module:attr"`` imported on first :meth:`load`.
    target: T | str
    #: One line for listings and ``--help``.
    help: str = ""
    #: Keyword arguments that make a tiny, fast instance for the contract tests (``None``: none
    #: can be made here, e.g. the entry needs gated weights).
    test_params: Mapping[str, Any] | None = field(default_factory=dict)
    #: What ``bench tune`` searches (methods; empty: the class's own ``search_space``).
    search_space: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    #: Whether a command's default selection includes it (``bench baselines`` without ``--methods``).
    default: bool = True
    #: The ``hagekit data download`` manifest of its source, where there is one.
    manifest: str | None = None
    #: Fixed parameters applied on top of the caller's (a variant of another entry's target).
    params: Mapping[str, Any] = field(default_factory=dict)
    #: Anything else a kind records (an encoder's width and weights source).
    info: Any = None

    def load(self) -> T:
        """The target itself (imported now when it was registered as ``"module:attr"``)."""
        return load_target(self.target) if isinstance(self.target, str) else self.target


def load_target(ref: str) -> Any:
    """Import ``"package.module:attr"`` (``attr`` may be dotted) and return the attribute."""
    module, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """Named entries of one kind (``kind`` names it in messages, ``option`` is the CLI flag).

    ``modules`` are imported and the ``entry_points`` group is read once, on the first lookup;
    ``error`` is the exception raised for bad names; ``keep_last`` stays the last entry whatever
    is registered after it (HAGE, last in the paper's tables); ``default`` is the ``default`` of
    entries that do not say (methods: off, so a plugin never joins a default table unasked).
    """

    def __init__(
        self,
        kind: str,
        *,
        option: str | None = None,
        error: type[HagekitError] = ConfigError,
        modules: tuple[str, ...] = (),
        entry_points: str | None = None,
        keep_last: str | None = None,
        default: bool = True,
    ) -> None:
        self.kind = kind
        self.option = option
        self.error = error
        self.modules = modules
        self.entry_point_group = entry_points
        self.keep_last = keep_last
        self.default = default
        self._entries: dict[str, Entry[T]] = {}
        self._cache: dict[str, T] = {}
        self._loaded = False

    # -- registering -------------------------------------------------------------------------
    def register(self, name: str, target: T | str | None = None, *, replace: bool = False, **meta: Any) -> Any:
        """Register ``target`` under ``name`` with :class:`Entry` metadata (``help=``, ...).

        Without ``target`` this is a decorator: ``@REG.register("name", help=...)``. A string
        target must be ``"module:attr"``. A taken name raises unless ``replace``.
        """
        if target is None:
            def decorate(obj: T) -> T:
                self.register(name, obj, replace=replace, **meta)
                return obj

            return decorate
        key = self.check_name(name)
        if key in self._entries and not replace:
            raise self.error(f"{self.kind} {name!r} is already registered")
        if isinstance(target, str) and ":" not in target:
            raise self.error(f"{self.kind} {name!r}: target must be 'module:Class', got {target!r}")
        self._cache.pop(key, None)
        self._entries[key] = Entry(name=key, target=target, **{"default": self.default, **meta})
        if self.keep_last in self._entries and key != self.keep_last:
            self._entries[self.keep_last] = self._entries.pop(self.keep_last)
        return target

    def unregister(self, name: str) -> None:
        """Remove ``name`` if registered (plugins and tests)."""
        key = name.strip().lower()
        self._entries.pop(key, None)
        self._cache.pop(key, None)

    def check_name(self, name: str) -> str:
        """The registry key of ``name`` (lower case), or the error for a name that cannot be one."""
        key = name.strip().lower()
        bad_colon = ":" in key and not key.endswith(":")
        if not key or bad_colon or any(c.isspace() or c == "," for c in key):
            raise self.error(f"{self.kind} name {name!r}: use letters, digits, '-' and '_' (or 'prefix:')")
        return key

    # -- looking up --------------------------------------------------------------------------
    def entry(self, name: str) -> Entry[T]:
        """The entry of ``name`` (case-insensitive); an unknown name lists the known ones."""
        key = name.strip().lower()
        if key not in self._entries:
            self.load_plugins()
        if key not in self._entries:
            raise self.unknown(name)
        return self._entries[key]

    def get(self, name: str) -> T:
        """The target of ``name``, imported on first use."""
        entry = self.entry(name)
        if entry.name not in self._cache:
            self._cache[entry.name] = entry.load()
        return self._cache[entry.name]

    def names(self, *, default_only: bool = False) -> list[str]:
        """Registered names in registration order (``default_only``: the default selection)."""
        return [n for n, e in self.items() if e.default or not default_only]

    def items(self) -> list[tuple[str, Entry[T]]]:
        """``(name, entry)`` pairs in registration order."""
        self.load_plugins()
        return list(self._entries.items())

    def choices(self, *, default_only: bool = False, sep: str = ", ") -> str:
        """The names as one string, for help texts and messages."""
        return sep.join(self.names(default_only=default_only))

    def unknown(self, name: str) -> HagekitError:
        """The one-line error for a name that is not registered."""
        where = f"{self.option}: " if self.option else ""
        return self.error(f"{where}unknown {self.kind} {name!r} (choose from {self.choices()})")

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        self.load_plugins()
        return name.strip().lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"

    # -- plugins -----------------------------------------------------------------------------
    def load_plugins(self) -> None:
        """Import the registering ``modules`` and read the entry-point group, once."""
        if self._loaded:
            return
        self._loaded = True
        for module in self.modules:
            importlib.import_module(module)
        if self.entry_point_group:
            from importlib.metadata import entry_points

            for ep in entry_points(group=self.entry_point_group):
                self._load_entry_point(ep.name, ep.value, ep.load)

    def _load_entry_point(self, name: str, value: str, load: Callable[[], Any]) -> None:
        """``"module:attr"`` values register under the entry's name; module values are imported."""
        try:
            if ":" in value:
                if name.strip().lower() not in self._entries:
                    self.register(name, value)
            else:
                load()
        except Exception as exc:  # a broken plugin must not hide the other entries
            log.warning("%s plugin %s (%s) failed to load: %s: %s", self.kind, name, value, type(exc).__name__, exc)
