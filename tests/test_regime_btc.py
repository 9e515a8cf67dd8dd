"""BTC regime: an independent pandas implementation, the 0.6 multiplier, causality."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _regime_synth import perturbed_after, planted_market

from harness.market import Market
from harness.signals import REGIMES
from strategies.regime.btc import (
    COUNTER_REGIME_MULTIPLIER,
    LONG,
    NEUTRAL,
    SHORT,
    btc_regime,
    regime_multiplier,
)


def _pandas_regime(close: pd.Series) -> np.ndarray:
    """The documented rule, rebuilt with pandas resample/ewm (complete 4h buckets only)."""
    e = close.ewm(span=48, adjust=False, min_periods=48).mean()
    prev = e.shift(12)
    bias = np.where((close > e) & (e > prev), 1, np.where((close < e) & (e < prev), -1, 0))
    grouped = close.resample("4h")
    c4 = grouped.last()[grouped.count() == 4]
    f = c4.ewm(span=20, adjust=False, min_periods=20).mean()
    s = c4.ewm(span=50, adjust=False, min_periods=50).mean()
    tr = pd.Series(np.where((f > s) & (c4 > s), 1, np.where((f < s) & (c4 < s), -1, 0)),
                   index=c4.index + pd.Timedelta("3h"))  # first 1h bar whose close sees it
    tr_h = tr.reindex(close.index, method="ffill").fillna(0).to_numpy()
    return np.where((tr_h == 1) & (bias >= 0), LONG,
                    np.where((tr_h == -1) & (bias <= 0), SHORT, NEUTRAL))


def test_matches_pandas_reimplementation_and_uses_all_codes():
    m, _ = planted_market(n=2400, seed=3, block=200)
    got = btc_regime(m)
    want = _pandas_regime(pd.Series(m.close[:, 0], index=m.index))
    assert got.dtype == np.int8 and got.shape == (m.n_bars,)
    np.testing.assert_array_equal(got, want)
    assert set(np.unique(got)) == {NEUTRAL, LONG, SHORT}
    assert [REGIMES[c] for c in (NEUTRAL, LONG, SHORT)] == ["NEUTRAL", "LONG", "SHORT"]


def test_steady_trends_give_long_then_short():
    n = 800
    up = 100 * np.exp(np.linspace(0, 0.5, n))
    close = np.column_stack([np.r_[up, up[-1] * np.exp(-np.linspace(0, 0.5, n))[1:]]])
    m = Market(index=pd.date_range("2024-01-01", periods=close.shape[0], freq="h", tz="UTC"),
               coins=("BTC",), interval="1h", open=close, high=close, low=close, close=close,
               volume=np.ones_like(close), funding=np.zeros_like(close),
               premium=np.full_like(close, np.nan), open_interest=np.full_like(close, np.nan),
               listed=np.ones(close.shape, bool))
    r = btc_regime(m)
    # the 50th 4h bar (hours 196-199) closes at hour 200: first seen by the bar opening at 199
    assert (r[:199] == NEUTRAL).all() and r[199] == LONG
    assert (r[199:n] == LONG).all() and (r[-400:] == SHORT).all()


def test_no_btc_is_neutral_and_multiplier_is_point_six_against_the_regime():
    m, _ = planted_market(n=300, coins=("ETH", "SOL"))
    assert (btc_regime(m) == NEUTRAL).all()
    regime = np.array([NEUTRAL, LONG, LONG, SHORT, SHORT, LONG], dtype=np.int8)
    direction = np.array([[1, -1], [1, -1], [0, 0], [1, -1], [0, 1], [-1, -1]])
    want = np.array([[1, 1], [1, 0.6], [1, 1], [0.6, 1], [1, 0.6], [0.6, 0.6]])
    np.testing.assert_array_equal(regime_multiplier(regime, direction), want)
    assert COUNTER_REGIME_MULTIPLIER == 0.6


@pytest.mark.parametrize("t", [250, 601, 1003, 1499])
def test_causal_under_truncation_and_a_random_future(t):
    m, _ = planted_market(n=1500, seed=5)
    full = btc_regime(m)
    np.testing.assert_array_equal(btc_regime(m.slice(0, t + 1)), full[: t + 1])
    np.testing.assert_array_equal(btc_regime(perturbed_after(m, t))[: t + 1], full[: t + 1])


def test_daily_market_uses_its_own_bars():
    m, _ = planted_market(n=400, seed=2)
    daily = Market(**{**m.__dict__, "interval": "1d", "_fingerprint": [],
                      "index": pd.date_range("2020-01-01", periods=400, freq="D", tz="UTC")})
    r = btc_regime(daily)
    assert r.shape == (400,) and (r[:49] == NEUTRAL).all() and (r != NEUTRAL).any()
