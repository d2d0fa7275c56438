"""The method registry: HAGE and every baseline, each a scikit-learn estimator on frozen features.

Every method subclasses :class:`hagekit.learn.estimator.Regressor`:
``fit(X, Y, *, X_val=None, Y_val=None, spatial=None, spatial_val=None, groups=None,
progress=None) -> self`` and ``predict(X, *, spatial=None) -> (N, G)``; constructors only store
their parameters (seed as ``random_state``), so ``sklearn.base.clone`` and ``GridSearchCV``
work. Classes load lazily by name, so that importing this package never imports torch or xgboost.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from hagekit.errors import ConfigError
from hagekit.learn.param_checks import check_declared_params, declared_constraints

__all__ = [
    "METHODS",
    "get_method",
    "list_methods",
    "make_method",
    "method_accepts",
    "BASELINES",
    "get_baseline",
    "list_baselines",
    "make_baseline",
    "register_method",
    "method_search_space",
]

#: method name -> "module:Class", in the order of the paper's comparison.
METHODS: dict[str, str] = {
    "mean": "hagekit.baselines.mean:MeanRegressor",
    "ridge": "hagekit.baselines.ridge:RidgeRegressor",
    "xgboost": "hagekit.baselines.xgb:XGBoostRegressor",
    "mlp": "hagekit.baselines.mlp:MLPRegressor",
    "bleep": "hagekit.baselines.bleep:BLEEPRegressor",
    "mclstexp": "hagekit.baselines.mclstexp:MclSTExpRegressor",
    "ridge-ctx": "hagekit.baselines.ridge_ctx:RidgeCtxRegressor",
    "triplex": "hagekit.baselines.triplex:TriplexRegressor",
    "histogene": "hagekit.baselines.histogene:HisToGeneRegressor",
    "hist2st": "hagekit.baselines.hist2st:Hist2STRegressor",
    "hage": "hagekit.hage.estimator:HAGERegressor",
}
BASELINES = METHODS

#: Entry-point group through which installed packages add methods (name = "module:Class").
ENTRY_POINT_GROUP = "hagekit.methods"
_plugins_loaded = False


def register_method(name: str, target: type | str, *, replace: bool = False) -> None:
    """Add a method to the registry: ``target`` is the estimator class or ``"module:Class"``.

    A method is one file: a :class:`~hagekit.learn.estimator.Regressor` subclass (its
    optional ``search_space`` class attribute is what ``bench tune --method`` searches), then
    one ``register_method`` call (or one line in :data:`METHODS`, or an entry point in the
    ``hagekit.methods`` group of an installed package). A taken name is refused unless ``replace``.
    """
    key = name.strip().lower()
    if not key or any(c.isspace() or c == "," for c in key):
        raise ConfigError(f"method name {name!r}: use letters, digits, '-' and '_'")
    if key in METHODS and not replace:
        raise ConfigError(f"method {name!r} is already registered")
    if isinstance(target, str):
        if ":" not in target:
            raise ConfigError(f"method {name!r}: target must be 'module:Class', got {target!r}")
        METHODS[key] = target
    else:
        _CLASSES[key] = target
        METHODS[key] = f"{target.__module__}:{target.__qualname__}"
    if "hage" in METHODS and key != "hage":  # HAGE stays last, as in the paper's tables
        METHODS["hage"] = METHODS.pop("hage")


_CLASSES: dict[str, type] = {}


def _load_plugins() -> None:
    """Register the methods of installed packages (``hagekit.methods`` entry points), once."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name.strip().lower() not in METHODS:
            register_method(ep.name, ep.value)


def list_methods() -> list[str]:
    """Registered method names, in the order of the paper's comparison (HAGE last)."""
    _load_plugins()
    return list(METHODS)


def method_search_space(name: str) -> dict[str, tuple[Any, ...]]:
    """The search space ``name`` declares for ``bench tune --method`` (its ``search_space``), or {}."""
    space = getattr(get_method(name), "search_space", None) or {}
    return {k: tuple(v) for k, v in dict(space).items()}


def get_method(name: str) -> type:
    """The estimator class registered as ``name`` (unknown names list the valid ones)."""
    key = name.strip().lower()
    if key not in METHODS:
        _load_plugins()
    if key not in METHODS:
        raise ConfigError(f"--methods: unknown method {name!r} (choose from {', '.join(METHODS)})")
    if key in _CLASSES:
        return _CLASSES[key]
    module, cls = METHODS[key].split(":")
    return getattr(importlib.import_module(module), cls)


def method_accepts(name: str, param: str) -> bool:
    """Whether method ``name``'s constructor takes ``param`` (e.g. ``device``, ``epochs``)."""
    return param in get_method(name)._get_param_names()


def make_method(name: str, *, context: Mapping[str, Any] | None = None, **params: Any) -> Any:
    """Build ``name``: constructor arguments from ``context`` that it accepts (e.g. ``device``,
    ``random_state``, HAGE's ``config`` and ``gene_embeddings``), then ``set_params(**params)``
    (HAGE: ``config__<field>``). Unknown parameters are refused with the valid ones."""
    cls = get_method(name)
    accepted = set(cls._get_param_names())
    est = cls(**{k: v for k, v in (context or {}).items() if k in accepted})
    valid = est.get_params(deep=True)
    bad = [p for p in params if p not in valid]
    if bad:
        raise ConfigError(f"{name}: unknown parameters {', '.join(bad)} (valid: {', '.join(valid)})")
    defaults = inspect.signature(cls.__init__).parameters
    for key, value in params.items():
        if key in defaults:  # HAGE's config__<field> values are checked by HAGEConfig
            _check_param_type(name, key, value, defaults[key].default)
    est = est.set_params(**params)
    check_declared_params(name.strip().lower(), declared_constraints(cls), est.get_params(deep=False))
    return est


list_baselines = list_methods
get_baseline = get_method


def make_baseline(name: str, **params: Any) -> Any:
    """Build ``name`` with ``params`` (:func:`make_method` without a context)."""
    return make_method(name, **params)


def _check_param_type(method: str, key: str, value: Any, default: Any) -> None:
    """Refuse a value of another kind than the parameter's default (``alphas = "x"``), by name."""
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
