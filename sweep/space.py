"""The search space of a strategy, read from its `Params` (strategies.base.param ranges).

This is the place a research loop may edit: `OVERRIDES` narrows or pins a strategy's ranges
without touching the strategy, and `--fix name=value` pins parameters for one run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)

from harness.errors import ConfigError
from strategies.base import ParamSpec, make_params, param_specs

# strategy -> param -> (low, high) to narrow a range, or a single value to pin it.
OVERRIDES: dict[str, dict[str, Any]] = {}


def _distribution(spec: ParamSpec) -> BaseDistribution:
    if spec.kind == "bool":
        return CategoricalDistribution((False, True))
    if spec.kind == "choice":
        if not spec.choices:
            raise ConfigError(f"param {spec.name}: a choice parameter needs choices")
        return CategoricalDistribution(tuple(spec.choices))
    if spec.low is None or spec.high is None or not spec.low <= spec.high:
        raise ConfigError(f"param {spec.name}: range [{spec.low}, {spec.high}] is not a valid range")
    if spec.kind == "int":
        return IntDistribution(int(spec.low), int(spec.high))
    if spec.kind == "float":
        return FloatDistribution(float(spec.low), float(spec.high))
    if spec.kind == "logfloat":
        if spec.low <= 0:
            raise ConfigError(f"param {spec.name}: a logfloat range must be positive, got low={spec.low}")
        return FloatDistribution(float(spec.low), float(spec.high), log=True)
    raise ConfigError(f"param {spec.name}: unknown kind {spec.kind!r}")


def parse_value(spec: ParamSpec, text: str) -> Any:
    """A command-line value converted to the parameter's type, checked against its range."""
    text = text.strip()
    try:
        if spec.kind == "bool":
            low = text.lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            value: Any = low in ("true", "1", "yes")
        elif spec.kind == "int":
            value = int(text)
        elif spec.kind in ("float", "logfloat"):
            value = float(text)
        else:
            matches = [c for c in spec.choices or () if str(c) == text]
            if not matches:
                raise ConfigError(f"param {spec.name}: {text!r} is not one of {list(spec.choices or ())}")
            value = matches[0]
    except ValueError:
        raise ConfigError(f"param {spec.name} ({spec.kind}): cannot read {text!r}") from None
    if spec.kind in ("int", "float", "logfloat") and not spec.low <= value <= spec.high:
        raise ConfigError(f"param {spec.name}: {value} is outside its range [{spec.low}, {spec.high}]")
    return value


def parse_fixed(params_cls: type, text: str | None) -> dict[str, Any]:
    """'a=1,b=true' -> typed values for `--fix`."""
    if not text:
        return {}
    specs = {s.name: s for s in param_specs(params_cls)}
    out = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in specs:
            raise ConfigError(
                f"--fix expects name=value pairs of known parameters, got {item!r}; "
                f"known: {', '.join(specs)}"
            )
        out[name] = parse_value(specs[name], value)
    return out


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Distributions Optuna samples, plus values held fixed; `params()` builds a Params."""

    strategy: str
    params_cls: type
    distributions: dict[str, BaseDistribution]
    fixed: dict[str, Any]

    def params(self, sampled: dict[str, Any]) -> Any:
        return make_params(self.params_cls, {**self.fixed, **sampled})

    def values(self, sampled: dict[str, Any]) -> dict[str, Any]:
        """Every parameter of the Params (defaults included), as recorded in results rows."""
        return dataclasses.asdict(self.params(sampled))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {n: distribution_to_json(d) for n, d in self.distributions.items()}
        out.update({n: {"fixed": v} for n, v in self.fixed.items()})
        return out


def search_space(strategy: str, params_cls: type, fixed: dict[str, Any] | None = None) -> SearchSpace:
    """Every `param(...)` field with a range is searched unless pinned by OVERRIDES or `fixed`."""
    fixed = dict(fixed or {})
    overrides = OVERRIDES.get(strategy, {})
    dists: dict[str, BaseDistribution] = {}
    for spec in param_specs(params_cls):
        if spec.name in fixed:
            continue
        ov = overrides.get(spec.name)
        if isinstance(ov, tuple) and len(ov) == 2:
            spec = dataclasses.replace(spec, low=ov[0], high=ov[1])
        elif spec.name in overrides:
            fixed[spec.name] = ov
            continue
        dist = _distribution(spec)
        if isinstance(dist, (IntDistribution, FloatDistribution)) and dist.low == dist.high:
            fixed[spec.name] = dist.low
            continue
        dists[spec.name] = dist
    if not dists:
        raise ConfigError(f"strategy {strategy}: nothing to search (every parameter is fixed)")
    return SearchSpace(strategy, params_cls, dists, fixed)
