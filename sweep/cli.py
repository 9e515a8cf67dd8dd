"""`python -m sweep`: one typer app. Each command group lives in its own `sweep/*_cli.py`
module exposing `register(app)`; they are discovered here so no module edits another."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from harness.errors import HarnessError

app = typer.Typer(
    name="sweep",
    help="Research, validate and promote directional strategies on Hyperliquid perps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    import sweep

    for mod in sorted(pkgutil.iter_modules(sweep.__path__), key=lambda m: m.name):
        if mod.name.endswith("_cli"):
            importlib.import_module(f"sweep.{mod.name}").register(app)


def main() -> None:
    _register()
    try:
        app()
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
