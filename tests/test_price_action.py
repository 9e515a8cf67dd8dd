"""The price-action family on hand-made candles: swing structure and the HTF bias, the Monday
range, order blocks, breakers and swing failures. Every expected bar, side, stop, target and
score is worked out by hand from the rules (comments show the arithmetic); asserting the whole
list of signals also asserts that nothing fires on the bar before a trigger completes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from _candles import active, candle_market

from strategies import monday_range as mr
from strategies import order_block as ob
from strategies import price_action as pa
from strategies import sfp
from strategies.base import get_strategy

# ---------------------------------------------------------------- swing structure


def structure(k: int, highs=(12.0, 14.0), lows=(4.0, 5.0)) -> tuple[np.ndarray, np.ndarray]:
    """5k + 2 bars: swing highs at k and 3k, swing lows at 2k and 4k, every other bar at high 9 /
    low 7 (ties are never pivots). The pivots are confirmed k bars later: 2k, 4k (highs) and
    3k, 5k (lows), so the structure is known from bar 5k on."""
    h, lo = np.full(5 * k + 2, 9.0), np.full(5 * k + 2, 7.0)
    h[k], h[3 * k] = highs
    lo[2 * k], lo[4 * k] = lows
    return h, lo


@pytest.mark.parametrize("k", [2, 5])
@pytest.mark.parametrize("highs,lows,want", [
    ((12.0, 14.0), (4.0, 5.0), 1),  # higher high, higher low: bullish
    ((14.0, 12.0), (5.0, 4.0), -1),  # lower high, lower low: bearish
    ((12.0, 14.0), (5.0, 4.0), 0),  # higher high, lower low: neutral
])
def test_swing_bias_from_the_last_two_confirmed_swings(k, highs, lows, want):
    h, lo = structure(k, highs, lows)
    got = pa.swing_bias(h[:, None], lo[:, None], k)[:, 0]
    expect = np.where(np.arange(h.size) >= 5 * k, want, 0)
    np.testing.assert_array_equal(got, expect)


@pytest.mark.parametrize("view,days,k,start", [
    (0, 7, 3, "2024-01-01"),  # weekly: 2024-01-01 is a Monday
    (1, 3, 3, "2024-01-03"),  # 3-day groups start on epoch days divisible by 3
    (2, 1, 5, "2024-01-01"),  # daily
])
def test_htf_view_turns_on_the_hourly_bar_that_closes_the_confirming_bar(view, days, k, start):
    assert (pd.Timestamp(start).value // pa.nb.DAY_NS + (pa.WEEK_ANCHOR if days == 7 else 0)) % days == 0
    h, lo = structure(k)  # one value per higher bar, repeated on all its hourly bars
    per_block = days * 24
    block = np.arange(h.size * per_block) // per_block
    mid = np.full(block.size, 8.0)
    m = candle_market(np.column_stack([mid, h[block], lo[block], mid]), start=start)
    got = pa.htf_views(m)[view][:, 0]
    # the structure is known at higher bar 5k, which closes with hourly bar (5k + 1) * per_block - 1
    flip = (5 * k + 1) * per_block - 1
    assert got[flip - 1] == 0 and got[flip] == 1
    np.testing.assert_array_equal(got, np.where(np.arange(block.size) >= flip, 1, 0))


def test_htf_bias_votes(monkeypatch):
    # six coins on one bar; columns: (W, 3D, D) views
    w, d3, d = np.array([[1, 1, 1, 1, -1, 0]]), np.array([[0, -1, 1, 0, -1, 0]]), np.array([[1, 1, 0, 0, 0, 0]])
    monkeypatch.setattr(pa, "htf_views", lambda market: (w, d3, d))
    np.testing.assert_array_equal(pa.htf_bias(None, votes=2), [[1, 0, 1, 0, -1, 0]])
    np.testing.assert_array_equal(pa.htf_bias(None, votes=1), [[1, 0, 1, 1, -1, 0]])


# ---------------------------------------------------------------- Monday range


def monday_week(trigger: tuple[float, float, float, float], at: int = 34) -> np.ndarray:
    """Monday 2024-01-01 (bars 0-23) spans 90..110 (high at bar 5, low at bar 15), mid 100;
    flat candles around 100 after it, and `trigger` (o, h, l, c) at bar `at` (Tuesday 10:00)."""
    rows = np.tile([100.0, 101.0, 99.0, 100.0], (48, 1))
    rows[5, 1], rows[15, 2] = 110.0, 90.0
    rows[at] = trigger
    return rows


def bias_is(monkeypatch, value: int) -> None:
    monkeypatch.setattr(mr, "htf_bias", lambda market, votes: np.full(market.close.shape, value, dtype=np.int8))


@pytest.mark.parametrize("bias", [1, 0, -1])
def test_monday_low_sweep_and_reclaim_goes_long_only_with_bullish_bias(monkeypatch, bias):
    bias_is(monkeypatch, bias)
    m = candle_market(monday_week((92.0, 92.5, 88.0, 91.0)))  # wick to 88 < 90, close 91 back inside
    sig = get_strategy("monday_range").generate(m, mr.Params(), "live")
    if bias != 1:
        assert active(sig) == []
        return
    assert active(sig) == [(34, 0, 1)]
    assert sig.stop[34, 0] == pytest.approx(91.0 - 88.0)  # stop at the wick's extreme
    assert sig.target[34, 0] == pytest.approx((100.0 - 91.0) / 3.0)  # the midpoint: 3R
    assert sig.score[34, 0] == pytest.approx(3.0 / 2.0)  # target R / min_rr
    assert sig.hold[34, 0] == mr.Params().max_hold


def test_monday_high_sweep_goes_short_with_bearish_bias(monkeypatch):
    bias_is(monkeypatch, -1)
    m = candle_market(monday_week((108.0, 112.0, 107.5, 108.5)))
    sig = get_strategy("monday_range").generate(m, mr.Params(), "live")
    assert active(sig) == [(34, 0, -1)]
    assert sig.stop[34, 0] == pytest.approx(112.0 - 108.5)
    assert sig.target[34, 0] == pytest.approx(8.5 / 3.5)  # (108.5 - 100) / 3.5 = 2.43R


def test_monday_range_refuses_less_than_two_to_one(monkeypatch):
    bias_is(monkeypatch, 1)
    m = candle_market(monday_week((93.5, 94.0, 89.9, 93.5)))  # stop 3.6, reward 6.5: 1.81R
    s = get_strategy("monday_range")
    assert active(s.generate(m, mr.Params(), "live")) == []
    sig = s.generate(m, mr.Params(min_rr=1.5), "live")  # the range's floor is 2; the rule is an option
    assert active(sig) == [(34, 0, 1)] and sig.target[34, 0] == pytest.approx(6.5 / 3.6)


def test_monday_range_needs_a_complete_monday(monkeypatch):
    bias_is(monkeypatch, 1)
    m = candle_market(monday_week((92.0, 92.5, 88.0, 91.0)))
    prices = {f: getattr(m, f).copy() for f in ("open", "high", "low", "close")}
    for a in prices.values():
        a[3] = np.nan
    listed = m.listed.copy()
    listed[3] = False
    gappy = dataclasses.replace(m, listed=listed, _fingerprint=[], **prices)
    assert active(get_strategy("monday_range").generate(gappy, mr.Params(), "live")) == []


# ---------------------------------------------------------------- order blocks and breakers


def ob_base(displacement_close: float = 103.0) -> list[list[float]]:
    """Bars 0-9 alternate bullish (100 -> 101) and bearish (101 -> 100), bodies 1; bar 10 is a
    bullish displacement from 100 (body 3 >= 2 x the mean body 1). Its order block is the last
    bearish candle, bar 9: the demand zone 100..101."""
    rows = [[100.0, 101.2, 99.8, 101.0] if i % 2 == 0 else [101.0, 101.2, 99.8, 100.0] for i in range(10)]
    rows.append([100.0, displacement_close + 0.2, 99.8, displacement_close])
    return rows


OB_RETEST = [[103.0, 103.7, 102.9, 103.5], [103.5, 103.6, 101.8, 102.0],  # 11, 12: above the zone
             [102.0, 102.1, 100.6, 101.5]]  # 13: low 100.6 into the zone, close 101.5 back above
BREAK_AND_RETEST = [[103.0, 103.1, 101.2, 101.5],  # 11: stays above the zone
                    [101.5, 101.6, 99.6, 99.8],  # 12: closes below 100: a supply breaker 100..101
                    [99.8, 99.9, 98.8, 99.0],  # 13: below, not touching
                    [99.0, 100.4, 98.9, 99.6]]  # 14: high 100.4 into it, close 99.6 back below


def test_order_block_retest_goes_long():
    m = candle_market(ob_base() + OB_RETEST)
    for mode in ("live", "shadow"):
        sig = get_strategy("order_block").generate(m, ob.Params(), mode)
        assert active(sig) == [(13, 0, 1)]
        assert sig.stop[13, 0] == pytest.approx(101.5 - 100.0)  # below the zone's low edge
        assert sig.target[13, 0] == ob.Params().target_r
        th = ob.LIVE if mode == "live" else ob.SHADOW
        assert sig.score[13, 0] == pytest.approx(3.0 / th.disp_mult)  # displacement body 3 / mean 1
    assert active(get_strategy("breaker").generate(m, ob.Params(), "live")) == []


def test_a_touch_closing_inside_the_zone_is_not_a_retest():
    inside = [[102.0, 102.1, 100.6, 100.8]]  # 13: into the zone, close 100.8 still inside 100..101
    m = candle_market(ob_base() + OB_RETEST[:2] + inside + [[100.8, 101.5, 100.7, 101.4]])  # 14: back above
    sig = get_strategy("order_block").generate(m, ob.Params(), "live")
    assert active(sig) == [(14, 0, 1)]
    assert sig.stop[14, 0] == pytest.approx(101.4 - 100.0)


def test_a_weak_displacement_makes_an_order_block_only_in_shadow():
    m = candle_market(ob_base(displacement_close=101.9) + OB_RETEST)  # body 1.9: < 2, >= 1.5
    s = get_strategy("order_block")
    assert active(s.generate(m, ob.Params(), "live")) == []
    sig = s.generate(m, ob.Params(), "shadow")
    assert active(sig) == [(13, 0, 1)] and sig.score[13, 0] == pytest.approx(1.9 / 1.5)


def test_close_through_the_zone_makes_a_breaker_retested_short():
    m = candle_market(ob_base() + BREAK_AND_RETEST)
    sig = get_strategy("breaker").generate(m, ob.Params(), "live")
    assert active(sig) == [(14, 0, -1)]
    assert sig.stop[14, 0] == pytest.approx(101.0 - 99.6)  # above the zone's high edge
    assert sig.target[14, 0] == ob.Params().target_r
    assert active(get_strategy("order_block").generate(m, ob.Params(), "live")) == []


# ---------------------------------------------------------------- swing failures


SFP_BARS = [[100.0, 100.0, 99.0, 100.0], [100.0, 101.0, 99.0, 100.5],
            [100.5, 103.0, 99.0, 101.0],  # 2: swing high 103 (k = 2), confirmed at bar 4
            [101.0, 101.0, 99.0, 100.5], [100.5, 100.5, 99.0, 100.2], [100.2, 101.5, 99.0, 101.5],
            [101.5, 104.0, 101.3, 102.0]]  # 6: wick to 104 > 103, close 102 back below: bearish SFP


@pytest.mark.parametrize("confirm,want", [
    ([102.0, 102.2, 100.8, 101.0], [(7, 0, -1)]),  # closes below the SFP candle's 102: confirmed
    ([102.0, 102.8, 101.9, 102.5], []),  # closes above it: no signal, in either mode
])
def test_sfp_needs_the_next_candle_to_confirm(confirm, want):
    m = candle_market(SFP_BARS + [confirm])
    for mode in ("live", "shadow"):
        sig = get_strategy("sfp").generate(m, sfp.Params(swing_n=2), mode)
        assert active(sig) == want
    if want:
        assert sig.stop[7, 0] == pytest.approx(104.0 - 101.0)  # at the SFP wick's extreme
        assert sig.target[7, 0] == sfp.Params().target_r
        assert sig.score[7, 0] == pytest.approx((104.0 - 102.0) / (104.0 - 101.3))  # rejection


def confluence_bars(bar9_bullish: bool, c16: float) -> list[list[float]]:
    """Bars 0-8 small alternating candles (bodies 0.2); bar 9 bullish 100.2 -> 100.4 (or bearish
    100.4 -> 100.2); bar 10 a bearish displacement (body 1.0 >= 2 x 0.2) whose order block is the
    last bullish candle: bar 9, supply 100.2..100.4 (or bar 8, 100.0..100.2). Bars 11-15 rally to
    a swing high of 100.3 at bar 13 (k = 2, confirmed at bar 15) without closing above the zone;
    bar 16 wicks to 100.5 and closes at c16 below 100.3 (bearish SFP, range 99.7..100.5); bar 17
    confirms 0.2 lower."""
    rows = [[100.0, 100.3, 99.9, 100.2] if i % 2 == 0 else [100.2, 100.3, 99.9, 100.0] for i in range(9)]
    rows.append([100.2, 100.5, 100.1, 100.4] if bar9_bullish else [100.4, 100.5, 100.1, 100.2])
    rows += [[100.4, 100.5, 99.3, 99.4], [99.4, 99.7, 99.3, 99.6], [99.6, 100.0, 99.5, 99.9],
             [99.9, 100.3, 99.8, 100.0], [100.0, 100.1, 99.7, 99.8], [99.8, 99.9, 99.6, 99.7],
             [99.7, 100.5, 99.7, c16], [c16, c16 + 0.05, c16 - 0.25, c16 - 0.2]]
    return rows


@pytest.mark.parametrize("bar9_bullish,c16,mode,score", [
    (True, 100.1, "live", 0.5 * 1.5),  # rejection (100.5 - 100.1) / 0.8 = 0.5, at the zone: x1.5
    (False, 100.1, "live", None),  # the zone 100.0..100.2 lies below the swept 100.3: 0.5 < 0.6
    (False, 100.1, "shadow", 0.5),  # shadow takes 0.5 >= 0.4
    (True, 99.86, "live", 1.0),  # rejection 0.64 / 0.8 = 0.8, x1.5 = 1.2, capped at 1.0
])
def test_sfp_confluence_with_an_order_block(bar9_bullish, c16, mode, score):
    m = candle_market(confluence_bars(bar9_bullish, c16))
    sig = get_strategy("sfp").generate(m, sfp.Params(swing_n=2), mode)
    if score is None:
        assert active(sig) == []
        return
    assert active(sig) == [(17, 0, -1)]
    assert sig.score[17, 0] == pytest.approx(score)
    assert sig.stop[17, 0] == pytest.approx(100.5 - (c16 - 0.2))
