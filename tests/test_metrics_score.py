"""Metrics and the score (DESIGN section 6): golden values, rejections, HHI, annualization,
and Sharpe / max drawdown against plain numpy and pandas on the same equity."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from _kernel_helpers import FREE, NO_RISK, flat, make_market, signal

from harness.metrics import Metrics, annualized, dampener, div_bonus, hhi, raw_score, score
from harness.signals import Signals
from harness.simulate import SimConfig, simulate

GOOD = Metrics(total_return=0.2, annualized=0.40, max_dd=0.25, sharpe=1.5, sortino=2.0,
               calmar=1.6, n_trades=30, win_rate=0.5, mean_r=0.3, hhi=0.5, exposure=1.0,
               days=200.0, final_equity=12_000.0, fees=100.0, funding=5.0)


def test_golden_values():
    assert dampener(0.35) == pytest.approx(0.6944444, abs=5e-8)
    assert dampener(0.10) == 1.0
    assert dampener(0.25) == pytest.approx(0.8264463, abs=5e-8)
    assert div_bonus(0.5) == pytest.approx(1.05)
    assert raw_score(GOOD) == pytest.approx(0.3471074, abs=5e-8)
    assert score(GOOD, GOOD) == (pytest.approx(0.3471074, abs=5e-8), None)


@pytest.mark.parametrize("base,stress,reason", [
    (replace(GOOD, annualized=-0.51), GOOD, "annualized < -50%"),
    (GOOD, replace(GOOD, calmar=-0.01), "stress calmar < 0"),
    (replace(GOOD, n_trades=29), GOOD, "trades < 30"),
])
def test_hard_rejections(base, stress, reason):
    value, why = score(base, stress)
    assert value == -math.inf and why == reason


def test_hhi_values():
    np.testing.assert_allclose(hhi(np.array([[1.0, 1, 1, 1], [5, 0, 0, 0], [0, 0, 0, 0], [2, 1, 0, 0]])),
                               [0.25, 1.0, 1.0, 5 / 9])


def test_hhi_and_exposure_from_the_kernel():
    # A holds 20,000 and B 10,000 notional over the closes of bars 1..3 of a 4-bar flat market
    m = make_market({c: flat(4) for c in ("A", "B")})
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=0.5, coin=0, score=2.0)
    signal(sig, 0, +1, stop=1.0, coin=1, score=1.0)
    met = simulate(m, sig, friction=FREE, config=NO_RISK).metrics(0)
    assert met.hhi == pytest.approx((2 / 3) ** 2 + (1 / 3) ** 2, rel=1e-12)
    assert met.exposure == pytest.approx(3 * 3.0 / 4, rel=1e-12)  # 3x equity on 3 of 4 bars


def test_annualization_uses_365_days():
    # 48 hourly bars = 2 days; 100 coins bought at 100 and closed at 101: +1%
    m = make_market({"BTC": flat(24) + flat(24, 101.0)})
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=50.0)
    met = simulate(m, sig, friction=FREE, config=SimConfig(sizing="fraction")).metrics(0)
    assert met.days == 2.0
    assert met.total_return == pytest.approx(0.01, rel=1e-12)
    assert met.annualized == pytest.approx(1.01 ** (365 / 2) - 1, rel=1e-12)
    assert float(annualized(-0.5, 10.0)) == -1.0


def test_sharpe_sortino_max_dd_against_pandas():
    rng = np.random.default_rng(11)
    n = 24 * 60
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.006, n)))
    op = np.r_[100.0, close[:-1]]
    bars = list(zip(op, np.maximum(op, close) * 1.003, np.minimum(op, close) * 0.997, close, strict=True))
    m = make_market({"X": bars, "Y": bars[::-1]}, funding=2e-5)
    sig = Signals.empty(m, "t")
    hit = rng.random((n, 2)) < 0.03
    sig.direction[hit] = rng.choice([-1, 1], hit.sum())
    sig.stop[hit] = 1.5
    sig.target[hit] = 2.5
    sig.score[hit] = rng.random(hit.sum())
    segments = [(0, 500), (500, 1000), (1100, n)]  # contiguous, then a gap before the last
    res = simulate(m, sig, friction="v4", config=NO_RISK, segments=segments)
    met = res.metrics(0)
    eq = res.equity(0)
    init = NO_RISK.initial_equity
    path = np.r_[init, eq.to_numpy()]
    assert met.max_dd == pytest.approx(np.max(1 - path / np.maximum.accumulate(path)), rel=1e-9)
    assert met.final_equity == pytest.approx(eq.iloc[-1], rel=1e-12)
    day_end = eq.groupby(eq.index.floor("D")).last()
    daily = day_end / day_end.shift(1).fillna(init) - 1
    pd.testing.assert_series_equal(res.daily_returns(0), daily, check_names=False,
                                   check_index_type=False, check_freq=False, rtol=1e-12)
    assert met.sharpe == pytest.approx(daily.mean() / daily.std(ddof=1) * math.sqrt(365), rel=1e-9)
    downside = np.sqrt(np.mean(np.minimum(daily.to_numpy(), 0) ** 2))
    assert met.sortino == pytest.approx(daily.mean() / downside * math.sqrt(365), rel=1e-9)
    days = (n - 100) / 24
    assert met.days == pytest.approx(days)
    assert met.annualized == pytest.approx((met.final_equity / init) ** (365 / days) - 1, rel=1e-9)
    assert met.calmar == pytest.approx(met.annualized / met.max_dd, rel=1e-12)
    assert met.n_trades == sum(s.n_trades for s in res.segment_metrics(0)) > 30
