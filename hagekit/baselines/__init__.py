"""The method registry: HAGE and every baseline, each a scikit-learn estimator on frozen features.

Every method subclasses :class:`hagekit.learn.estimator.Regressor`:
``fit(X, Y, *, X_val=None, Y_val=None, spatial=None, spatial_val=None, groups=None,
progress=None) -> self`` and ``predict(X, *, spatial=None) -> (N, G)``; constructors only store
their parameters (seed as ``random_state``), so ``sklearn.base.clone`` and ``GridSearchCV``
work. Classes load lazily by name, so that importing this package never imports torch or xgboost.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from hagekit.errors import ConfigError
from hagekit.learn.param_checks import check_declared_params, declared_constraints
from hagekit.registry import Registry

__all__ = [
    "METHODS",
    "get_method",
    "list_methods",
    "make_method",
    "method_accepts",
    "get_baseline",
    "list_baselines",
    "make_baseline",
    "register_method",
    "method_search_space",
]

#: Entry-point group through which installed packages add methods (name = "module:Class").
ENTRY_POINT_GROUP = "hagekit.methods"

#: The method registry, in the order of the paper's comparison (HAGE stays last). Each entry's
#: ``test_params`` make a tiny instance for tests/unit/test_registry_contracts.py; ``default=True``
#: puts it in the table ``bench baselines`` runs without ``--methods`` (off unless said).
METHODS: Registry[type] = Registry("method", option="--methods", entry_points=ENTRY_POINT_GROUP, keep_last="hage",
                                   default=False)

_TINY_TORCH = {"epochs": 2, "device": "cpu"}
_TINY_HAGE = {"device": "cpu", **{f"config__{k}": v for k, v in
                                  {"d": 8, "n_heads": 2, "k1": 2, "k2": 2, "epochs": 2, "batch_size": 16}.items()}}
METHODS.register("mean", "hagekit.baselines.mean:MeanRegressor", help="training mean of every gene")  # every table adds it
METHODS.register("ridge", "hagekit.baselines.ridge:RidgeRegressor", default=True,
                 help="standardise, optional PCA, ridge with inner-CV penalty", test_params={"pca": None, "cv": 2})
METHODS.register("xgboost", "hagekit.baselines.xgb:XGBoostRegressor", default=True,
                 help="boosted trees with validation early stopping", test_params={"n_estimators": 3, "target_pca": None, "n_jobs": 1})
METHODS.register("mlp", "hagekit.baselines.mlp:MLPRegressor", default=True,
                 help="two-hidden-layer perceptron with early stopping", test_params={"hidden": 8, **_TINY_TORCH})
METHODS.register("bleep", "hagekit.baselines.bleep:BLEEPRegressor", default=True,
                 help="BLEEP: contrastive image/expression heads, top-k retrieval",
                 test_params={"projection_dim": 8, "top_k": 3, **_TINY_TORCH})
METHODS.register("mclstexp", "hagekit.baselines.mclstexp:MclSTExpRegressor", default=True,
                 help="mclSTExp: spot transformer vs image head, top-k retrieval",
                 test_params={"projection_dim": 8, "heads": 1, "dim_head": 4, "top_k": 3, **_TINY_TORCH})
METHODS.register("ridge-ctx", "hagekit.baselines.ridge_ctx:RidgeCtxRegressor",
                 help="ridge on [x, neighbour-mean x] (spatial context)", test_params={"pca": None, "cv": 2})
METHODS.register("triplex", "hagekit.baselines.triplex:TriplexRegressor", help="TRIPLEX: target, neighbour and global branches",
                 test_params={"d_model": 8, "heads": 2, "depth_neighbour": 1, **_TINY_TORCH})
METHODS.register("histogene", "hagekit.baselines.histogene:HisToGeneRegressor", help="HisToGene: transformer over a section's spots",
                 test_params={"d_model": 8, "heads": 2, "layers": 1, **_TINY_TORCH})
METHODS.register("hist2st", "hagekit.baselines.hist2st:Hist2STRegressor", help="Hist2ST: transformer, GraphSAGE and LSTM over spots",
                 test_params={"d_model": 8, "heads": 2, "depth_transformer": 1, **_TINY_TORCH})
METHODS.register("hage-ctx", "hagekit.hage.estimator:HAGERegressor", params={"config__context": "mean"},
                 help="HAGE with neighbour-mean context (config context = mean)", test_params=_TINY_HAGE)
METHODS.register("hage", "hagekit.hage.estimator:HAGERegressor", default=True,
                 help="HAGE: gene-informed encoder with hierarchical gene attention", test_params=_TINY_HAGE)


def register_method(name: str, target: type | str, *, replace: bool = False, **meta: Any) -> None:
    """Add a method to the registry: ``target`` is the estimator class or ``"module:Class"``.

    A method is one file: a :class:`~hagekit.learn.estimator.Regressor` subclass (its
    optional ``search_space`` class attribute is what ``bench tune --method`` searches), then
    one ``register_method`` call (or an entry point in the ``hagekit.methods`` group of an
    installed package). ``meta`` is the entry's metadata (:class:`hagekit.registry.Entry`:
    ``help``, ``test_params``, ``default``, ``params``). A taken name is refused unless ``replace``.
    """
    METHODS.register(name, target, replace=replace, **meta)


def list_methods(*, default_only: bool = False) -> list[str]:
    """Registered method names, in the order of the paper's comparison (HAGE last);
    ``default_only``: those ``bench baselines`` runs when ``--methods`` is not given."""
    return METHODS.names(default_only=default_only)


def method_search_space(name: str) -> dict[str, tuple[Any, ...]]:
    """The search space ``name`` declares for ``bench tune --method`` (its entry's, else its
    class's ``search_space``), or {}."""
    space = METHODS.entry(name).search_space or getattr(get_method(name), "search_space", None) or {}
    return {k: tuple(v) for k, v in dict(space).items()}


def get_method(name: str) -> type:
    """The estimator class registered as ``name`` (unknown names list the valid ones)."""
    return METHODS.get(name)


def method_accepts(name: str, param: str) -> bool:
    """Whether method ``name``'s constructor takes ``param`` (e.g. ``device``, ``epochs``)."""
    return param in get_method(name)._get_param_names()


def make_method(name: str, *, context: Mapping[str, Any] | None = None, **params: Any) -> Any:
    """Build ``name``: constructor arguments from ``context`` that it accepts (e.g. ``device``,
    ``random_state``, HAGE's ``config`` and ``gene_embeddings``), then ``set_params(**params)``
    (HAGE: ``config__<field>``), then the entry's fixed ``params`` (a variant such as
    ``hage-ctx``). Unknown parameters are refused with the valid ones."""
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
    fixed = METHODS.entry(name).params  # a variant's own settings (hage-ctx: context = mean) win
    if fixed:
        est = est.set_params(**fixed)
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
