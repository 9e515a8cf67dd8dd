"""Hand-computed cases of the kernel semantics (harness/kernel_nb.py docstring).

Every expected number is worked out in the test from the bar prices, the friction constants and
the sizing rule; none is copied from the kernel's output.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from _kernel_helpers import FEE, FREE, NO_RISK, SLIP, flat, make_market, signal

from harness import kernel_layout as L
from harness import simulate as sim_mod
from harness.costs import CoinCosts
from harness.errors import ConfigError, SignalsError
from harness.friction import V3, V4, V5
from harness.market import Market
from harness.signals import Signals
from harness.simulate import SimConfig, simulate
from harness.sources import build_market

ENTRY = 100 * (1 + SLIP)  # a long filled at an open of 100 under v2 costs


def one_trade(res, p: int = 0) -> pd.Series:
    tr = res.trades(p)
    assert len(tr) == 1, tr
    return tr.iloc[0]


def long_at_bar0(bars, stop=5.0, friction="v2", config=NO_RISK, **kw):
    m = make_market({"BTC": bars})
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=stop, **kw)
    return simulate(m, sig, friction=friction, config=config)


# a long from the close of bar 0 (price 100); bar 1 is the fill bar and stays quiet
QUIET_FILL = [(100, 101, 99, 100), (100, 101, 99.5, 100.5)]


def test_stop_inside_the_fill_bar():
    # the fill is the open (100.05); the rest of bar 1 comes after it and dips to 94
    res = long_at_bar0([(100, 101, 99, 100), (100, 102, 94, 101), (101, 103, 100, 102)])
    tr = one_trade(res)
    size = 10_000 * 0.01 / 5.0  # risk sizing: 20 coins
    stop_fill = (ENTRY - 5.0) * (1 - SLIP)  # 95.05 sold with slippage
    pnl = size * (stop_fill - ENTRY) - size * ENTRY * FEE - size * stop_fill * FEE
    assert (tr.entry_bar, tr.exit_bar, tr.exit_reason) == (1, 1, "stop")
    assert tr.entry_price == pytest.approx(ENTRY, rel=1e-12)
    assert tr.exit_price == pytest.approx(stop_fill, rel=1e-12)
    assert tr["size"] == pytest.approx(size, rel=1e-12)
    assert tr.pnl == pytest.approx(pnl, rel=1e-12)
    assert tr.r_multiple == pytest.approx(pnl / (size * 5.0), rel=1e-12)
    assert tr.fees == pytest.approx(size * ENTRY * FEE + size * stop_fill * FEE, rel=1e-12)
    assert tr.entry_fee == pytest.approx(size * ENTRY * FEE, rel=1e-12)
    assert tr.exit_fee == pytest.approx(size * stop_fill * FEE, rel=1e-12)
    assert tr.entry_slippage_bps == tr.exit_slippage_bps == pytest.approx(5.0, rel=1e-12)
    assert tr.slippage_cost == pytest.approx(size * 100 * SLIP + size * (ENTRY - 5) * SLIP, rel=1e-12)
    assert res.metrics(0).final_equity == pytest.approx(10_000 + pnl, rel=1e-12)


def test_hold_one_is_stopped_in_its_one_bar():
    res = long_at_bar0([(100, 101, 99, 100), (100, 102, 94, 101), (101, 103, 100, 102)], hold=1)
    assert (one_trade(res).exit_bar, one_trade(res).exit_reason) == (1, "stop")
    # a quiet fill bar: the time stop closes it at the next open
    tr = one_trade(long_at_bar0(QUIET_FILL + [(101, 103, 100, 102)] * 2, hold=1))
    assert (tr.exit_bar, tr.exit_reason) == (2, "time")
    assert tr.exit_price == pytest.approx(101 * (1 - SLIP), rel=1e-12)


def test_gap_through_the_stop_fills_at_the_open():
    tr = one_trade(long_at_bar0(QUIET_FILL + [(93, 94, 92, 93), (93, 94, 92, 93)]))
    assert (tr.exit_bar, tr.exit_reason) == (2, "stop")
    assert tr.exit_price == pytest.approx(93 * (1 - SLIP), rel=1e-12)  # the open, worse than 95.05
    assert tr.exit_ts == pd.Timestamp("2024-01-01 02:00", tz="UTC")  # at the open


def test_range_reaching_stop_and_target_takes_the_stop():
    tr = one_trade(long_at_bar0(QUIET_FILL + [(100, ENTRY + 11, 94, 100), flat(1)[0]], target=2.0))
    assert (tr.exit_bar, tr.exit_reason) == (2, "stop")
    assert tr.exit_price == pytest.approx((ENTRY - 5) * (1 - SLIP), rel=1e-12)


def test_target_hit_alone():
    tr = one_trade(long_at_bar0(QUIET_FILL + [(101, ENTRY + 11, 100, 110), flat(1, 110)[0]],
                                target=2.0))
    assert (tr.exit_bar, tr.exit_reason) == (2, "target")
    assert tr.exit_price == pytest.approx((ENTRY + 10) * (1 - SLIP), rel=1e-12)


def test_bar_opening_beyond_the_target_fills_there_although_its_range_reaches_the_stop():
    # the open (entry + 11) is the bar's first trade: the target side came first
    tr = one_trade(long_at_bar0(QUIET_FILL + [(ENTRY + 11, ENTRY + 12, 94, 95), flat(1, 95)[0]],
                                target=2.0))
    assert (tr.exit_bar, tr.exit_reason) == (2, "target")
    assert tr.exit_price == pytest.approx((ENTRY + 11) * (1 - SLIP), rel=1e-12)


def test_partial_at_the_open_then_the_breakeven_stop_in_the_same_bar():
    # R = 4: partial level entry + 6 = 106.05. Bar 2 opens at 107, beyond it: half fills at the
    # open, the stop moves to breakeven, and the way down to the low (99) crosses it.
    tr = one_trade(long_at_bar0(QUIET_FILL + [(107, 107.5, 99, 101), flat(1, 101)[0]], stop=4.0,
                                friction=replace(V4, trail=False, version="test_partial")))
    size = 10_000 * 0.01 / 4.0  # 25
    p_fill, be_fill = 107 * (1 - SLIP), ENTRY * (1 - SLIP)
    fees = (size * ENTRY + size / 2 * p_fill + size / 2 * be_fill) * FEE
    pnl = size / 2 * (p_fill - ENTRY) + size / 2 * (be_fill - ENTRY) - fees
    assert (tr.exit_bar, tr.exit_reason, bool(tr.partial_taken)) == (2, "partial", True)
    assert tr.partial_price == pytest.approx(p_fill, rel=1e-12)
    assert tr.partial_qty == pytest.approx(size / 2, rel=1e-12)
    assert tr.partial_ts == pd.Timestamp("2024-01-01 02:00", tz="UTC")
    assert (tr.exit_price, tr.exit_qty) == (pytest.approx(be_fill, rel=1e-12), pytest.approx(size / 2))
    assert tr.fees == pytest.approx(fees, rel=1e-12)
    assert tr.pnl == pytest.approx(pnl, rel=1e-12)


def test_partial_inside_the_range_keeps_the_rest_unless_the_close_is_beyond_breakeven():
    v4 = replace(V4, trail=False, version="test_partial")
    size = 10_000 * 0.01 / 4.0
    p_fill = (ENTRY + 6) * (1 - SLIP)
    # low 99 first (the stop at 96.05 holds), then the partial at 106.05, close 105 above entry
    res = long_at_bar0(QUIET_FILL + [(101, 107, 99, 105), flat(1, 105)[0]], stop=4.0, friction=v4)
    tr = one_trade(res)
    assert (tr.exit_bar, tr.exit_reason, bool(tr.partial_taken)) == (3, "end_of_data", True)
    assert tr.partial_price == pytest.approx(p_fill, rel=1e-12)
    # the close (100) is below the breakeven set on the way up: that stop was certainly crossed
    tr = one_trade(long_at_bar0(QUIET_FILL + [(101, 107, 99, 100), flat(1, 100)[0]], stop=4.0,
                                friction=v4))
    be_fill = ENTRY * (1 - SLIP)
    pnl = size / 2 * (p_fill - ENTRY) + size / 2 * (be_fill - ENTRY) - FEE * (
        size * ENTRY + size / 2 * p_fill + size / 2 * be_fill)
    assert (tr.exit_bar, tr.exit_reason) == (2, "partial")
    assert tr.pnl == pytest.approx(pnl, rel=1e-12)


def test_trailing_stop_from_2r():
    no_partial = replace(V4, partial=False, version="test_trail_only")
    bars = QUIET_FILL + [
        (101, ENTRY + 7.9, 100.5, 107),  # best entry + 7.9 < 2R: no trailing yet
        (107, ENTRY + 10, 106, 109),  # best entry + 10 >= 2R: stop -> best - 1R (close above it)
        (109, 109.5, ENTRY + 6.1, 107),  # low above the trailing stop at entry + 6
        (107, 108, 105, 106),  # 105 <= entry + 6 = 106.05: trailed out
        (106, 106, 106, 106)]
    tr = one_trade(long_at_bar0(bars, stop=4.0, friction=no_partial))
    assert (tr.exit_bar, tr.exit_reason) == (5, "trail")
    assert tr.exit_price == pytest.approx((ENTRY + 10 - 4) * (1 - SLIP), rel=1e-12)
    # Signals.trail (in R) overrides the friction's 1R: 0.5R behind the best price
    tr2 = one_trade(long_at_bar0(bars, stop=4.0, friction=no_partial, trail=0.5))
    assert (tr2.exit_bar, tr2.exit_reason) == (4, "trail")  # bar 4's low entry + 6.1 < entry + 8
    assert tr2.exit_price == pytest.approx((ENTRY + 10 - 2) * (1 - SLIP), rel=1e-12)
    # the close of bar 3 below the level raised in bar 3: trailed out in bar 3 itself
    bars3 = bars[:3] + [(107, ENTRY + 10, 106, ENTRY + 5)] + bars[4:]
    tr3 = one_trade(long_at_bar0(bars3, stop=4.0, friction=no_partial))
    assert (tr3.exit_bar, tr3.exit_reason) == (3, "trail")


# 1 BTC long, 10x isolated, BTC max 40x (maintenance 1.25%), filled at 100,000 * (1 + slip)
BTC_FILL = 100_000 * (1 + SLIP)
BTC_MARGIN = BTC_FILL / 10
LIQ = (BTC_FILL - BTC_MARGIN) / (1 - 0.0125)  # equity = 1.25% of the notional
BACKSTOP = (BTC_FILL - BTC_MARGIN) / (1 - 0.0125 * 2 / 3)


@pytest.mark.parametrize("low_bar,reason,level", [
    ((98_000, 98_500, 91_000, 92_000), "liquidation", LIQ),  # market liquidation inside the bar
    ((91_000, 91_100, 90_000, 90_500), "liquidation", 91_000),  # opens below liq, above backstop
    ((89_000, 90_500, 88_000, 90_000), "backstop", None),  # opens beyond the backstop price
])
def test_hyperliquid_liquidation(low_bar, reason, level):
    assert (LIQ, BACKSTOP) == (pytest.approx(91_184.81, abs=0.01), pytest.approx(90_801.68, abs=0.01))
    bars = [(100_000,) * 4, (100_000, 100_500, 99_000, 100_000), low_bar, (92_000,) * 4]
    cfg = replace(NO_RISK, initial_equity=2_000_000.0)  # 1% risk / 20,000 stop = 1 BTC
    res = long_at_bar0(bars, stop=20_000.0, friction="v4", config=cfg)  # stop beyond liquidation
    tr = one_trade(res)
    entry_fee = BTC_FILL * FEE
    assert (tr.exit_bar, tr.exit_reason) == (2, reason)
    assert tr["size"] == pytest.approx(1.0, rel=1e-12)
    if level is None:  # the whole isolated margin, no fill
        assert tr.pnl == pytest.approx(-BTC_MARGIN - entry_fee, rel=1e-12)
    else:  # through the book at the level: slippage and fee paid, the leftover collateral kept
        fill = level * (1 - SLIP)
        assert tr.exit_price == pytest.approx(fill, rel=1e-12)
        assert tr.pnl == pytest.approx(fill - BTC_FILL - entry_fee - fill * FEE, rel=1e-12)
        assert tr.pnl > -BTC_MARGIN - entry_fee
    assert res.metrics(0).liquidations == 1


def test_funding_record_stamped_h_is_charged_at_the_close_of_the_bar_ending_at_h():
    start = pd.Timestamp("2024-01-01", tz="UTC")
    hours = pd.date_range(start, periods=5, freq="h")
    candles = pd.DataFrame({"coin": "BTC", "ts": hours[:4], "open": 100.0, "high": 100.0,
                            "low": 100.0, "close": [100.0, 100.0, 102.0, 104.0], "volume": 1.0})
    rates = [1e-3, 2e-4, 3e-4, 5e-4, 7e-4]  # stamped 00:00 .. 04:00
    funding = pd.DataFrame({"coin": "BTC", "ts": hours, "funding_rate": rates, "premium": np.nan})
    m = build_market(candles, funding, "1h", "test")
    # bar t (open t:00, close t+1:00) carries the record stamped at its close
    np.testing.assert_array_equal(m.funding[:, 0], rates[1:])
    # filled at 01:00, closed at 03:00: held through the hours ending 02:00 and 03:00
    long_, short = Signals.empty(m, "long"), Signals.empty(m, "short")
    for s, side in ((long_, 1), (short, -1)):
        signal(s, 0, side, stop=5.0)
        s.exit[2, 0] = True
    res = simulate(m, [long_, short], friction=FREE, config=NO_RISK)
    paid = 20 * (100.0 * 3e-4 + 102.0 * 5e-4)  # size 20 x close x the rate of that hour
    assert one_trade(res, 0).funding == pytest.approx(paid, rel=1e-12)
    assert one_trade(res, 1).funding == pytest.approx(-paid, rel=1e-12)


def test_a_bar_without_a_candle_still_pays_its_funding_at_the_last_close():
    rate = 0.001
    m = make_market({"BTC": flat(6)}, funding=rate)
    for name in ("open", "high", "low", "close"):
        getattr(m, name)[2, 0] = np.nan  # no trade in hour 2: the position is still open
    m.listed[2, 0] = False
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=5.0)
    sig.exit[3, 0] = True  # held through the closes of bars 1, 2 and 3
    tr = one_trade(simulate(m, sig, friction=FREE, config=NO_RISK))
    assert tr.funding == pytest.approx(3 * 20 * 100.0 * rate, rel=1e-12)


def test_ten_hours_of_funding_long_pays_short_receives():
    rate = 0.0001  # per hour, positive: longs pay
    m = make_market({"BTC": flat(13)}, funding=rate)
    long_, short = Signals.empty(m, "long"), Signals.empty(m, "short")
    signal(long_, 0, +1, stop=5.0)
    signal(short, 0, -1, stop=5.0)
    for s in (long_, short):
        s.exit[10, 0] = True  # filled at bar 1's open, held across the closes of bars 1..10
    res = simulate(m, [long_, short], friction=FREE, config=NO_RISK)
    paid = 10 * 20 * 100.0 * rate  # 10 hours x 20 coins x 100 x 0.01% = 2.0
    tl, ts = one_trade(res, 0), one_trade(res, 1)
    assert (tl.exit_bar, tl.exit_reason) == (11, "signal")
    assert tl.funding == pytest.approx(paid, rel=1e-12)
    assert ts.funding == pytest.approx(-paid, rel=1e-12)
    assert tl.pnl == pytest.approx(-paid, rel=1e-12)
    assert ts.pnl == pytest.approx(paid, rel=1e-12)
    assert res.metrics(0).final_equity == pytest.approx(10_000 - paid, rel=1e-12)
    assert res.metrics(1).final_equity == pytest.approx(10_000 + paid, rel=1e-12)
    assert res.metrics(0).funding == pytest.approx(paid, rel=1e-12)


def test_daily_loss_halt_is_soft_blocks_entries_and_lets_the_open_position_reach_its_target():
    btc = flat(2) + [(100, 100, 94, 94), (94.5, 95, 94, 94.5), (94.5, 95, 94, 95),
                     (95, 106, 95, 105)] + flat(22, 105)
    m = make_market({"BTC": btc, "ETH": flat(28, 50)})  # bar 24 opens 2024-01-02 00:00 UTC
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=50.0, target=0.1)  # target at 105
    signal(sig, 3, +1, stop=20.0, coin=1)  # fills at bar 4, same UTC day as the halt: blocked
    signal(sig, 23, +1, stop=20.0, coin=1)  # fills at bar 24, the next day
    cfg = SimConfig(sizing="fraction", fraction=1.0)  # 100 coins at 100: a 6% drop is -6%
    res = simulate(m, sig, friction=FREE, config=cfg)
    tr = res.trades(0)
    # close of bar 2: equity 10,000 - 100 * 6 = 9,400 <= 9,500: halted, NOT flattened
    assert list(zip(tr.coin, tr.entry_bar, tr.exit_bar, tr.exit_reason, strict=True)) == [
        ("BTC", 1, 5, "target"), ("ETH", 24, 27, "end_of_data")]
    assert tr.pnl.iloc[0] == pytest.approx(100 * (105 - 100), rel=1e-12)
    assert tr["size"].iloc[1] == pytest.approx(10_500 / 50, rel=1e-12)
    st = res.fill_status(0).set_index("signal_bar").status
    assert list(st) == ["filled", "daily_halt", "filled"]
    assert res.seg_stats[0, 0, L.S_HALTS] == 1


def test_drawdown_kill_switch_halts_for_the_rest_of_the_segment():
    bars = flat(2) + [(100, 100, 70, 70), (71, 72, 70, 71)] + flat(44, 71)
    m = make_market({"BTC": bars})
    sig = Signals.empty(m, "t")
    for t in (0, 5, 30):
        signal(sig, t, +1, stop=90.0)
    cfg = SimConfig(sizing="fraction", fraction=1.0)
    res = simulate(m, sig, friction=FREE, config=cfg)
    tr = res.trades(0)
    # equity 7,000 <= 0.75 * 10,000 at bar 2's close: flattened at bar 3's open, then no entries
    assert len(tr) == 1
    assert (tr.exit_bar.iloc[0], tr.exit_reason.iloc[0]) == (3, "kill_switch")
    assert tr.pnl.iloc[0] == pytest.approx(100 * (71 - 100), rel=1e-12)
    assert list(res.fill_status(0).status) == ["filled", "kill_switch", "kill_switch"]
    # a second segment is a fresh simulation: its signal (bar 30) trades again
    res = simulate(m, sig, friction=FREE, config=cfg, segments=[(0, 20), (20, 48)])
    tr = res.trades(0)
    assert list(tr.entry_bar) == [1, 31]
    assert list(tr.segment) == [0, 1]
    assert tr.exit_reason.iloc[1] == "end_of_data"
    seg = res.segment_metrics(0)
    assert seg[0].final_equity == pytest.approx(10_000 - 2_900, rel=1e-12)
    assert seg[1].final_equity == pytest.approx(10_000.0, rel=1e-12)  # flat prices, no costs
    assert res.metrics(0).final_equity == pytest.approx(7_100.0, rel=1e-12)  # chained


def test_max_positions_highest_score_wins():
    m = make_market({c: flat(5) for c in ("A", "B", "C")})
    sig = Signals.empty(m, "t")
    for coin, score in enumerate((0.5, 0.9, 0.7)):
        signal(sig, 0, +1, stop=5.0, coin=coin, score=score)
    res = simulate(m, sig, friction=FREE, config=replace(NO_RISK, max_positions=2))
    tr = res.trades(0)
    assert sorted(tr.coin) == ["B", "C"]
    assert set(tr.exit_reason) == {"end_of_data"}
    assert dict(zip(*res.fill_status(0)[["coin", "status"]].T.values, strict=True)) == {
        "A": "no_slot", "B": "filled", "C": "filled"}


def test_gross_leverage_cap_cuts_the_last_entry_and_refuses_the_next():
    m = make_market({c: flat(4) for c in ("A", "B", "C")})
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=0.5, coin=0, score=3.0)  # 1% / 0.5% = 2x equity notional
    signal(sig, 0, +1, stop=0.5, coin=1, score=2.0)  # would be 2x more: cut to 1x (cap 3x)
    signal(sig, 0, +1, stop=0.5, coin=2, score=1.0)  # no room left
    res = simulate(m, sig, friction=FREE, config=NO_RISK)
    tr = res.trades(0).set_index("coin")
    assert tr.loc["A", "notional"] == pytest.approx(20_000, rel=1e-12)
    assert tr.loc["B", "notional"] == pytest.approx(10_000, rel=1e-12)
    assert list(res.fill_status(0).status) == ["filled", "filled", "gross_cap"]


def test_v3_dedup_skips_a_repeated_setup_key():
    bars = [(100, 101, 99, 100), (100, 102, 94, 101)] + flat(4, 95) + [(95, 95, 80, 85)] + flat(6, 85)
    m = make_market({"BTC": bars})
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=5.0, setup=42)  # stopped inside its fill bar
    signal(sig, 5, +1, stop=5.0, setup=42)  # same setup again: v3 skips it (v2: stopped in bar 6)
    signal(sig, 8, +1, stop=5.0, setup=43)  # a new setup: traded
    v2 = simulate(m, sig, friction="v2", config=NO_RISK).trades(0)
    res3 = simulate(m, sig, friction=V3, config=NO_RISK)
    v3 = res3.trades(0)
    assert list(v2.signal_bar) == [0, 5, 8]
    assert list(v3.signal_bar) == [0, 8]
    assert list(v3.setup) == [42, 43]
    assert list(res3.fill_status(0).status) == ["filled", "dedup", "filled"]


def test_time_stop_closes_at_the_open_of_entry_plus_hold():
    bars = [(100 + i, 101 + i, 99 + i, 100.5 + i) for i in range(8)]
    m = make_market({"BTC": bars})
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=5.0, hold=3)
    tr = one_trade(simulate(m, sig, friction=FREE, config=NO_RISK))
    assert (tr.entry_bar, tr.exit_bar, tr.exit_reason) == (1, 4, "time")
    assert tr.exit_price == 104.0  # bar 4's open
    assert tr.exit_ts == m.index[4]


def test_opposite_signal_reverses_at_the_same_open_and_a_same_side_signal_is_refused():
    bars = [(100 + i, 101 + i, 99 + i, 100 + i) for i in range(7)]
    m = make_market({"BTC": bars})
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=5.0)
    signal(sig, 1, +1, stop=5.0)
    signal(sig, 3, -1, stop=5.0)
    res = simulate(m, sig, friction=FREE, config=NO_RISK)
    tr = res.trades(0)
    assert list(tr.side) == [1, -1]
    assert (tr.exit_bar.iloc[0], tr.exit_reason.iloc[0]) == (4, "signal")
    assert tr.entry_bar.iloc[1] == 4
    assert tr.exit_price.iloc[0] == tr.entry_price.iloc[1] == 104.0
    assert tr.pnl.iloc[0] == pytest.approx(20 * (104 - 101), rel=1e-12)
    assert list(res.fill_status(0).status) == ["filled", "position_open", "filled"]


def test_legacy_fills_at_the_signal_close_without_costs():
    bars = [(100, 101, 99, 100), (100, 102, 99, 101), (101, 101, 94, 96), (96, 97, 95, 96)]
    m = make_market({"BTC": bars}, funding=0.001)
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=5.0)
    tr = one_trade(simulate(m, sig, friction="legacy", config=NO_RISK))
    # filled at bar 0's close (100), stop 95 hit in bar 2 at 95; no fee, slippage or funding
    assert (tr.entry_bar, tr.exit_bar, tr.exit_reason) == (0, 2, "stop")
    assert tr.entry_ts == m.index[0] + pd.Timedelta(hours=1)
    assert (tr.entry_price, tr.exit_price, tr.fees, tr.funding) == (100.0, 95.0, 0.0, 0.0)
    assert tr.pnl == pytest.approx(20 * (95 - 100), rel=1e-12)


def _detail_market(hourly: list[tuple], quarters: dict[int, list[tuple]]) -> tuple[Market, Market]:
    """1h bars and 15m bars: hour t's four quarters are `quarters[t]` or four copies of it."""
    m = make_market({"BTC": hourly})
    rows = []
    for t, bar in enumerate(hourly):
        rows += quarters.get(t, [bar] * 4)
    d = np.array(rows, dtype=np.float64)
    n = len(rows)
    nan = np.full((n, 1), np.nan)
    detail = Market(index=pd.date_range("2024-01-01", periods=n, freq="15min", tz="UTC"),
                    coins=("BTC",), interval="15m", open=d[:, :1].copy(), high=d[:, 1:2].copy(),
                    low=d[:, 2:3].copy(), close=d[:, 3:].copy(), volume=np.ones((n, 1)),
                    funding=np.zeros((n, 1)), premium=nan, open_interest=nan.copy(),
                    listed=np.isfinite(d[:, :1]), source="test 15m")
    return m, detail


def test_intrabar_detail_decides_which_level_came_first():
    hourly = QUIET_FILL + [(100, ENTRY + 11, 94, 100), flat(1, 100)[0]]
    quarters = {2: [(100, ENTRY + 11, 99, ENTRY + 10.5), (110, 110, 94, 96), (96, 99, 95, 98),
                    (98, 100, 97, 100)]}  # the target (entry + 10) in the first quarter
    m, detail = _detail_market(hourly, quarters)
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=5.0, target=2.0)
    coarse = one_trade(simulate(m, sig, friction="v2", config=NO_RISK))
    res = simulate(m, sig, friction="v2", config=NO_RISK, detail=detail)
    fine = one_trade(res)
    assert (coarse.exit_reason, bool(coarse.detail)) == ("stop", False)
    assert (fine.exit_bar, fine.exit_reason, bool(fine.detail)) == (2, "target", True)
    assert fine.exit_price == pytest.approx((ENTRY + 10) * (1 - SLIP), rel=1e-12)
    assert fine.exit_ts == pd.Timestamp("2024-01-01 02:15", tz="UTC")  # inside the first quarter
    assert coarse.exit_ts == pd.Timestamp("2024-01-01 03:00", tz="UTC")  # inside the hour
    assert (res.metrics(0).detail_bars, res.metrics(0).detail_missing) == (1, 0)
    # quarters that show the stop first agree with adverse-first
    quarters = {2: [(100, 101, 94, 95), (95, ENTRY + 11, 95, 110), (110, 110, 99, 100),
                    (100, 100, 99, 100)]}
    m, detail = _detail_market(hourly, quarters)
    assert one_trade(simulate(m, sig, friction="v2", config=NO_RISK, detail=detail)).exit_reason == "stop"


def test_a_missing_detail_bar_falls_back_to_adverse_first_and_is_counted():
    hourly = QUIET_FILL + [(100, ENTRY + 11, 94, 100), flat(1, 100)[0]]
    nan_bar = (np.nan,) * 4
    quarters = {2: [(100, ENTRY + 11, 99, ENTRY + 10.5), nan_bar, (96, 99, 95, 98), (98, 100, 97, 100)]}
    m, detail = _detail_market(hourly, quarters)
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=5.0, target=2.0)
    res = simulate(m, sig, friction="v2", config=NO_RISK, detail=detail)
    assert one_trade(res).exit_reason == "stop"
    assert (res.metrics(0).detail_bars, res.metrics(0).detail_missing) == (0, 1)


def test_detail_must_be_a_lower_interval_that_divides_the_bars():
    m, detail = _detail_market(QUIET_FILL, {})
    sig = Signals.empty(m, "t")
    with pytest.raises(ConfigError, match="detail 1h must be a lower interval"):
        simulate(m, sig, detail=m)
    assert detail.interval == "15m"


def test_v5_slippage_is_per_coin_and_per_fill_from_the_estimate_before_the_fill_bar():
    bars = QUIET_FILL + [(100, 100.5, 94, 95), flat(1, 95)[0]]
    m = make_market({"BTC": bars})
    n = m.n_bars
    hs = np.full((n, 1), 3e-4)
    hs[1] = 8e-4  # known at the close of bar 1: prices the fills of bar 2
    ic = np.full((n, 1), 1e-5)
    costs = CoinCosts(half_spread=hs, impact_coef=ic, sigma_d=hs, adv=hs)
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=5.0)
    res = simulate(m, sig, friction=V5, config=NO_RISK, costs=costs)
    tr = one_trade(res)
    size = 20.0  # 1% of 10,000 / 5
    s_in = 3e-4 + 1e-5 * np.sqrt(size * 100.0)  # row 0, notional at the raw open
    entry = 100 * (1 + s_in)
    stop = entry - 5.0
    s_out = 8e-4 + 1e-5 * np.sqrt(size * stop)
    assert tr.entry_slippage_bps == pytest.approx(s_in * 1e4, rel=1e-12)
    assert (tr.exit_bar, tr.exit_reason) == (2, "stop")
    assert tr.exit_slippage_bps == pytest.approx(s_out * 1e4, rel=1e-12)
    assert tr.exit_price == pytest.approx(stop * (1 - s_out), rel=1e-12)
    # fee stress multiplies the per-coin slippage after the floor and cap
    stressed = one_trade(simulate(m, sig, friction=V5.stressed(1.5), config=NO_RISK, costs=costs))
    assert stressed.entry_slippage_bps == pytest.approx(1.5 * s_in * 1e4, rel=1e-12)
    # the cap (200 bps) and the floor (1 bp); unknown estimates pay the flat 5 bps, counted
    big = CoinCosts(half_spread=np.full((n, 1), 0.5), impact_coef=ic, sigma_d=hs, adv=hs)
    tiny = CoinCosts(half_spread=np.zeros((n, 1)), impact_coef=np.zeros((n, 1)), sigma_d=hs, adv=hs)
    unknown = CoinCosts(half_spread=np.full((n, 1), np.nan), impact_coef=ic, sigma_d=hs, adv=hs)
    assert one_trade(simulate(m, sig, friction=V5, config=NO_RISK, costs=big)).entry_slippage_bps \
        == pytest.approx(200.0)
    assert one_trade(simulate(m, sig, friction=V5, config=NO_RISK, costs=tiny)).entry_slippage_bps \
        == pytest.approx(1.0)
    res_u = simulate(m, sig, friction=V5, config=NO_RISK, costs=unknown)
    assert one_trade(res_u).entry_slippage_bps == pytest.approx(5.0)
    assert res_u.metrics(0).slip_fallbacks == 2  # the entry and the exit


def test_trade_buffer_growth_and_chunking_keep_every_trade(monkeypatch):
    rng = np.random.default_rng(3)
    n = 400
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    bars = [(c, c * 1.004, c * 0.996, c) for c in close]
    m = make_market({"A": bars, "B": bars[::-1]})
    sigs = []
    for i in range(5):
        s = Signals.empty(m, f"s{i}")
        hit = rng.random((n, 2)) < 0.2
        s.direction[hit] = rng.choice([-1, 1], hit.sum())
        s.stop[hit] = 0.5 + i * 0.2
        s.score[hit] = rng.random(hit.sum())
        sigs.append(s)
    ref = simulate(m, sigs, friction="v4")
    monkeypatch.setattr(sim_mod, "TRADE_CAP", 1)  # every set overflows and is rerun
    monkeypatch.setattr(sim_mod, "CHUNK_BYTES", 1)  # one set per kernel call
    small = simulate(m, sigs, friction="v4")
    for p in range(len(sigs)):
        a, b = ref.trades(p), small.trades(p)
        assert len(a) == ref.metrics(p).n_trades > 20
        pd.testing.assert_frame_equal(a, b)
        pd.testing.assert_frame_equal(ref.fill_status(p), small.fill_status(p))
        assert ref.metrics(p) == small.metrics(p)


def test_bad_signal_names_strategy_coin_and_bar():
    m = make_market({"BTC": flat(5), "ETH": flat(5)})
    sig = Signals.empty(m, "broken")
    sig.direction[2, 1] = 1  # stop left at 0
    with pytest.raises(SignalsError, match=r"broken: stop .* coin ETH bar 2"):
        simulate(m, sig)


@pytest.mark.parametrize("halt,kill,expected", [
    (0.2, 0.6, {"stop", "partial", "trail", "target", "liquidation", "signal", "time", "end_of_data"}),
    (0.05, 0.2, {"kill_switch", "liquidation", "signal"}),
])
def test_cash_accounting_identity_on_random_v4_portfolios(halt, kill, expected):
    # Every cash flow (fees, slippage, funding, partials, liquidations) belongs to one trade and
    # every position is closed at the end: final - initial equity == the sum of trade pnl.
    rng = np.random.default_rng(5)
    n = 24 * 30
    bars = {}
    for coin in ("BTC", "ETH", "SOL", "XYZ"):
        close = 100 * np.exp(np.cumsum(rng.standard_t(3, n) * 0.01))
        op = np.r_[100.0, close[:-1]] * np.exp(rng.normal(0, 0.003, n))
        hi = np.maximum(op, close) * np.exp(np.abs(rng.normal(0, 0.006, n)))
        lo = np.minimum(op, close) * np.exp(-np.abs(rng.normal(0, 0.006, n)))
        bars[coin] = list(zip(op, hi, lo, close, strict=True))
    m = make_market(bars, funding=3e-5)
    sig = Signals.empty(m, "random")
    hit = rng.random((n, 4)) < 0.05
    sig.direction[hit] = rng.choice([-1, 1], hit.sum())
    sig.stop[hit] = rng.uniform(1.0, 25.0, hit.sum())  # some stops lie beyond liquidation
    sig.target[hit] = np.where(rng.random(hit.sum()) < 0.5, rng.uniform(1.0, 4.0, hit.sum()), np.nan)
    sig.score[hit] = rng.random(hit.sum())
    sig.hold[hit] = np.where(rng.random(hit.sum()) < 0.2, 12, 0)
    sig.exit[rng.random((n, 4)) < 0.01] = True
    cfg = SimConfig(risk_fraction=0.03, max_leverage=10.0, position_leverage=20.0, max_positions=3,
                    daily_loss_halt=halt, kill_drawdown=kill)
    res = simulate(m, sig, friction="v4", config=cfg, segments=[(0, 300), (300, n)])
    tr = res.trades(0)
    assert expected <= set(tr.exit_reason), set(tr.exit_reason)
    for g, met in enumerate(res.segment_metrics(0)):
        seg = tr[tr.segment == g]
        assert met.final_equity - cfg.initial_equity == pytest.approx(seg.pnl.sum(), rel=1e-9)
        assert met.fees == pytest.approx(seg.fees.sum(), rel=1e-12)
        assert met.funding == pytest.approx(seg.funding.sum(), rel=1e-12)
        assert met.slippage == pytest.approx(seg.slippage_cost.sum(), rel=1e-12)
        assert met.n_trades == len(seg)
    np.testing.assert_allclose(tr.r_multiple, tr.pnl / (tr["size"] * tr.stop_distance), rtol=1e-12)
    np.testing.assert_allclose(tr.fees, tr.entry_fee + tr.partial_fee + tr.exit_fee, rtol=1e-12)
    assert (tr.exit_bar >= tr.entry_bar).all() and (tr.entry_bar == tr.signal_bar + 1).all()
    # a market liquidation inside the range fills at the Hyperliquid liquidation price
    liq = tr[(tr.exit_reason == "liquidation") & (tr.exit_ts > tr.entry_ts)
             & (tr.exit_ts.dt.minute == 0) & ~tr.partial_taken]
    lev = np.minimum(cfg.position_leverage, [40.0 if c == "BTC" else 25.0 if c == "ETH" else
                                             20.0 if c == "SOL" else 5.0 for c in liq.coin])
    mrate = 0.5 / np.array([40.0 if c == "BTC" else 25.0 if c == "ETH" else 20.0 if c == "SOL"
                            else 5.0 for c in liq.coin])
    level = (liq.entry_price - liq.side / lev * liq.entry_price) / (1 - liq.side * mrate)
    inside = np.isclose(liq.exit_price, level * (1 - liq.side * SLIP), rtol=1e-12)
    assert inside.sum() >= 1
    margin = liq.notional / lev
    assert (liq.pnl >= -margin - liq.fees - liq.funding - 1e-9).all()  # never more than the margin
