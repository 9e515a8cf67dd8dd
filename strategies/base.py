"""The strategy registry and the parameter-field convention.

A strategy module declares a frozen `Params` dataclass whose fields are made with `param(...)`
(default, search range, type, one-line meaning) and registers itself with `@register`.
Live and shadow thresholds are two instances of the same `Thresholds` type, chosen by `mode`.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from harness.errors import ConfigError
from harness.market import Market
from harness.signals import Signals
from harness.strategy import Mode

Kind = Literal["int", "float", "logfloat", "choice", "bool"]


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    kind: Kind
    low: float | None
    high: float | None
    choices: tuple | None
    help: str


def param(default: Any, low: float | None = None, high: float | None = None, *,
          kind: Kind | None = None, choices: tuple | None = None, help: str = "") -> Any:
    """A dataclass field carrying its search range and meaning in `metadata`."""
    if kind is None:
        kind = "choice" if choices else ("bool" if isinstance(default, bool) else
                                         "int" if isinstance(default, int) else "float")
    if kind in ("int", "float", "logfloat") and (low is None or high is None):
        raise ConfigError(f"param default={default!r}: numeric params need low and high")
    meta = {"kind": kind, "low": low, "high": high, "choices": choices, "help": help}
    return dataclasses.field(default=default, metadata=meta)


def param_specs(params_cls: type) -> list[ParamSpec]:
    specs = []
    for f in dataclasses.fields(params_cls):
        m = f.metadata
        if "kind" not in m:
            continue
        specs.append(ParamSpec(f.name, f.default, m["kind"], m["low"], m["high"], m["choices"], m["help"]))
    return specs


def make_params(params_cls: type, values: dict[str, Any]) -> Any:
    """Build a Params from a dict (e.g. an Optuna trial), rejecting unknown names clearly."""
    known = {f.name for f in dataclasses.fields(params_cls)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(
            f"unknown parameter(s) {', '.join(sorted(unknown))} for {params_cls.__module__}; "
            f"known: {', '.join(sorted(known))}"
        )
    return params_cls(**values)


@dataclass(frozen=True)
class RegisteredStrategy:
    """Satisfies harness.strategy.Strategy."""

    name: str
    params_cls: type
    generate_fn: Callable[..., Signals]
    fit_fn: Callable[[Market, Any], Any] | None = None
    interval: str = "1h"
    description: str = ""

    def fit(self, market: Market, params: Any) -> Any:
        return None if self.fit_fn is None else self.fit_fn(market, params)

    def generate(self, market: Market, params: Any, mode: Mode = "live", fitted: Any = None) -> Signals:
        if mode not in ("live", "shadow"):
            raise ConfigError(f"mode must be 'live' or 'shadow', got {mode!r}")
        return self.generate_fn(market, params, mode, fitted)

    def default_params(self) -> Any:
        return self.params_cls()


_REGISTRY: dict[str, RegisteredStrategy] = {}


def register(name: str, params_cls: type, *, fit: Callable | None = None, interval: str = "1h",
             description: str = "") -> Callable:
    """Decorator for `generate(market, params, mode, fitted) -> Signals`."""

    def deco(fn: Callable[..., Signals]) -> Callable[..., Signals]:
        _REGISTRY[name] = RegisteredStrategy(name, params_cls, fn, fit, interval, description)
        return fn

    return deco


def _load_all() -> None:
    import strategies

    for mod in pkgutil.iter_modules(strategies.__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"strategies.{mod.name}")


def registry() -> dict[str, RegisteredStrategy]:
    _load_all()
    return dict(_REGISTRY)


def get_strategy(name: str) -> RegisteredStrategy:
    reg = registry()
    if name not in reg:
        raise ConfigError(f"unknown strategy {name!r}: registered are {', '.join(sorted(reg))}")
    return reg[name]
