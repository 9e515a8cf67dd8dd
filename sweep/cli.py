"""`python -m sweep`: one typer app. Each command group lives in its own `sweep/*_cli.py`
module exposing `register(app)`; they are discovered here so no module edits another."""

from __future__ import annotations

import importlib
import pkgutil

import typer

from harness.cli import OneLineGroup

app = typer.Typer(
    name="sweep",
    cls=OneLineGroup,
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
    app()  # OneLineGroup: every failure is one line on stderr and a non-zero exit
