"""Code shape: short functions and short argument lists, checked over the package's AST.

A public function (name without a leading underscore) outside ``hagekit/cli/`` takes at most
:data:`MAX_PARAMS` parameters (``self``/``cls``, ``*args`` and ``**kwargs`` not counted): longer
lists become value objects (``StudyInputs``, ``ExtractionSpec``, ``EncoderSpec``...). No function
anywhere is longer than :data:`MAX_LINES` lines, but for the few named in :data:`LONG_EXCEPTIONS`,
each with its reason. CLI commands may take many options (Typer reads them from the signature),
but their bodies stay short like every other function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import hagekit

PACKAGE = Path(hagekit.__file__).parent
MAX_PARAMS = 8
MAX_LINES = 80
#: ``module path:function`` -> why it may be longer than MAX_LINES (at most three).
LONG_EXCEPTIONS: dict[str, str] = {}


def _functions() -> list[tuple[Path, ast.FunctionDef | ast.AsyncFunctionDef]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((path, node))
    return out


def _n_params(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = node.args
    names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    if names and names[0] in ("self", "cls"):
        names = names[1:]
    return len(names)


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(PACKAGE.parent).as_posix()}:{node.name}"  # type: ignore[attr-defined]


def test_public_functions_outside_cli_take_at_most_eight_parameters() -> None:
    offenders = [f"{_where(p, n)} ({_n_params(n)})" for p, n in _functions()
                 if "cli" not in p.relative_to(PACKAGE).parts and not n.name.startswith("_")
                 and _n_params(n) > MAX_PARAMS]
    assert not offenders, f"more than {MAX_PARAMS} parameters (use a value object): {offenders}"


def test_no_function_is_longer_than_eighty_lines() -> None:
    offenders = [f"{_where(p, n)} ({n.end_lineno - n.lineno + 1} lines)" for p, n in _functions()
                 if n.end_lineno - n.lineno + 1 > MAX_LINES and _where(p, n) not in LONG_EXCEPTIONS]
    assert not offenders, f"longer than {MAX_LINES} lines (split it into named steps): {offenders}"


def test_named_exceptions_are_few_and_still_needed() -> None:
    assert len(LONG_EXCEPTIONS) <= 3
    lengths = {_where(p, n): n.end_lineno - n.lineno + 1 for p, n in _functions()}
    for name, reason in LONG_EXCEPTIONS.items():
        assert reason.strip(), name
        assert lengths.get(name, 0) > MAX_LINES, f"{name} is gone or short now: drop its exception"


def test_the_checks_can_fail() -> None:
    tree = ast.parse("def f(a, b, c, d, e, f, g, h, i):\n" + "    x = 1\n" * 90)
    node = tree.body[0]
    assert isinstance(node, ast.FunctionDef)
    assert _n_params(node) == 9 and node.end_lineno - node.lineno + 1 == 91
