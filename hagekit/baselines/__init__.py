"""Baselines: every method is an sklearn-like estimator on frozen features.

``fit(X, Y, *, X_val=None, Y_val=None, spatial=None, spatial_val=None, groups=None,
progress=None) -> self`` and ``predict(X, *, spatial=None) -> (N, G)``; constructors take
keyword parameters only (seed as ``random_state``). Classes load lazily by name, so that
importing this package never imports torch or xgboost.
"""

from __future__ import annotations

import importlib
from typing import Any

from hagekit.errors import ConfigError

__all__ = ["BASELINES", "get_baseline", "list_baselines", "make_baseline"]

#: method name -> "module:Class"
BASELINES: dict[str, str] = {
    "mean": "hagekit.baselines.mean:MeanRegressor",
    "ridge": "hagekit.baselines.ridge:RidgeRegressor",
    "xgboost": "hagekit.baselines.xgb:XGBoostRegressor",
    "mlp": "hagekit.baselines.mlp:MLPRegressor",
    "bleep": "hagekit.baselines.bleep:BLEEPRegressor",
    "mclstexp": "hagekit.baselines.mclstexp:MclSTExpRegressor",
}


def list_baselines() -> list[str]:
    """Registered baseline names, in the order of the paper's comparison."""
    return list(BASELINES)


def get_baseline(name: str) -> type:
    """The estimator class registered as ``name`` (unknown names list the valid ones)."""
    key = name.strip().lower()
    if key not in BASELINES:
        raise ConfigError(f"--methods: unknown method {name!r} (choose from {', '.join([*BASELINES, 'hage'])})")
    module, cls = BASELINES[key].split(":")
    return getattr(importlib.import_module(module), cls)


def make_baseline(name: str, **params: Any) -> Any:
    """Build ``name`` with ``params``; unknown parameters are refused with the valid ones."""
    import inspect

    cls = get_baseline(name)
    valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    bad = [p for p in params if p not in valid]
    if bad:
        raise ConfigError(f"{name}: unknown parameters {', '.join(bad)} (valid: {', '.join(valid)})")
    defaults = inspect.signature(cls.__init__).parameters
    for key, value in params.items():
        _check_param_type(name, key, value, defaults[key].default)
    return cls(**params)


def _check_param_type(method: str, key: str, value: Any, default: Any) -> None:
    """Refuse a value of another kind than the parameter's default (``alphas = "x"``), by name."""
    import inspect
    import math

    def number(v: Any, integral: bool) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        return isinstance(v, int) if integral else math.isfinite(float(v))

    if value is None or default is None or default is inspect.Parameter.empty:
        return
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, kind = number(value, True), "an integer"
    elif isinstance(default, float):
        ok, kind = number(value, False), "a finite number"
    elif isinstance(default, str):
        ok, kind = isinstance(value, str), "a string"
    elif isinstance(default, (tuple, list)):
        integral = all(isinstance(d, int) and not isinstance(d, bool) for d in default)
        ok = isinstance(value, (tuple, list)) and all(number(v, integral) for v in value)
        kind = "a list of " + ("integers" if integral else "finite numbers")
    else:
        return
    if not ok:
        raise ConfigError(f"{method}: parameter {key} must be {kind} (default {default!r}), got {value!r}")
