"""Package structure: lazy public exports (one helper), no import circle, no upward import."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hagekit


@pytest.mark.parametrize("package", ["hagekit", "hagekit.genes", "hagekit.hage", "hagekit.bench"])
def test_lazy_exports_resolve_and_are_listed(package: str) -> None:
    mod = importlib.import_module(package)
    names = [n for n in mod.__all__ if n != "__version__"]
    assert names and sorted(mod.__all__) == dir(mod)
    for name in names:
        value = getattr(mod, name)
        assert getattr(importlib.import_module(mod._API[name]), name) is value
    with pytest.raises(AttributeError, match=rf"module '{package}' has no attribute 'not_a_name'"):
        mod.not_a_name  # noqa: B018


# --- layering: the import graph (function-level imports included, TYPE_CHECKING blocks not) ---

PACKAGE = Path(hagekit.__file__).parent
#: Shared building blocks: they import no stage of the pipeline.
BASE = {"errors", "io", "device", "progress", "_lazy", "targets", "workspace", "metrics", "plots", "registry", "config", "study"}
STAGES = {"data", "genes", "slides", "encoders", "extract", "learn", "hage", "training", "baselines", "bench", "predict",
          "report", "demo", "cli"}
#: One direction for learning: BASE < learn (loop, estimator base, torch template) < the methods
#: (hage, baselines; neither imports the other) < training (splits, datasets, protocol, runs)
#: < bench < cli. What each stage may not import (upper stages); nothing imports the cli.
FORBIDDEN = {
    **{b: STAGES for b in BASE},
    "data": STAGES - {"data", "slides"},  # slides is the image layer under data
    "slides": STAGES - {"slides"},
    "encoders": STAGES - {"encoders"},
    "genes": STAGES - {"genes", "data"},
    "extract": STAGES - {"extract", "data", "slides", "encoders"},
    "learn": STAGES - {"learn"},  # the learning layer imports no method and no stage: BASE and itself only
    "hage": {"predict", "report", "demo", "bench", "baselines", "extract", "training", "cli"},
    "baselines": STAGES - {"baselines", "learn"},
    "training": {"predict", "report", "demo", "bench", "extract", "cli"},  # above the methods it runs
    "predict": {"bench", "demo", "cli", "training", "baselines"},
    "report": STAGES - {"report"},
    "bench": {"predict", "demo", "cli"},
    "demo": {"cli", "bench"},
}


def _module_name(path: Path) -> str:
    parts = ["hagekit", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """hagekit modules ``path`` imports anywhere (a ``from pkg import mod`` names ``pkg.mod``)."""
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                out.update(a.name for a in child.names if a.name.startswith("hagekit"))
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and (child.module or "").startswith("hagekit"):
                for alias in child.names:
                    full = f"{child.module}.{alias.name}"
                    out.add(full if full in modules else str(child.module))
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return out


@pytest.fixture(scope="module")
def import_graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {m: {i for i in _imports(p, modules) if i in modules and i != m} for m, p in paths.items()}


def _group(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "hagekit"


def test_no_import_circle(import_graph: dict[str, set[str]]) -> None:
    """No module reaches itself through the modules it imports (at import time or later)."""
    state: dict[str, int] = {}

    def cycle_from(m: str, stack: list[str]) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for dep in sorted(import_graph[m]):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep):], dep]
            if dep not in state and (found := cycle_from(dep, stack)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for module in sorted(import_graph):
        if module not in state:
            assert (found := cycle_from(module, [])) is None, " -> ".join(found)


def test_nothing_imports_upward(import_graph: dict[str, set[str]]) -> None:
    bad = sorted(
        f"{m} imports {dep}"
        for m, deps in import_graph.items()
        for dep in deps
        if _group(dep) in FORBIDDEN.get(_group(m), set()) or (_group(dep) == "cli" and _group(m) not in {"cli", "__main__"})
    )
    assert not bad, bad


def test_learning_layer_imports_only_base_modules(import_graph: dict[str, set[str]]) -> None:
    """``hagekit.learn`` is the bottom of every method: it imports BASE modules and itself, nothing else."""
    learn = {m for m in import_graph if _group(m) == "learn"}
    assert {"hagekit.learn.loop", "hagekit.learn.estimator", "hagekit.learn.torch_regressor"} <= learn
    bad = sorted(f"{m} imports {d}" for m in learn for d in import_graph[m] if _group(d) not in BASE | {"learn"})
    assert not bad, bad


def test_methods_sit_on_the_learning_layer(import_graph: dict[str, set[str]]) -> None:
    """HAGE and the torch baselines share one estimator template, and HAGE's fit lives in ``hage/``."""
    assert "hagekit.learn.torch_regressor" in import_graph["hagekit.hage.estimator"]
    assert "hagekit.learn.torch_regressor" in import_graph["hagekit.baselines.mlp"]
    assert "hagekit.hage.fit" in import_graph and not (PACKAGE / "training" / "fit.py").exists()


def test_encoder_registry_names_no_plugin(import_graph: dict[str, set[str]]) -> None:
    """``ge:`` registers itself through the entry-point group, like any third-party encoder."""
    source = (PACKAGE / "encoders" / "registry.py").read_text(encoding="utf-8")
    assert "ge_encoder" not in source and "hagekit.hage" not in source
    assert not {d for d in import_graph["hagekit.encoders.registry"] if _group(d) not in ("errors", "registry")}
    pyproject = (PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8")
    assert '[project.entry-points."hagekit.encoders"]\nge = "hagekit.hage.ge_encoder"' in pyproject


@pytest.mark.slow  # a few seconds: nox -s tests runs it, the fast lane does not
def test_every_module_imports_in_a_fresh_interpreter() -> None:
    """Each module imports cleanly with only itself asked for first (no order-dependent circle)."""
    names = sorted(_module_name(p) for p in PACKAGE.rglob("*.py") if p.name != "__main__.py")
    code = (
        "import importlib, sys\n"
        f"names = {names!r}\n"
        "for n in names + names[::-1]:\n"
        "    for m in [k for k in sys.modules if k == 'hagekit' or k.startswith('hagekit.')]:\n"
        "        del sys.modules[m]\n"
        "    importlib.import_module(n)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE.parent), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
