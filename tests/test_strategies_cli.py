"""`python -m sweep strategies`: every registered strategy, its parameters and thresholds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer
from typer.testing import CliRunner

from harness.cli import OneLineGroup
from strategies.base import param_specs, registry
from sweep import strategies_cli

ROOT = Path(__file__).resolve().parents[1]
ISSUE_STRATEGIES = ("momentum", "mean_reversion", "ema_pullback", "trend_alpha", "zscore_reversion",
                    "ou_funding", "xsection_rank", "gem_bear")


def _app() -> typer.Typer:
    app = typer.Typer(cls=OneLineGroup)

    @app.callback()
    def main() -> None:  # a group, so the command keeps its name as in `python -m sweep`
        """test app"""

    strategies_cli.register(app)
    return app


def _run(*args: str) -> str:
    res = CliRunner().invoke(_app(), ["strategies", *args], terminal_width=400)
    assert res.exit_code == 0, res.output
    return res.output


def test_lists_every_registered_strategy_with_every_parameter():
    out = _run()
    reg = registry()
    assert set(ISSUE_STRATEGIES) <= set(reg)
    for name, s in reg.items():
        assert name in out
        for spec in param_specs(s.params_cls):
            assert spec.name in out, f"{name}.{spec.name} missing"
            assert spec.help in out, f"{name}.{spec.name}: meaning missing"
    assert f"{len(reg)} strategies registered" in out


def test_one_strategy_shows_defaults_ranges_and_thresholds():
    out = _run("momentum")
    row = next(line for line in out.splitlines() if " adx_rise " in line)
    assert "3" in row and "int [1, 8]" in row
    assert "logfloat [0.0005, 0.02]" in out  # atr_floor
    assert "live: adx_min=25, vol_mult=1.5" in out and "shadow: adx_min=15, vol_mult=1" in out
    assert "1 strategy registered" in out
    assert "zscore_reversion" not in out


def test_unknown_strategy_is_one_line_and_exit_2():
    res = CliRunner().invoke(_app(), ["strategies", "nope"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert res.stderr.startswith("error: unknown strategy 'nope'") and "registered are" in res.stderr


def test_python_dash_m_sweep_strategies_is_wired_in():
    """The real entry point discovers the command (the error path is covered above: the app's
    OneLineGroup turns the ConfigError into one line on stderr and exit code 2)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(ROOT / ".numba_cache")}
    res = subprocess.run([sys.executable, "-m", "sweep", "strategies"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    for name in ISSUE_STRATEGIES:
        assert name in res.stdout
