"""`python -m sweep strategies`: every registered strategy, its parameters and thresholds."""

from __future__ import annotations

import dataclasses
import sys

import typer
from rich.console import Console
from rich.table import Table

from harness.errors import ConfigError
from strategies.base import ParamSpec, RegisteredStrategy, param_specs, registry


def _range(spec: ParamSpec) -> str:
    if spec.kind == "bool":
        return "bool"
    if spec.kind == "choice":
        return "choice: " + ", ".join(map(str, spec.choices or ()))
    return f"{spec.kind} [{spec.low:g}, {spec.high:g}]"


def _value(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def thresholds(strategy: RegisteredStrategy) -> dict[str, object]:
    """The strategy module's LIVE and SHADOW threshold instances, when it defines them."""
    module = sys.modules.get(strategy.generate_fn.__module__)
    found = {m: getattr(module, m.upper(), None) for m in ("live", "shadow")}
    return {m: t for m, t in found.items() if dataclasses.is_dataclass(t)}


def _thresholds_text(strategy: RegisteredStrategy) -> str:
    parts = []
    for mode, th in thresholds(strategy).items():
        values = ", ".join(f"{f.name}={_value(getattr(th, f.name))}" for f in dataclasses.fields(th))
        parts.append(f"{mode}: {values}")
    return "  |  ".join(parts)


def strategies_command(
    name: str | None = typer.Argument(None, help="Show only this strategy (default: all)."),
) -> None:
    """List every registered strategy with its parameters (default, range, type, meaning) and
    its live / shadow thresholds."""
    reg = registry()
    if name is not None and name not in reg:
        raise ConfigError(f"unknown strategy {name!r}: registered are {', '.join(sorted(reg))}")
    names = [name] if name else sorted(reg)
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    for n in names:
        s = reg[n]
        table = Table(title=f"[bold]{n}[/bold] ({s.interval} bars): {s.description}",
                      title_justify="left", expand=False)
        table.add_column("parameter", style="cyan", no_wrap=True)
        table.add_column("default", justify="right")
        table.add_column("range (type)", no_wrap=True)
        table.add_column("meaning")
        for spec in param_specs(s.params_cls):
            table.add_row(spec.name, _value(spec.default), _range(spec), spec.help)
        text = _thresholds_text(s)
        if text:
            table.caption = f"thresholds  {text}"
            table.caption_justify = "left"
        console.print(table)
    console.print(f"{len(names)} strateg{'y' if len(names) == 1 else 'ies'} registered"
                  + ("" if name else f": {', '.join(names)}"))


def register(app: typer.Typer) -> None:
    app.command("strategies")(strategies_command)
