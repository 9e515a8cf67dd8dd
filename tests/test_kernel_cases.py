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

from harness import simulate as sim_mod
from harness.errors import SignalsError
from harness.friction import V3, V4
from harness.signals import Signals
from harness.simulate import SimConfig, simulate


def one_trade(res, p: int = 0) -> pd.Series:
    tr = res.trades(p)
    assert len(tr) == 1, tr
    return tr.iloc[0]


# a long from the close of bar 0 (price 100) with a 5-point stop; bar 1 is the fill bar
BASE = [(100, 101, 99, 100), (100, 102, 94, 101), (101, 103, 100, 102)]


def test_stop_hit_intrabar_and_fill_bar_not_checked():
    # bar 1 dips to 94, below the stop, but it is the fill bar: not checked. Bar 3 hits it.
    m = make_market({"BTC": BASE + [(102, 102, 94, 95), (95, 96, 94, 95)]})
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=5.0)
    res = simulate(m, sig, friction="v2", config=NO_RISK)
    tr = one_trade(res)
    entry = 100 * (1 + SLIP)  # 100.05
    size = 10_000 * 0.01 / 5.0  # risk sizing: 20 coins
    stop_fill = (entry - 5.0) * (1 - SLIP)  # 95.05 sold with slippage
    pnl = size * (stop_fill - entry) - size * entry * FEE - size * stop_fill * FEE
    assert (tr.entry_bar, tr.exit_bar, tr.exit_reason) == (1, 3, "stop")
    assert tr.entry_price == pytest.approx(entry, rel=1e-12)
    assert tr.exit_price == pytest.approx(stop_fill, rel=1e-12)
    assert tr["size"] == pytest.approx(size, rel=1e-12)
    assert tr.pnl == pytest.approx(pnl, rel=1e-12)
    assert tr.r_multiple == pytest.approx(pnl / (size * 5.0), rel=1e-12)
    assert tr.fees == pytest.approx(size * entry * FEE + size * stop_fill * FEE, rel=1e-12)
    assert res.metrics(0).final_equity == pytest.approx(10_000 + pnl, rel=1e-12)


def test_gap_through_the_stop_fills_at_the_open():
    m = make_market({"BTC": BASE + [(93, 94, 92, 93), (93, 94, 92, 93)]})
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=5.0)
    tr = one_trade(simulate(m, sig, friction="v2", config=NO_RISK))
    assert (tr.exit_bar, tr.exit_reason) == (3, "stop")
    assert tr.exit_price == pytest.approx(93 * (1 - SLIP), rel=1e-12)  # the open, worse than 95.05


def test_stop_and_target_in_one_bar_takes_the_stop():
    entry = 100 * (1 + SLIP)
    m = make_market({"BTC": BASE + [(102, entry + 10 + 1, 94, 100), (100, 100, 100, 100)]})
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=5.0, target=2.0)  # target level entry + 10
    tr = one_trade(simulate(m, sig, friction="v2", config=NO_RISK))
    assert (tr.exit_bar, tr.exit_reason) == (3, "stop")
    assert tr.exit_price == pytest.approx((entry - 5) * (1 - SLIP), rel=1e-12)


def test_target_hit_alone():
    entry = 100 * (1 + SLIP)
    m = make_market({"BTC": BASE + [(102, entry + 11, 101, 110), (110, 110, 110, 110)]})
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=5.0, target=2.0)
    tr = one_trade(simulate(m, sig, friction="v2", config=NO_RISK))
    assert (tr.exit_bar, tr.exit_reason) == (3, "target")
    assert tr.exit_price == pytest.approx((entry + 10) * (1 - SLIP), rel=1e-12)


def test_partial_at_1_5r_then_breakeven_stop():
    entry = 100 * (1 + SLIP)  # 100.05, R = 4
    part = entry + 1.5 * 4  # 106.05
    bars = [(100, 100, 100, 100), (100, 101, 99.5, 100.5),
            (101, 107, 100.5, 106),  # touches 106.05: half out; best 107 < entry + 2R: no trail
            (105, 105.5, 99, 100),  # back through entry: the breakeven stop
            (100, 100, 100, 100)]
    m = make_market({"BTC": bars})
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=4.0)
    tr = one_trade(simulate(m, sig, friction="v4", config=NO_RISK))
    size = 10_000 * 0.01 / 4.0  # 25
    p_fill, be_fill = part * (1 - SLIP), entry * (1 - SLIP)
    fees = (size * entry + size / 2 * p_fill + size / 2 * be_fill) * FEE
    pnl = size / 2 * (p_fill - entry) + size / 2 * (be_fill - entry) - fees
    assert (tr.exit_bar, tr.exit_reason, bool(tr.partial_taken)) == (3, "partial", True)
    assert tr.exit_price == pytest.approx((p_fill + be_fill) / 2, rel=1e-12)
    assert tr.fees == pytest.approx(fees, rel=1e-12)
    assert tr.pnl == pytest.approx(pnl, rel=1e-12)
    assert tr.r_multiple == pytest.approx(pnl / (size * 4.0), rel=1e-12)


def test_trailing_stop_from_2r():
    no_partial = replace(V4, partial=False, version="test_trail_only")
    entry = 100 * (1 + SLIP)  # R = 4: trailing starts once the best price reaches entry + 8
    bars = [(100, 100, 100, 100), (100, 101, 99.5, 100.5),
            (101, entry + 7.9, 100.5, 107),  # best entry + 7.9 < 2R: no trailing yet
            (107, entry + 10, 106, 109),  # best entry + 10 >= 2R: stop -> best - 1R, from bar 4
            (109, 109.5, entry + 6.1, 107),  # low above the trailing stop at entry + 6
            (107, 108, 105, 106),  # 105 <= entry + 6 = 106.05: trailed out
            (106, 106, 106, 106)]
    m = make_market({"BTC": bars})
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=4.0)
    tr = one_trade(simulate(m, sig, friction=no_partial, config=NO_RISK))
    assert (tr.exit_bar, tr.exit_reason) == (5, "trail")
    assert tr.exit_price == pytest.approx((entry + 10 - 4) * (1 - SLIP), rel=1e-12)
    # Signals.trail (in R) overrides the friction's 1R: 0.5R behind the best price
    sig2 = Signals.empty(m, "t")
    signal(sig2, 0, +1, stop=4.0, trail=0.5)
    tr2 = one_trade(simulate(m, sig2, friction=no_partial, config=NO_RISK))
    assert (tr2.exit_bar, tr2.exit_reason) == (4, "trail")  # bar 4's low entry + 6.1 < entry + 8
    assert tr2.exit_price == pytest.approx((entry + 10 - 2) * (1 - SLIP), rel=1e-12)


@pytest.mark.parametrize("gap", [False, True])
def test_liquidation_at_the_hyperliquid_price(gap):
    no_slip = replace(V4, slippage_bps=0.0, version="test_liq")
    # 1 BTC long at 100,000, 10x isolated, BTC max 40x: margin 10,000, maintenance 1.25%
    liq = 100_000 - (10_000 - 0.0125 * 100_000) / 1 / (1 - 0.0125)  # 91,139.2405...
    assert liq == pytest.approx(91_139.24, abs=0.005)
    low_bar = (90_000, 90_500, 89_000, 90_000) if gap else (98_000, 98_500, 91_000, 92_000)
    bars = [(100_000,) * 4, (100_000, 100_500, 99_000, 100_000), low_bar, (92_000,) * 4]
    m = make_market({"BTC": bars})
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=20_000.0)  # stop at 80,000: beyond the liquidation price
    cfg = replace(NO_RISK, initial_equity=2_000_000.0)  # 1% risk / 20,000 stop = 1 BTC
    tr = one_trade(simulate(m, sig, friction=no_slip, config=cfg))
    fill = 90_000 if gap else liq
    fees = 100_000 * FEE + 1 * fill * FEE
    assert (tr.exit_bar, tr.exit_reason) == (2, "liquidation")
    assert tr["size"] == pytest.approx(1.0, rel=1e-12)
    assert tr.exit_price == pytest.approx(fill, rel=1e-12)
    assert tr.pnl == pytest.approx(-10_000 - fees, rel=1e-12)  # the isolated margin is lost


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


def test_daily_loss_halt_flattens_and_blocks_until_midnight():
    bars = flat(2) + [(100, 100, 94, 94), (94.5, 95, 94, 94.5)] + flat(24, 94.5)
    m = make_market({"BTC": bars})  # bar 0 opens 2024-01-01 00:00 UTC, bar 24 is 2024-01-02
    sig = Signals.empty(m, "t")
    for t in (0, 3, 23):
        signal(sig, t, +1, stop=50.0)
    cfg = SimConfig(sizing="fraction", fraction=1.0)  # 100 coins at 100: a 6% drop is -6%
    res = simulate(m, sig, friction=FREE, config=cfg)
    tr = res.trades(0)
    # close of bar 2: equity 10,000 - 100 * 6 = 9,400 <= 9,500: flatten at bar 3's open (94.5);
    # the signal of bar 3 (fill at bar 4, same UTC day) is blocked; bar 23's fills at 00:00.
    assert list(tr.entry_bar) == [1, 24]
    assert tr.exit_reason.iloc[0] == "daily_halt"
    assert tr.exit_bar.iloc[0] == 3
    assert tr.pnl.iloc[0] == pytest.approx(100 * (94.5 - 100), rel=1e-12)
    assert tr["size"].iloc[1] == pytest.approx((10_000 - 550) / 94.5, rel=1e-12)


def test_drawdown_kill_switch_halts_for_the_rest_of_the_segment():
    bars = flat(2) + [(100, 100, 70, 70), (71, 72, 70, 71)] + flat(44, 71)
    m = make_market({"BTC": bars})
    sig = Signals.empty(m, "t")
    for t in (0, 5, 30):
        signal(sig, t, +1, stop=90.0)
    cfg = SimConfig(sizing="fraction", fraction=1.0)
    tr = simulate(m, sig, friction=FREE, config=cfg).trades(0)
    # equity 7,000 <= 0.75 * 10,000 at bar 2's close: flattened at bar 3's open, then no entries
    assert len(tr) == 1
    assert (tr.exit_bar.iloc[0], tr.exit_reason.iloc[0]) == (3, "kill_switch")
    assert tr.pnl.iloc[0] == pytest.approx(100 * (71 - 100), rel=1e-12)
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
    tr = simulate(m, sig, friction=FREE, config=replace(NO_RISK, max_positions=2)).trades(0)
    assert sorted(tr.coin) == ["B", "C"]
    assert set(tr.exit_reason) == {"end_of_data"}


def test_gross_leverage_cap_cuts_the_last_entry():
    m = make_market({c: flat(4) for c in ("A", "B")})
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=0.5, coin=0, score=2.0)  # 1% / 0.5% = 2x equity notional
    signal(sig, 0, +1, stop=0.5, coin=1, score=1.0)  # would be 2x more: cut to 1x (cap 3x)
    tr = simulate(m, sig, friction=FREE, config=NO_RISK).trades(0).set_index("coin")
    assert tr.loc["A", "notional"] == pytest.approx(20_000, rel=1e-12)
    assert tr.loc["B", "notional"] == pytest.approx(10_000, rel=1e-12)


def test_v3_dedup_skips_a_repeated_setup_key():
    bars = BASE + [(102, 102, 94, 95)] + flat(2, 95) + [(95, 95, 80, 85)] + flat(6, 85)
    m = make_market({"BTC": bars})
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=5.0, setup=42)  # stopped at bar 3
    signal(sig, 5, +1, stop=5.0, setup=42)  # same setup again: v3 skips it
    signal(sig, 8, +1, stop=5.0, setup=43)  # a new setup: traded
    v2 = simulate(m, sig, friction="v2", config=NO_RISK).trades(0)
    v3 = simulate(m, sig, friction=V3, config=NO_RISK).trades(0)
    assert list(v2.signal_bar) == [0, 5, 8]
    assert list(v3.signal_bar) == [0, 8]
    assert list(v3.setup) == [42, 43]


def test_time_stop_closes_at_the_open_of_entry_plus_hold():
    bars = [(100 + i, 101 + i, 99 + i, 100.5 + i) for i in range(8)]
    m = make_market({"BTC": bars})
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=5.0, hold=3)
    tr = one_trade(simulate(m, sig, friction=FREE, config=NO_RISK))
    assert (tr.entry_bar, tr.exit_bar, tr.exit_reason) == (1, 4, "time")
    assert tr.exit_price == 104.0  # bar 4's open
    assert tr.exit_ts == m.index[4]


def test_opposite_signal_reverses_at_the_same_open():
    bars = [(100 + i, 101 + i, 99 + i, 100 + i) for i in range(7)]
    m = make_market({"BTC": bars})
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=5.0)
    signal(sig, 3, -1, stop=5.0)
    tr = simulate(m, sig, friction=FREE, config=NO_RISK).trades(0)
    assert list(tr.side) == [1, -1]
    assert (tr.exit_bar.iloc[0], tr.exit_reason.iloc[0]) == (4, "signal")
    assert tr.entry_bar.iloc[1] == 4
    assert tr.exit_price.iloc[0] == tr.entry_price.iloc[1] == 104.0
    assert tr.pnl.iloc[0] == pytest.approx(20 * (104 - 101), rel=1e-12)


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
        assert ref.metrics(p) == small.metrics(p)


def test_bad_signal_names_strategy_coin_and_bar():
    m = make_market({"BTC": flat(5), "ETH": flat(5)})
    sig = Signals.empty(m, "broken")
    sig.direction[2, 1] = 1  # stop left at 0
    with pytest.raises(SignalsError, match=r"broken: stop .* coin ETH bar 2"):
        simulate(m, sig)


@pytest.mark.parametrize("halt,kill,expected", [
    (0.2, 0.6, {"stop", "partial", "trail", "target", "liquidation", "signal", "time", "end_of_data"}),
    (0.05, 0.25, {"daily_halt", "kill_switch", "liquidation", "signal"}),
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
        assert met.n_trades == len(seg)
    np.testing.assert_allclose(tr.r_multiple, tr.pnl / (tr["size"] * tr.stop_distance), rtol=1e-12)
    assert (tr.exit_bar >= tr.entry_bar).all() and (tr.entry_bar == tr.signal_bar + 1).all()
    liq = tr[tr.exit_reason == "liquidation"]
    lev = np.minimum(cfg.position_leverage, [40.0 if c == "BTC" else 25.0 if c == "ETH" else
                                             20.0 if c == "SOL" else 5.0 for c in liq.coin])
    margin = liq.notional / lev * np.where(liq.partial_taken, 1 - V4.partial_frac, 1.0)
    np.testing.assert_allclose(liq.pnl, -margin - liq.fees - liq.funding, rtol=1e-9)
