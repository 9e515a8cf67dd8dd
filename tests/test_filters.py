"""Shared filters (strategies/filters.py), the common finishing step (strategies/common.py) and
the live/shadow threshold pattern. Expected values are worked out by hand from the definitions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _strategy_markets import default_market

from harness.errors import ConfigError, SignalsError
from harness.market import Market
from harness.signals import REGIMES, VOL_BUCKETS, setup_key
from strategies import common, filters
from strategies.base import get_strategy

# ---------------------------------------------------------------- 200-MA gate


def test_ma_gate_blocks_longs_below_and_shorts_above_the_band():
    base = np.full(199, 100.0)
    probes = np.array([97.9, 98.1, 102.1, 101.9])
    rows = []
    for p in probes:  # each probe is bar 200 of its own column: SMA = (199 * 100 + p) / 200
        rows.append(np.concatenate([base, [p]]))
    close = np.column_stack(rows)
    ma = (199 * 100 + probes) / 200
    assert probes[0] < ma[0] * 0.98 < probes[1]  # the hand check of the 2% edges
    long_ok = filters.ma_gate(close, 1)[-1]
    short_ok = filters.ma_gate(close, -1)[-1]
    np.testing.assert_array_equal(long_ok, [False, True, True, True])
    np.testing.assert_array_equal(short_ok, [True, True, False, True])
    flat_ok = filters.ma_gate(close, np.zeros_like(close, dtype=np.int8))
    assert flat_ok.all()
    # warm-up (fewer than 200 bars): nothing to judge, everything passes
    assert filters.ma_gate(close[:150] * 0.5, 1).all()


# ---------------------------------------------------------------- trend efficiency


def test_efficiency_gate_rejects_chop_and_boosts_clean_trends():
    n = 4
    trend = np.arange(10.0) + 100  # net = path: efficiency 1
    zigzag = 100 + np.tile([0.0, 1.0], 5)  # net 0 over an even window
    mixed = np.array([100, 101, 102, 101, 102, 103, 104, 103, 104, 105.0])  # last 4 moves: +1 +1 -1 +1
    allowed, mult = filters.efficiency_gate(np.column_stack([trend, zigzag, mixed]), n)
    np.testing.assert_array_equal(allowed[-1], [True, False, True])  # 1.0, 0.0, 2/4 = 0.5
    np.testing.assert_array_equal(mult[-1], [1.2, 1.0, 1.0])
    assert allowed[:n].all() and (mult[:n] == 1.0).all()  # warm-up passes


# ---------------------------------------------------------------- funding


def test_funding_thresholds_are_converted_from_8h_to_hourly_once():
    assert filters.HEADWIND_CAP == pytest.approx(0.0005 / 8) == pytest.approx(6.25e-5)
    assert filters.TAILWIND_FLOOR == pytest.approx(0.0001 / 8)


def test_funding_filter_headwind_cap_and_capped_tailwind_bonus():
    cap, floor = 0.0005 / 8, 0.0001 / 8
    f = np.array([[cap * 1.01, cap * 0.99, floor, 2 * floor, 4 * floor, 0.5 * floor]])
    ok_long, m_long = filters.funding_filter(f, 1)
    ok_short, m_short = filters.funding_filter(f, -1)
    # longs pay positive funding: only the first exceeds the cap; they never get a bonus here
    np.testing.assert_array_equal(ok_long[0], [False, True, True, True, True, True])
    np.testing.assert_array_equal(m_long[0], [1, 1, 1, 1, 1, 1])
    # shorts are paid: bonus 1 + min(0.1 * f / floor, 0.3) from the floor up
    assert ok_short.all()
    np.testing.assert_allclose(m_short[0], [1.3, 1.3, 1.1, 1.2, 1.3, 1.0])


# ---------------------------------------------------------------- open interest


def test_min_open_interest_passes_where_unknown():
    m = default_market().slice(0, 3)
    oi = np.full(m.close.shape, np.nan)
    oi[1] = 10e6 / m.close[1] * 0.9  # $9M: rejected
    oi[2] = 10e6 / m.close[2] * 1.1  # $11M: passes
    import dataclasses

    ok = filters.min_open_interest(dataclasses.replace(m, open_interest=oi, _fingerprint=[]))
    assert ok[0].all() and not ok[1][m.listed[1]].any() and ok[2].all()


# ---------------------------------------------------------------- finish()


def _market(close: np.ndarray, coins: tuple[str, ...], wick: float = 0.5) -> Market:
    n, k = close.shape
    listed = np.isfinite(close)
    return Market(index=pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"), coins=coins,
                  interval="1h", open=close.copy(), high=close + wick, low=close - wick, close=close,
                  volume=np.where(listed, 1.0, np.nan), funding=np.zeros((n, k)),
                  premium=np.full((n, k), np.nan), open_interest=np.full((n, k), np.nan),
                  listed=listed)


def test_finish_setup_keys_mark_one_setup_per_run():
    close = np.full((30, 2), 100.0)
    m = _market(close, ("BTC", "ETH"))
    d = np.zeros((30, 2), np.int8)
    d[1:4, 1] = 1  # one run: bars 1-3
    d[5, 1] = 1  # a new run after a gap
    d[6:8, 1] = -1  # a flip: a new run
    sig = common.finish(m, "t", "live", d, 1.0, 2.0, 1.0, family=7)
    origin = np.array([-1, 1, 1, 1, -1, 5, 6, 6])
    expected = np.where(d[:8, 1] != 0, setup_key(origin, np.ones(8, int), d[:8, 1], 7), 0)
    np.testing.assert_array_equal(sig.setup[:8, 1], expected)
    assert len(set(sig.setup[1:4, 1])) == 1 and sig.setup[5, 1] != sig.setup[3, 1]
    assert (sig.setup[:, 0] == 0).all()


def test_finish_zeroes_unlisted_and_bad_stops_and_keeps_values_only_where_active():
    close = np.full((30, 2), 100.0)
    close[2, 0] = np.nan  # not listed
    m = _market(close, ("BTC", "ETH"))
    d = np.ones((30, 2), np.int8)
    stop = np.ones((30, 2))
    stop[3, 0], stop[4, 0], stop[5, 0] = 0.0, np.nan, -1.0
    sig = common.finish(m, "t", "shadow", d, stop, 2.0, 1.0, family=1, hold=12, trail=1.5)
    assert (sig.direction[2:6, 0] == 0).all() and (sig.direction[:, 1] == 1).all()
    assert (sig.direction[6:, 0] == 1).all() and (sig.direction[:2, 0] == 1).all()
    assert (sig.stop[2:6, 0] == 0).all() and np.isnan(sig.target[2:6, 0]).all()
    assert (sig.hold[2:6, 0] == 0).all() and (sig.hold[:, 1] == 12).all()
    assert np.isnan(sig.trail[2:6, 0]).all() and (sig.trail[:, 1] == 1.5).all()
    for name, dt in sig.DTYPES.items():
        assert getattr(sig, name).dtype == dt


def test_finish_regime_multiplier_and_vol_bucket():
    n = 400
    btc = 100 * np.exp(np.linspace(0, 0.8, n))  # a steady up-trend: BTC regime LONG late on
    alt = np.full(n, 50.0)
    m = _market(np.column_stack([btc, alt]), ("BTC", "ALT"), wick=0.0)
    hi, lo = m.high.copy(), m.low.copy()
    hi[:, 1], lo[:, 1] = 50.5, 49.5  # ALT: range 1.0 for 380 bars...
    hi[380:, 1], lo[380:, 1] = 51.5, 48.5  # ...then 3.0: ATR14/ATR100 > 1.4
    m = Market(**{**{f: getattr(m, f) for f in ("index", "coins", "interval", "open", "close", "volume",
                                                 "funding", "premium", "open_interest", "listed")},
                  "high": hi, "low": lo})
    d = np.zeros((n, 2), np.int8)
    d[-1] = [1, -1]  # long BTC with the regime, short ALT against it
    sig = common.finish(m, "t", "live", d, 1.0, np.nan, 2.0, family=1)
    assert REGIMES[sig.regime[-1, 0]] == "LONG"
    np.testing.assert_allclose(sig.score[-1], [2.0, 2.0 * 0.6])
    assert VOL_BUCKETS[sig.vol_bucket[-1, 1]] == "high"
    assert VOL_BUCKETS[sig.vol_bucket[300, 1]] == "mid"  # ratio 1 on a constant range
    assert VOL_BUCKETS[sig.vol_bucket[5, 1]] == "mid"  # warm-up (NaN ratio) is mid


def test_finish_rejects_bad_mode_shape_and_score():
    m = _market(np.full((30, 2), 100.0), ("BTC", "ETH"))
    d = np.ones((30, 2), np.int8)
    with pytest.raises(ConfigError, match="mode"):
        common.finish(m, "t", "paper", d, 1.0, 2.0, 1.0, family=1)
    with pytest.raises(ConfigError, match="cannot broadcast"):
        common.finish(m, "t", "live", d, np.ones(3), 2.0, 1.0, family=1)
    with pytest.raises(SignalsError, match="score must be finite"):
        common.finish(m, "t", "live", d, 1.0, 2.0, np.nan, family=1)


# ---------------------------------------------------------------- live / shadow


def test_pick_chooses_by_mode():
    assert common.pick("live", 1, 2) == 1 and common.pick("shadow", 1, 2) == 2
    with pytest.raises(ConfigError):
        common.pick("paper", 1, 2)


@pytest.mark.parametrize("name", ["momentum", "mean_reversion", "ema_pullback", "trend_alpha"])
def test_shadow_is_a_wider_net_than_live(name):
    """Every live signal is also a shadow signal on the same side, and shadow finds more."""
    s = get_strategy(name)
    m = default_market()
    live = s.generate(m, s.params_cls(), "live").direction
    shadow = s.generate(m, s.params_cls(), "shadow").direction
    on = live != 0
    assert on.any(), f"{name}: no live signal on the default market"
    np.testing.assert_array_equal(shadow[on], live[on])
    assert (shadow != 0).sum() > on.sum()


def test_finish_refuses_inventive_casts():
    m = _market(np.full((30, 2), 100.0), ("BTC", "ETH"))
    d = np.ones((30, 2), np.int8)
    with pytest.raises(ConfigError, match="bool array"):
        common.finish(m, "t", "live", d, 1.0, 2.0, 1.0, family=1, exit=np.full((30, 2), np.nan))
    with pytest.raises(ConfigError, match="fractional"):
        common.finish(m, "t", "live", np.full((30, 2), 0.5), 1.0, 2.0, 1.0, family=1)
    with pytest.raises(SignalsError, match="direction must be"):
        common.finish(m, "t", "live", np.full((30, 2), 2, np.int8), 1.0, 2.0, 1.0, family=1)
    fd = np.full((30, 2), np.nan)
    fd[5, 1] = -1.0
    sig = common.finish(m, "t", "live", fd, 1.0, 2.0, 1.0, family=1)
    assert sig.direction[5, 1] == -1 and (sig.direction != 0).sum() == 1


def test_stop_within_caps_the_stop_inside_the_liquidation_distance():
    from harness.margin import DEFAULT_MAX_LEVERAGE, MAX_LEVERAGE, liquidation_price
    from harness.simulate import SimConfig

    close = np.array([[100.0, 100.0, 100.0, np.nan]])
    stop = np.array([[3.9, 4.0, 4.1, 1.0]])
    np.testing.assert_array_equal(filters.stop_within(stop, close), [[True, True, False, True]])
    # At the harness's isolated leverage, every coin's liquidation lies beyond the cap.
    lev = SimConfig().position_leverage
    for max_lev in set(MAX_LEVERAGE.values()) | {DEFAULT_MAX_LEVERAGE}:
        liq = liquidation_price(100.0, 1, 1.0, min(lev, max_lev), max_lev)
        assert (100.0 - liq) / 100.0 > filters.MAX_STOP_FRAC, max_lev


def test_reward_risk_gate_is_the_two_to_one_rule():
    target = np.array([[1.99, 2.0, 3.0, np.nan]])  # R multiples; NaN: no price target
    np.testing.assert_array_equal(filters.reward_risk_gate(target), [[False, True, True, True]])
    np.testing.assert_array_equal(filters.reward_risk_gate(target, 3.0), [[False, False, True, True]])
    assert filters.MIN_REWARD_RISK == 2.0


def test_finish_takes_explicit_setup_keys_for_multi_coin_trades():
    m = _market(np.full((30, 2), 100.0), ("BTC", "ETH"))
    d = np.zeros((30, 2), np.int8)
    d[4:6] = [1, -1]  # a two-leg trade on bars 4-5
    key = setup_key(4, 0, 1, common.FAMILY_PAIR)
    sig = common.finish(m, "t", "live", d, 1.0, None, 1.0, family=common.FAMILY_PAIR,
                        setup=np.full((30, 2), key))
    assert (sig.setup[4:6] == key).all() and (sig.setup[d == 0] == 0).all()
