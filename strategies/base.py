"""The strategy registry and the parameter-field convention.

A strategy module declares a frozen `Params` dataclass whose fields are made with `param(...)`
(default, search range, type, one-line meaning) and registers itself with `@register`.
Live and shadow thresholds are two instances of the same `Thresholds` type, chosen by `mode`.
A strategy may also register a `panel(market, params, mode, fitted) -> tuple[Panel, ...]`: its
own view of the decision at the market's last bar (a ranking, a fit), built from the functions
`generate` uses, shown by `sweep signals`.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
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


def check_params(params_cls: type, values: dict[str, Any]) -> Any:
    """A Params from values read from a file (live_candidates.json): unknown names, values of
    the wrong type, non-finite numbers and values outside a parameter's range or choices are
    refused with a ConfigError naming the parameter and what it accepts."""
    for spec in param_specs(params_cls):
        if spec.name not in values:
            continue
        v = values[spec.name]
        if spec.kind == "bool":
            ok, want = isinstance(v, bool), "true or false"
        elif spec.kind == "choice":
            ok, want = v in (spec.choices or ()), f"one of {list(spec.choices or ())}"
        else:
            number = (int,) if spec.kind == "int" else (int, float)
            ok = isinstance(v, number) and not isinstance(v, bool) and math.isfinite(v) \
                and spec.low <= v <= spec.high
            want = f"{'an integer' if spec.kind == 'int' else 'a number'} in [{spec.low}, {spec.high}]"
        if not ok:
            raise ConfigError(f"parameter {spec.name} = {v!r} is not {want}")
    return make_params(params_cls, values)


Format = Literal["text", "number", "percent", "flag"]


@dataclass(frozen=True)
class PanelColumn:
    name: str  # the key in JSON rows (snake_case)
    format: Format = "number"  # percent: a fraction printed as a percentage
    label: str = ""  # the table header; the name when empty

    @property
    def header(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class Panel:
    """A strategy's table of its decision at one bar: rows ranked best first, values str, float,
    int, bool or None (unknown)."""

    name: str  # a key for machine readers, e.g. "half_life"
    title: str
    columns: tuple[PanelColumn, ...]
    rows: tuple[tuple[Any, ...], ...]
    note: str = ""


def panel_value(x: Any) -> float | None:
    """A panel cell from a number: float, or None where it is unknown (NaN, inf)."""
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class RegisteredStrategy:
    """Satisfies harness.strategy.Strategy."""

    name: str
    params_cls: type
    generate_fn: Callable[..., Signals]
    fit_fn: Callable[[Market, Any], Any] | None = None
    interval: str = "1h"
    description: str = ""
    panel_fn: Callable[..., tuple[Panel, ...]] | None = None

    def fit(self, market: Market, params: Any) -> Any:
        return None if self.fit_fn is None else self.fit_fn(market, params)

    def generate(self, market: Market, params: Any, mode: Mode = "live", fitted: Any = None) -> Signals:
        if mode not in ("live", "shadow"):
            raise ConfigError(f"mode must be 'live' or 'shadow', got {mode!r}")
        return self.generate_fn(market, params, mode, fitted)

    def default_params(self) -> Any:
        return self.params_cls()

    def panels(self, market: Market, params: Any, mode: Mode = "live", fitted: Any = None
               ) -> tuple[Panel, ...]:
        """The strategy's own panels at the last bar of `market` (none when it has no panel)."""
        return () if self.panel_fn is None else tuple(self.panel_fn(market, params, mode, fitted))


_REGISTRY: dict[str, RegisteredStrategy] = {}


def register(name: str, params_cls: type, *, fit: Callable | None = None, interval: str = "1h",
             description: str = "", panel: Callable | None = None) -> Callable:
    """Decorator for `generate(market, params, mode, fitted) -> Signals`."""

    def deco(fn: Callable[..., Signals]) -> Callable[..., Signals]:
        _REGISTRY[name] = RegisteredStrategy(name, params_cls, fn, fit, interval, description, panel)
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
