"""One configuration layer: reading settings files, coercing values, and one precedence.

Settings resolve as defaults < recipe < file < flags, for HAGE's settings (``[hage]``), the run
settings (``[run]``) and every method's parameters (``[baselines.<method>]``). Files are TOML or
YAML; HAGE's and the run's keys may also sit at the top level, and HAGE's may be grouped in the
nested sections of :data:`HAGE_SECTIONS` (``[hage.optimiser] lr = 3e-4``): either way they
resolve to the same flat settings, so run folders record the same ``config.json``.

This is a base-layer module: it imports no pipeline stage (``HAGEConfig`` validates its own
fields with :func:`coerce_setting`; :func:`hagekit.training.run.resolve_settings` builds it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hagekit.errors import ConfigError, at

__all__ = ["RunSettings", "RUN_KEYS", "RECIPES", "HAGE_SECTIONS", "Layers", "coerce_setting",
           "load_config_file", "load_recipe", "resolve_layers"]

RECIPES = ("default", "paper")
"""Shipped recipes: ``default`` (:class:`~hagekit.hage.model.HAGEConfig`'s defaults, chosen by
``bench tune``) and ``paper`` (``hagekit/recipes/paper.toml``: the paper's literal settings)."""

HAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "model": ("d", "n_heads", "k1", "k2", "dropout", "use_ge", "use_hierarchy", "single_level", "centroids",
              "context", "context_radius"),
    "loss": ("lambda_cyclip", "cyclip_reduction", "cyclip_normalize", "lambda_clip_local", "lambda_clip_global",
             "lambda_pcc", "temperature"),
    "optimiser": ("lr", "weight_decay", "schedule", "step_size", "gamma", "warmup_steps"),
    "budget": ("epochs", "min_steps", "patience", "batch_size"),
    "data": ("standardize_features", "calibrate"),
}
"""HAGE's settings grouped by what they shape: the architecture and its ablation switches, the
loss of eq. 3, the optimiser and its schedule, the training budget, and the input/output
preprocessing. Each flat field is in exactly one section."""


@dataclass(frozen=True)
class RunSettings:
    """Protocol settings of a run (the HAGE hyper-parameters live in ``HAGEConfig``)."""

    split: str = "section"
    folds: tuple[str, ...] | None = None
    trials: int = 5
    seed: int = 0
    val_fraction: float = 0.2
    target: str = "log1p_norm"
    allow_leak: bool = False
    per_fold_embeddings: bool = True
    """When the gene embeddings were trained on a held-out section (and ``allow_leak`` is off),
    train leak-free embeddings per fold on its training sections instead of refusing."""

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str = "config") -> RunSettings:
        """Build from the run keys of ``values`` (coerced to the defaults' types; ``folds`` may be
        a comma-separated string); other keys are ignored."""
        kinds = {"split": str, "trials": int, "seed": int, "val_fraction": float, "target": str,
                 "allow_leak": bool, "per_fold_embeddings": bool}
        clean: dict[str, Any] = {k: coerce_setting(k, values[k], kind, source)
                                 for k, kind in kinds.items() if values.get(k) is not None}
        folds = values.get("folds")
        if isinstance(folds, str):
            folds = [f.strip() for f in folds.split(",") if f.strip()]
        clean["folds"] = tuple(str(f) for f in folds) if folds else None
        settings = cls(**clean)
        if settings.trials < 1:
            raise ConfigError(f"--trials: must be >= 1, got {settings.trials}")
        if settings.seed < 0:
            raise ConfigError(f"{source}: seed must be >= 0, got {settings.seed}")
        if not 0.0 < settings.val_fraction < 1.0:
            raise ConfigError(f"{source}: val_fraction (--val-fraction) must be in (0, 1), got {settings.val_fraction}")
        return settings


RUN_KEYS = tuple(f.name for f in dataclasses.fields(RunSettings))


def coerce_setting(key: str, value: Any, kind: type, source: str) -> Any:
    """``value`` as a ``kind`` (bool, int, float, str): the one coercion of every setting.

    Booleans accept true/false, yes/no, on/off, 1/0 (text from files and flags); an int refuses a
    fractional float. A bad value is one line naming the source and the key."""
    try:
        if kind is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {key}={value!r} is not a valid {kind.__name__}") from None


def _read(path: Path) -> dict[str, Any]:
    """The mapping a TOML or YAML file holds."""
    if not path.is_file():
        raise ConfigError(at(path, "config file not found"))
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(path.read_text(encoding="utf-8"))
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        else:
            raise ConfigError(at(path, "config must be .toml, .yaml or .yml"))
    except ConfigError:
        raise
    except Exception as exc:  # tomllib/yaml parse errors
        raise ConfigError(at(path, f"cannot parse config ({type(exc).__name__}: {exc})".replace("\n", " "))) from None
    if not isinstance(data, dict):
        raise ConfigError(at(path, "config must be a mapping of settings"))
    return data


def load_config_file(path: Path | str) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) config into a flat dict.

    Keys may sit at the top level or in ``[hage]`` / ``[run]`` tables; ``[hage.<section>]``
    tables (:data:`HAGE_SECTIONS`) flatten into ``[hage]``. ``baselines`` and ``datasets``
    tables stay as they are."""
    path = Path(path)
    flat: dict[str, Any] = {}
    for key, value in _read(path).items():
        if key in ("hage", "run") and isinstance(value, dict):
            flat.update(_flatten_sections(value, path) if key == "hage" else value)
        else:
            flat[key] = value
    return flat


def _flatten_sections(table: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """``[hage]`` with its ``[hage.<section>]`` sub-tables as one flat mapping; a key in the wrong
    section is refused, so the grouping stays the documented one."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if key in HAGE_SECTIONS and isinstance(value, dict):
            wrong = sorted(set(value) - set(HAGE_SECTIONS[key]))
            if wrong:
                raise ConfigError(at(path, f"[hage.{key}]: {', '.join(wrong)} not in this section "
                                           f"(it holds {', '.join(HAGE_SECTIONS[key])})"))
            flat.update(value)
        else:
            flat[key] = value
    return flat


def load_recipe(recipe: str | Path, dataset: str | None = None) -> dict[str, Any]:
    """Settings of a recipe: a shipped name (:data:`RECIPES`) or a TOML/YAML file. A recipe's
    ``[datasets.<name>]`` table applies on top when ``dataset`` is that name."""
    name = str(recipe)
    if name == "default":
        return {}
    path = Path(__file__).resolve().parent / "recipes" / f"{name}.toml" if name in RECIPES else Path(name)
    if name not in RECIPES and not path.is_file():
        raise ConfigError(f"--recipe: {name!r} is neither a shipped recipe ({', '.join(RECIPES)}) nor a config file")
    flat = load_config_file(path)
    per_dataset = flat.pop("datasets", {}) or {}
    if dataset and isinstance(per_dataset, dict) and isinstance(per_dataset.get(dataset), dict):
        flat.update(per_dataset[dataset])
    return flat


@dataclass
class Layers:
    """Settings after the precedence: flat HAGE and run ``values``, each method's parameters
    (``[baselines.<method>]``), and the ``source`` that error messages name."""

    values: dict[str, Any] = field(default_factory=dict)
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = "config"


def resolve_layers(config_file: Path | str | None = None, overrides: Mapping[str, Any] | None = None, *,
                   dataset: str | None = None) -> Layers:
    """Defaults < recipe < file < overrides (flags; ``None`` values mean 'not given').

    The recipe is the ``recipe`` key of the file or of the overrides (``--recipe``). Values are
    not typed here: the classes that own them coerce and validate (``HAGEConfig``,
    :class:`RunSettings`, a method's constructor)."""
    file_values: dict[str, Any] = {}
    source = "config"
    if config_file is not None:
        file_values = load_config_file(config_file)
        source = str(config_file)
    file_methods = _method_tables(file_values, source)
    merged = {**file_values, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    recipe = merged.pop("recipe", None)
    recipe_methods: dict[str, dict[str, Any]] = {}
    if recipe is not None:
        recipe_values = load_recipe(recipe, dataset)
        recipe_methods = _method_tables(recipe_values, str(recipe))
        merged = {**recipe_values, **merged}
    for key, value in merged.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{source}: {key} must be a finite number, got {value}")
    methods = {m: {**recipe_methods.get(m, {}), **file_methods.get(m, {})} for m in {**recipe_methods, **file_methods}}
    return Layers(merged, methods, source)


def _method_tables(values: dict[str, Any], source: str) -> dict[str, dict[str, Any]]:
    """Pop the ``baselines`` tables (one per method) out of ``values``."""
    tables = values.pop("baselines", {}) or {}
    if not isinstance(tables, dict) or any(not isinstance(v, dict) for v in tables.values()):
        raise ConfigError(f"{source}: [baselines] must hold one table per method, e.g. [baselines.ridge]")
    return {str(k): dict(v) for k, v in tables.items()}
