"""Declared ranges of method parameters, checked before anything is written.

A method declares ``param_constraints = {"lr": Interval(0, None, low_open=True), ...}`` on its
class; :func:`check_declared_params` (called by ``hagekit.baselines.make_method``) refuses a
value outside its range in one line naming the method and the parameter, e.g.
``[baselines.mlp] lr = -1.0: must be > 0``. ``None`` passes where the parameter allows it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hagekit.errors import ConfigError

__all__ = ["Interval", "OneOf", "check_declared_params", "declared_constraints"]


@dataclass(frozen=True)
class Interval:
    """A number in ``[low, high]`` (either end open, or ``None`` = unbounded); ``integer``
    asks for a whole number; ``optional`` lets ``None`` through; ``each`` checks every item
    of a list instead."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    optional: bool = False
    each: bool = False

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        text = f"{kind} {' and '.join(parts)}".strip()
        text = f"a list of {text.replace('an integer', 'integers').replace('a number', 'numbers')}" if self.each else text
        return text + (" (or unset)" if self.optional else "")

    def _ok_one(self, v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            return False
        if self.integer and float(v) != int(v):
            return False
        if self.low is not None and (v <= self.low if self.low_open else v < self.low):
            return False
        return not (self.high is not None and (v >= self.high if self.high_open else v > self.high))

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if self.each:
            return isinstance(value, Sequence) and not isinstance(value, str) and len(value) > 0 \
                and all(self._ok_one(v) for v in value)
        return self._ok_one(value)


@dataclass(frozen=True)
class OneOf:
    """One of the listed values."""

    choices: tuple[Any, ...]
    optional: bool = False

    def describe(self) -> str:
        return "one of " + ", ".join(map(str, self.choices)) + (" (or unset)" if self.optional else "")

    def accepts(self, value: Any) -> bool:
        return (value is None and self.optional) or value in self.choices


def check_declared_params(method: str, constraints: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    """Refuse the first parameter of ``params`` outside its declared constraint (one line)."""
    for key, rule in constraints.items():
        if key in params and not rule.accepts(params[key]):
            raise ConfigError(f"[baselines.{method}] {key} = {params[key]!r}: must be {rule.describe()}")


def declared_constraints(cls: type) -> dict[str, Any]:
    """``param_constraints`` of ``cls`` merged over its bases (a base declares the shared ones,
    e.g. ``random_state``; a subclass adds or overrides)."""
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        out.update(vars(klass).get("param_constraints", {}) or {})
    return out
