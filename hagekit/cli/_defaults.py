"""Defaults for help texts, read from the configuration's own source, so ``--help`` never states
a number the code does not use and never imports torch to learn it.

Values come from the literal defaults of a dataclass (``HAGEConfig``, ``RunSettings``) or a
module constant, parsed with :mod:`ast` from the defining module (not imported: ``hagekit.hage``
imports torch). tests/unit/cli/test_cli_defaults.py checks them against the imported classes.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import tomllib
from pathlib import Path
from typing import Any

__all__ = ["config_default", "module_constant", "paper_recipe", "hage", "run"]


@functools.cache
def _tree(module: str) -> ast.Module:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise LookupError(f"module {module} not found")
    return ast.parse(Path(spec.origin).read_text(encoding="utf-8"))


@functools.cache
def _class_defaults(module: str, cls: str) -> dict[str, Any]:
    for node in _tree(module).body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            return {
                stmt.target.id: ast.literal_eval(stmt.value)
                for stmt in node.body
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None
            }
    raise LookupError(f"{module}.{cls} not found")


def config_default(module: str, cls: str, field: str) -> Any:
    """The literal default of ``cls.field`` in ``module``."""
    return _class_defaults(module, cls)[field]


def module_constant(module: str, name: str) -> Any:
    """The literal value of a module-level constant ``name = ...``."""
    for node in _tree(module).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets) and node.value is not None:
            return ast.literal_eval(node.value)
    raise LookupError(f"{module}.{name} not found")


def hage(field: str) -> Any:
    """A :class:`hagekit.hage.model.HAGEConfig` default."""
    return config_default("hagekit.hage.model", "HAGEConfig", field)


def run(field: str) -> Any:
    """A :class:`hagekit.config.RunSettings` default."""
    return config_default("hagekit.config", "RunSettings", field)


@functools.cache
def _paper() -> dict[str, Any]:
    path = Path(__file__).resolve().parent.parent / "recipes" / "paper.toml"
    return tomllib.loads(path.read_text(encoding="utf-8")).get("hage", {})


def paper_recipe(field: str) -> Any:
    """The ``--recipe paper`` value of a HAGE setting (``hagekit/recipes/paper.toml``)."""
    return _paper()[field]
