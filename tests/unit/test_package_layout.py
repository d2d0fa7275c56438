"""Package structure: lazy public exports (one helper) resolve to the defining modules."""

from __future__ import annotations

import importlib

import pytest


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
