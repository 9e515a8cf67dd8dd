"""Parameter values a person gives (`--params JSON`) or a trial recorded, checked against the
strategy's `param(...)` specs: every key a known field, of its type (a JSON boolean for a bool,
an integer for an int, one of the choices for a choice), within its range unless the values
are recorded ones (the search drew them). Fields not given keep their defaults.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from harness.errors import ConfigError
from strategies.base import ParamSpec, param_specs


def _expected(spec: ParamSpec) -> str:
    if spec.kind == "bool":
        return "true or false"
    if spec.kind == "choice":
        return "one of " + ", ".join(json.dumps(c) for c in spec.choices or ())
    what = "an integer" if spec.kind == "int" else "a number"
    return f"{what} in [{spec.low:g}, {spec.high:g}]"


def _typed(spec: ParamSpec, value: Any, check_range: bool) -> Any:
    """`value` as the parameter's type, or a ConfigError naming it and what it must be."""
    kind = spec.kind
    bad = ConfigError(f"param {spec.name} must be {_expected(spec)}, got {json.dumps(value)}")
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad
        return value
    if kind == "choice":
        matches = [c for c in spec.choices or () if c == value and type(c) is type(value)]
        if not matches:
            raise bad
        return matches[0]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad
    if kind == "int":
        if isinstance(value, float) and not value.is_integer():
            raise bad
        value = int(value)
    else:
        value = float(value)
    if not math.isfinite(value) or (check_range and not spec.low <= value <= spec.high):
        raise bad
    return value


def build_params(params_cls: type, raw: dict[str, Any], strategy: str, check_range: bool = True,
                 what: str = "--params") -> Any:
    """A Params from a dict: every key a known field of the right type (and within its range
    when `check_range`); fields not given keep their defaults."""
    specs = {s.name: s for s in param_specs(params_cls)}
    known = {f.name for f in dataclasses.fields(params_cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{what}: unknown parameter(s) {', '.join(unknown)} for {strategy}; "
                          f"known: {', '.join(sorted(known))}")
    try:
        values = {k: _typed(specs[k], v, check_range) if k in specs else v for k, v in raw.items()}
    except ConfigError as exc:
        raise ConfigError(f"{what}: {strategy} {exc}") from None
    try:
        return params_cls(**values)
    except (TypeError, ValueError, ConfigError) as exc:
        raise ConfigError(f"{what}: {strategy} refuses these parameters: {exc}") from None


def parse_params(params_cls: type, text: str, strategy: str) -> Any:
    """--params JSON -> Params (an object of field values; others keep their defaults)."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"--params is not JSON ({exc}): give an object such as "
                          "'{\"ema_fast\": 8}'") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"--params must be a JSON object of {strategy} parameter values, "
                          f"got {text[:60]!r}")
    return build_params(params_cls, raw, strategy)
