"""Lazy public exports for package ``__init__`` files (PEP 562), written once.

A package lists ``public name -> defining module``; a name is imported on first access and
cached in the package, so importing the package stays cheap (``hagekit --help`` never
imports torch).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_exports", "by_module"]


def lazy_exports(package: str, api: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` exporting ``api`` (name -> module) lazily.

    Usage in an ``__init__.py``: ``__getattr__, __dir__ = lazy_exports(__name__, _API)``.
    """

    def __getattr__(name: str) -> Any:
        module = api.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(getattr(sys.modules[package], "__all__", api))

    return __getattr__, __dir__


def by_module(modules: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """``{module: public names}`` as ``{name: module}`` (a package lists its API by module)."""
    api: dict[str, str] = {}
    for module, names in modules.items():
        for name in names:
            if name in api:
                raise ValueError(f"{name!r} exported from both {api[name]} and {module}")
            api[name] = module
    return api
