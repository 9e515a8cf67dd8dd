"""`sweep calibrate`: the planted truth is what it says, and the command prints its table.
The defaults' verdict (noise <= 5% promoted, the strongest edge >= 80%) is a slow case."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from harness.evaluate import evaluate
from harness.folds import Folds
from harness.friction import DEFAULT_FRICTION
from strategies.base import get_strategy, make_params
from sweep import calibrate_cli
from sweep.calibrate import EDGE_HOLD, Plant, make_market, make_market_frames


def cli(*args: str):
    app = typer.Typer()
    calibrate_cli.register(app)
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def test_noise_has_fat_tails_and_clustering_volatility():
    candles, _ = make_market_frames(3, 20_000, seed=1, plant=None)
    r = np.diff(np.log(candles[candles["coin"] == "SYN00"]["close"].to_numpy()))
    z = (r - r.mean()) / r.std()
    assert np.mean(z**4) > 4.0  # a normal has kurtosis 3
    a = np.abs(z)
    assert np.corrcoef(a[:-24], a[24:])[0, 1] > 0.05  # |r| a day apart still correlate
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 0.03  # returns themselves do not


def test_the_planted_edge_has_the_sharpe_it_is_labelled_with():
    """The oracle (trade the planted hour, side and hold) on a long market: its measured
    annual Sharpe is the label within 2.5 standard errors (sqrt(365 / OOS days))."""
    plant = Plant(hour=7, side=-1, sharpe=6.0)
    m = make_market(15, 16_000, seed=5, plant=plant)
    s = get_strategy("hour_of_day")
    params = make_params(s.params_cls, {"hour": 7, "side": "short", "hold": EDGE_HOLD, "stop_atr": 6.0})
    ev = evaluate(s, params, m, friction=DEFAULT_FRICTION, folds=Folds())
    days = len(ev.daily_returns)
    assert ev.base.sharpe == pytest.approx(6.0, abs=2.5 * math.sqrt(365 / days))
    null = make_market(15, 16_000, seed=5, plant=Plant(7, -1, 0.0))  # the drift pays the costs
    ev0 = evaluate(s, params, null, friction=DEFAULT_FRICTION, folds=Folds())
    assert ev0.base.sharpe == pytest.approx(0.0, abs=2.5 * math.sqrt(365 / days))
    assert plant.captured_by({"hour": 9, "hold": 2, "side": "short"})  # holds the bar closing 10h
    assert not plant.captured_by({"hour": 11, "hold": 5, "side": "short"})  # after the drift
    assert not plant.captured_by({"hour": 7, "hold": 4, "side": "long"})


def test_the_command_prints_its_table(tmp_path):
    r = cli("--runs", "1", "--strengths", "0,20", "--no-null", "--coins", "3", "--bars", "1500",
            "--trials", "4", "--scratch", str(tmp_path))
    assert r.exit_code == 0, r.output
    assert re.search(r"noise\s*│\s*1\s*│\s*\d+%", r.output) and re.search(r"20\s*│\s*1\s*│", r.output)
    assert "false-promotion rate on pure noise" in r.output and "wall time" in r.output
    assert (tmp_path / "noise0-seed0" / "live_candidates.json").exists()


def test_a_strategy_without_a_planted_edge_is_refused_in_one_line(tmp_path):
    r = cli("--strategy", "momentum", "--scratch", str(tmp_path))
    assert r.exit_code == 2 and "hour_of_day" in r.stderr and r.stderr.count("\n") == 1
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_the_defaults_refuse_noise_and_promote_the_strongest_edge(tmp_path):
    r = cli("--scratch", str(tmp_path))
    assert r.exit_code == 0, r.output
    rates = dict(re.findall(r"(noise|0 \(pays costs\)|\d+)\s*│\s*10\s*│\s*(\d+)%", r.output))
    assert int(rates["noise"]) <= 5 and int(rates["0 (pays costs)"]) <= 5
    assert int(rates["12"]) >= 80
