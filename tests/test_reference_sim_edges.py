"""Tiny hand-made markets where the kernel and tests/reference_sim.py must agree, on the edge
cases of the kernel's docstring. Each case also pins the reference's numbers to values worked
out here by hand from the bar prices, the friction constants and the sizing rule.

Two cases pin what a first version of the kernel got wrong against its docstring (found by this
comparison): the walk rule past the target, and fraction sizing's v5 slippage.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from _kernel_helpers import FEE, SLIP, flat, make_market, signal
from _refsim_compare import compare
from reference_sim import reference_simulate

from harness import kernel_layout as L
from harness.costs import CoinCosts
from harness.friction import V2, V3, V4, V5
from harness.margin import backstop_price, liquidation_price
from harness.market import Market
from harness.signals import Signals
from harness.simulate import SimConfig, simulate

NO_RISK = SimConfig(daily_loss_halt=50.0, kill_drawdown=50.0)
FREE2 = replace(V2, fee_bps=0.0, slippage_bps=0.0, funding=False, version="test_free_v2")
FREE3 = replace(V3, fee_bps=0.0, slippage_bps=0.0, funding=False, version="test_free_v3")
FREE4 = replace(V4, fee_bps=0.0, slippage_bps=0.0, funding=False, version="test_free_v4")


def market(bars: dict[str, list[tuple[float, float, float, float]]]) -> Market:
    """Hourly bars from 2024-01-01 with a nanosecond index (as the data layer builds it)."""
    m = make_market(bars)
    return replace(m, index=m.index.as_unit("ns"))


def detail(m: Market, rows: dict[int, list[tuple[float, float, float, float]]],
           holes: tuple[tuple[int, int], ...] = ()) -> Market:
    """15m bars of a one-coin market: `rows[t]` for bar t, else (o, h, l, c) then the close three
    times; `holes` (bar, quarter) are missing."""
    out = []
    for t in range(m.n_bars):
        o, h, lo, c = (float(m.open[t, 0]), float(m.high[t, 0]), float(m.low[t, 0]),
                       float(m.close[t, 0]))
        out += rows.get(t, [(o, h, lo, c)] + [(c, c, c, c)] * 3)
    arr = np.array(out, dtype=np.float64)
    listed = np.ones(len(arr), dtype=bool)
    for t, j in holes:
        arr[4 * t + j] = np.nan
        listed[4 * t + j] = False
    n = len(arr)
    nan = np.full((n, 1), np.nan)
    return Market(
        index=pd.date_range(m.index[0], periods=n, freq="15min", tz="UTC", unit="ns"),
        coins=m.coins[:1], interval="15m", open=arr[:, [0]], high=arr[:, [1]], low=arr[:, [2]],
        close=arr[:, [3]], volume=np.ones((n, 1)), funding=np.zeros((n, 1)), premium=nan,
        open_interest=nan.copy(), listed=listed[:, None], source="test detail",
    )


def agree(m: Market, sig: Signals, fr, cfg: SimConfig = NO_RISK, segments=None, det=None,
          costs: CoinCosts | None = None):
    """Kernel and reference on the same case: no mismatch, then the reference's result."""
    res = simulate(m, sig, fr, cfg, segments, detail=det, costs=costs)
    cost_kw = {} if costs is None else {"half_spread": costs.half_spread,
                                        "impact_coef": costs.impact_coef}
    ref = reference_simulate(m, sig, fr, cfg, segments, detail=det, **cost_kw)
    assert compare(res, ref) == []
    return res, ref


def trade(ref, coin: int):
    (tr,) = [t for t in ref.trades if t.coin == coin]
    return tr


def test_stop_inside_the_fill_bar_and_hold_one():
    # both enter at the open of bar 1; BTC's fill bar dips below its stop, ETH's does not
    m = market({"BTC": [(100,) * 4, (100, 101, 94, 96), (96,) * 4, (96,) * 4],
                "ETH": [(100,) * 4, (100, 101, 99, 100.5), (100.5,) * 4, (100.5,) * 4]})
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=5.0, coin=0, hold=1)
    signal(sig, 0, +1, stop=5.0, coin=1, hold=1)
    _, ref = agree(m, sig, V2)
    size = 10_000 * 0.01 / 5.0
    entry = 100 * (1 + SLIP)
    btc, eth = trade(ref, 0), trade(ref, 1)
    stop_fill = (entry - 5.0) * (1 - SLIP)
    assert (btc.entry_bar, btc.exit_bar, btc.exit_reason, btc.exit.at_open) == (1, 1, "stop", False)
    assert btc.exit.price == pytest.approx(stop_fill, rel=1e-12)
    assert btc.pnl == pytest.approx(size * (stop_fill - entry) - FEE * size * (entry + stop_fill), rel=1e-12)
    assert (eth.exit_bar, eth.exit_reason, eth.exit.at_open) == (2, "time", True)  # hold = 1
    assert eth.exit.price == pytest.approx(100.5 * (1 - SLIP), rel=1e-12)


def test_an_open_beyond_the_target_or_the_partial_fills_at_the_open():
    # BTC opens beyond its target (110) on a bar whose range also reaches the stop (95);
    # ETH opens beyond its partial level (107.5) only, then falls through breakeven
    m = market({"BTC": [(100,) * 4, (100,) * 4, (112, 113, 90, 95), (95,) * 4],
                "ETH": [(100,) * 4, (100,) * 4, (108, 109, 99, 101), (101,) * 4]})
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=5.0, coin=0, target=2.0)
    signal(sig, 0, +1, stop=5.0, coin=1, target=4.0)
    _, ref = agree(m, sig, FREE4)
    btc, eth = trade(ref, 0), trade(ref, 1)
    assert (btc.exit_bar, btc.exit_reason, btc.exit.price, btc.exit.at_open) == (2, "target", 112.0, True)
    assert btc.pnl == pytest.approx(20 * 12.0, rel=1e-12)
    assert (eth.partial.bar, eth.partial.price, eth.partial.qty) == (2, 108.0, 10.0)
    assert (eth.exit_bar, eth.exit_reason, eth.exit.price) == (2, "partial", 100.0)  # breakeven
    assert eth.pnl == pytest.approx(10 * 8.0, rel=1e-12)


def test_market_liquidation_keeps_the_leftover_and_a_backstop_gap_takes_the_margin():
    # wide stops (15) at 10x isolated: BTC's range reaches its liquidation price, ETH opens
    # below its backstop price
    m = market({"BTC": [(100,) * 4, (100,) * 4, (100, 100, 90, 95), (95,) * 4],
                "ETH": [(100,) * 4, (100,) * 4, (88, 89, 87, 88), (88,) * 4]})
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=15.0, coin=0)
    signal(sig, 0, +1, stop=15.0, coin=1)
    cfg = replace(NO_RISK, risk_fraction=0.05)
    res, ref = agree(m, sig, V4, cfg)
    size = 10_000 * 0.05 / 15.0
    entry = 100 * (1 + SLIP)
    margin = size * entry / 10.0
    liq = (entry - entry / 10.0) / (1 - 0.5 / 40.0)  # BTC: maintenance rate 0.5 / 40x
    assert liq == pytest.approx(liquidation_price(entry, 1, size, 10.0, 40.0), rel=1e-12)
    btc, eth = trade(ref, 0), trade(ref, 1)
    liq_fill = liq * (1 - SLIP)
    assert (btc.exit_bar, btc.exit_reason) == (2, "liquidation")
    assert btc.exit.price == pytest.approx(liq_fill, rel=1e-12)
    assert btc.pnl == pytest.approx(size * (liq_fill - entry) - FEE * size * (entry + liq_fill), rel=1e-12)
    assert -btc.pnl < margin  # the leftover collateral stays with the trader
    assert 88.0 < backstop_price(entry, 1, size, 10.0, 25.0)  # ETH: 25x max, 10x isolated
    assert (eth.exit_bar, eth.exit_reason, eth.exit.fee, eth.exit.slippage) == (2, "backstop", 0.0, 0.0)
    assert eth.pnl == pytest.approx(-margin - FEE * size * entry, rel=1e-12)
    assert res.seg_stats[0, 0, L.S_NBACKSTOP] == 1


def test_funding_is_charged_on_the_bar_that_closes_at_the_record():
    m = market({"BTC": flat(6), "ETH": flat(6)})
    rates = {0: 0.01, 1: 0.001, 2: 0.002, 3: 0.004}  # bar 0: before the fill; bar 3: after the close
    for t, r in rates.items():
        m.funding[t, :] = r
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=5.0, coin=0)
    signal(sig, 0, -1, stop=5.0, coin=1)
    sig.exit[2, :] = True  # both close at the open of bar 3
    _, ref = agree(m, sig, V2)
    paid = 20 * 100.0 * (0.001 + 0.002)
    assert trade(ref, 0).funding == pytest.approx(paid, rel=1e-12)  # a long pays a positive rate
    assert trade(ref, 1).funding == pytest.approx(-paid, rel=1e-12)  # a short receives it


def test_the_daily_halt_is_soft():
    # BTC's stop costs 1% at bar 2 (halt: 0.5%); ETH keeps its target; entries resume next day
    btc = flat(30)
    btc[2] = (100, 100, 94, 95)
    btc[3:] = [(95,) * 4] * 27
    eth = flat(30)
    eth[5] = (100, 111, 100, 108)
    eth[6:] = [(108,) * 4] * 24
    m = market({"BTC": btc, "ETH": eth})
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=5.0, coin=0)
    signal(sig, 0, +1, stop=5.0, coin=1, target=2.0)
    for t in (3, 22, 23):
        signal(sig, t, +1, stop=5.0, coin=0)
    res, ref = agree(m, sig, FREE2, SimConfig(daily_loss_halt=0.005, kill_drawdown=0.9))
    assert [ref.status[(t, 0)] for t in (3, 22, 23)] == ["daily_halt", "daily_halt", "filled"]
    eth_trade = trade(ref, 1)
    assert (eth_trade.exit_bar, eth_trade.exit_reason, eth_trade.exit.price) == (5, "target", 110.0)
    assert res.seg_stats[0, 0, L.S_HALTS] == 1


def test_detail_bars_say_the_target_came_first_and_a_missing_one_falls_back():
    m = market({"BTC": [(100,) * 4, (100,) * 4, (100, 106, 94, 100), (100,) * 4]})
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=5.0, target=1.0)
    quarters = [(100, 106, 100, 105.5), (105.5, 105.5, 94, 96), (96, 100, 96, 100), (100,) * 4]
    cases = {"none": None, "detail": detail(m, {2: quarters}),
             "hole": detail(m, {2: quarters}, holes=((2, 2),))}
    got = {}
    for name, det in cases.items():
        res, ref = agree(m, sig, FREE2, det=det)
        tr = ref.trades[0]
        got[name] = (tr.exit_reason, tr.exit.price, int(res.seg_stats[0, 0, L.S_DETAIL]),
                     int(res.seg_stats[0, 0, L.S_DETAIL_MISSING]))
    assert got == {"none": ("stop", 95.0, 0, 0), "detail": ("target", 105.0, 1, 0),
                   "hole": ("stop", 95.0, 0, 1)}


def test_slots_scores_coin_order_the_gross_cap_reversal_exit_and_time():
    m = market({"A": flat(10), "B": flat(10), "C": flat(10)})
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=1.0, coin=0, score=1.0)
    signal(sig, 0, +1, stop=1.0, coin=1, score=2.0)
    signal(sig, 0, +1, stop=1.0, coin=2, score=2.0)
    sig.exit[2, 1] = True  # B closes at the open of 3
    signal(sig, 3, +1, stop=1.0, coin=0, hold=2)  # A: entry 4, time stop at the open of 6
    signal(sig, 5, -1, stop=1.0, coin=2)  # C reverses at the open of 6
    cfg = replace(NO_RISK, max_positions=2, max_leverage=1.5)
    _, ref = agree(m, sig, FREE2, cfg)
    # bar 0: B and C tie on score (coin order: B first), A has no slot; 1R = 100 -> 100 coins
    # each, but the gross cap (1.5 x 10,000) leaves C 5,000 of notional
    assert [ref.status[(0, c)] for c in range(3)] == ["no_slot", "filled", "filled"]
    got = sorted((t.coin, t.entry_bar, t.exit_bar, t.exit_reason, t.size) for t in ref.trades)
    assert got == [(0, 4, 6, "time", 100.0), (1, 1, 3, "signal", 100.0), (2, 1, 6, "signal", 50.0),
                   (2, 6, 9, "end_of_data", 100.0)]


def test_requested_closes_fill_before_the_entries_of_the_same_open():
    # exit + a new signal on one bar, a time stop meeting a same-side or an opposite signal
    m = market({"A": flat(8), "B": flat(8), "C": flat(8)})
    sig = Signals.empty(m, "t")
    for c in range(3):
        signal(sig, 0, +1, stop=5.0, coin=c, hold=0 if c == 0 else 4)
    signal(sig, 3, +1, stop=5.0, coin=0)
    sig.exit[3, 0] = True
    signal(sig, 4, +1, stop=5.0, coin=1)
    signal(sig, 4, -1, stop=5.0, coin=2)
    _, ref = agree(m, sig, FREE2)
    got = sorted((t.coin, t.side, t.entry_bar, t.exit_bar, t.exit_reason) for t in ref.trades)
    assert got == [(0, 1, 1, 4, "signal"), (0, 1, 4, 7, "end_of_data"), (1, 1, 1, 5, "time"),
                   (1, 1, 5, 7, "end_of_data"), (2, -1, 5, 7, "end_of_data"), (2, 1, 1, 5, "signal")]


def test_the_kill_switch_flattens_at_the_next_open_and_halts_entries():
    eth = flat(6)
    eth[3] = (101, 101, 101, 101)
    m = market({"BTC": [(100,) * 4, (100,) * 4, (100, 100, 94, 95)] + [(95,) * 4] * 3, "ETH": eth})
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=5.0, coin=0)
    signal(sig, 0, +1, stop=5.0, coin=1)
    signal(sig, 3, +1, stop=5.0, coin=0)
    res, ref = agree(m, sig, FREE2, SimConfig(daily_loss_halt=50.0, kill_drawdown=0.005))
    eth_trade = trade(ref, 1)
    assert (eth_trade.exit_bar, eth_trade.exit_reason, eth_trade.exit.price) == (3, "kill_switch", 101.0)
    assert ref.status[(3, 0)] == "kill_switch"
    assert res.seg_stats[0, 0, L.S_KILLED] == 1


def test_v3_dedup_trades_a_setup_key_once_per_coin():
    m = market({"BTC": [(100,) * 4, (100,) * 4, (100, 100, 94, 95)] + [(95,) * 4] * 5})
    for fr, want in ((FREE3, ["filled", "position_open", "dedup", "dedup", "filled"]),
                     (FREE2, ["filled", "position_open", "filled", "position_open", "position_open"])):
        sig = Signals.empty(m, "t")
        for t in range(4):
            signal(sig, t, +1, stop=5.0, setup=7)
        signal(sig, 4, +1, stop=5.0, setup=8)
        _, ref = agree(m, sig, fr)
        assert [ref.status[(t, 0)] for t in range(5)] == want


def test_segments_close_at_the_last_known_price_and_compound():
    btc = [(100,) * 4, (100,) * 4, (100,) * 4, (110,) * 4, (np.nan,) * 4] + [(110,) * 4] * 5
    m = market({"BTC": btc, "ETH": flat(10)})
    m.listed[4, 0] = False
    sig = Signals.empty(m, "t")
    signal(sig, 1, +1, stop=5.0, coin=0)
    signal(sig, 4, +1, stop=5.0, coin=1)  # the segment's last bar: nothing to fill at
    signal(sig, 5, +1, stop=5.0, coin=1)  # between the segments
    signal(sig, 6, +1, stop=5.0, coin=1)
    res, ref = agree(m, sig, FREE2, segments=[(0, 5), (6, 10)])
    btc_trade = trade(ref, 0)
    assert (btc_trade.exit_bar, btc_trade.exit_reason, btc_trade.exit.price) == (4, "end_of_data", 110.0)
    assert (ref.status[(4, 1)], ref.status[(5, 1)], ref.status[(6, 1)]) == (
        "end_of_segment", "outside", "filled")
    growth0 = (10_000 + 20 * 10.0) / 10_000
    assert ref.equity[-1] == pytest.approx(10_000 * growth0, rel=1e-12)  # ETH flat in segment 1
    assert res.metrics(0).final_equity == pytest.approx(10_000 * growth0, rel=1e-12)


def test_v5_slippage_per_coin_per_fill_from_the_bar_before():
    # A: half spread that changes every bar (the fill uses the bar before); B: below the floor;
    # C: above the cap; D: unknown (the flat rate, counted); fee stress multiplies after the clip
    m = market({"A": flat(6), "B": flat(6), "C": flat(6), "D": flat(6)})
    hs = np.zeros((6, 4))
    hs[:, 0] = [0.0010, 0.0020, 0.0030, 0.0040, 0.0050, 0.0060]
    hs[:, 2] = 0.05
    hs[:, 3] = np.nan
    k = np.zeros((6, 4))
    k[:, 0] = 1e-5
    sig = Signals.empty(m, "t")
    for c in range(4):
        signal(sig, 0, +1, stop=5.0, coin=c)
    sig.exit[2, :] = True  # fills at the open of 1 (estimates of bar 0), exits at 3 (of bar 2)
    for fr in (V5, V5.stressed()):
        res, ref = agree(m, sig, fr, costs=CoinCosts(hs, k, hs, hs))
        s = fr.stress
        a = trade(ref, 0)
        assert a.entry.slippage == pytest.approx(s * (0.0010 + 1e-5 * np.sqrt(20 * 100.0)), rel=1e-12)
        assert a.exit.slippage == pytest.approx(s * (0.0030 + 1e-5 * np.sqrt(20 * 100.0)), rel=1e-12)
        assert trade(ref, 1).entry.slippage == pytest.approx(s * 1e-4, rel=1e-12)
        assert trade(ref, 2).exit.slippage == pytest.approx(s * 0.02, rel=1e-12)
        assert trade(ref, 3).entry.slippage == pytest.approx(fr.slippage_bps * 1e-4, rel=1e-12)
        assert res.seg_stats[0, 0, L.S_SLIP_FALLBACK] == 2  # D's entry and exit


def test_partial_ts_on_a_microsecond_index():
    """pandas 3's date_range builds microsecond indexes; partial_ts once read them as ns."""
    m = make_market({"BTC": [(100,) * 4, (100,) * 4, (108, 109, 99, 101), (101,) * 4]})
    assert m.index.unit == "us"
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=5.0, target=4.0)
    tr = simulate(m, sig, FREE4, NO_RISK).trades(0).iloc[0]
    assert tr.partial_taken and tr.partial_ts == m.index[2]


# ---- where the kernel disagrees with its docstring ----------------------------------------------

def test_walk_only_where_the_order_inside_the_bar_matters():
    m = market({"BTC": [(100,) * 4, (100,) * 4, (100.5, 110, 100.5, 105), (105,) * 4]})
    det = detail(m, {2: [(100.5, 103.2, 100.5, 103.1), (104, 110, 104, 105), (105,) * 4, (105,) * 4]})
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=2.0, target=1.8)
    res = simulate(m, sig, FREE4, NO_RISK, detail=det)
    ref = reference_simulate(m, sig, FREE4, NO_RISK, detail=det)
    tr = ref.trades[0]
    # the range reaches partial (103) and target (103.6), no adverse level, and breakeven (100)
    # lies below the low: nothing raised on the way lies inside the bar, so no walk
    assert (tr.exit_reason, tr.exit.price, tr.detail) == ("target", 103.6, False)
    assert compare(res, ref) == []


def test_fraction_sizing_prices_slippage_on_the_intended_notional():
    m = market({"BTC": flat(4)})
    zero, k = np.zeros((4, 1)), np.full((4, 1), 1e-4)
    sig = Signals.empty(m, "t")
    signal(sig, 0, +1, stop=5.0)
    cfg = replace(NO_RISK, sizing="fraction", fraction=0.5)
    tr = simulate(m, sig, V5, cfg, costs=CoinCosts(zero, k, zero, zero)).trades(0).iloc[0]
    notional = 10_000 * 0.5 / (1 + FEE)
    assert tr.entry_slippage_bps == pytest.approx(1e4 * 1e-4 * np.sqrt(notional), rel=1e-9)
