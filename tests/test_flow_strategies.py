"""WickFlow, PairFlow, SkewFlow and QuantFlow on hand-made candles. Expected bars, sides, stops
and targets come from the rules worked by hand (comments); z-scores and realized volatilities
are recomputed here from their textbook definitions (numpy mean / population std of the window),
never read back from the strategy's own indicator code."""

from __future__ import annotations

import numpy as np
import pytest
from _candles import active, candle_market

from harness.signals import setup_key
from harness.simulate import simulate
from strategies import pairflow, quantflow, skewflow, wickflow
from strategies.base import get_strategy
from strategies.common import FAMILY_PAIR
from strategies.pair_nb import pair_book


def window_z(x: np.ndarray, t: int, n: int) -> float:
    w = x[t - n + 1: t + 1]
    return float((w[-1] - w.mean()) / w.std())


# ---------------------------------------------------------------- WickFlow


def wick_bars(volume_at_flush: float) -> tuple[np.ndarray, np.ndarray]:
    """25 quiet candles (100 <-> 100.2, lows 99.9, volume 1000), then bar 25: open 100.1, close
    100.2 (body 0.1), low 99.5 (lower wick 0.6 = 6x the body, a new 20-bar low), high 100.25."""
    rows = [[100.0, 100.3, 99.9, 100.2] if i % 2 == 0 else [100.2, 100.3, 99.9, 100.0] for i in range(25)]
    rows.append([100.1, 100.25, 99.5, 100.2])
    volume = np.full(26, 1000.0)
    volume[25] = volume_at_flush
    return np.array(rows), volume


@pytest.mark.parametrize("flush_volume,mode,score", [
    (2500.0, "live", 2.5 / 2.0),  # 2.5x the mean volume >= 2: long
    (1500.0, "live", None),  # the same wick on 1.5x volume: not elevated enough
    (1500.0, "shadow", 1.5 / 1.5),  # ... but enough for the shadow net
    (1000.0, "shadow", None),  # no volume at all: nothing
])
def test_wickflow_wick_needs_volume(flush_volume, mode, score):
    rows, volume = wick_bars(flush_volume)
    sig = get_strategy("wickflow").generate(candle_market(rows, volume=volume), wickflow.Params(), mode)
    if score is None:
        assert active(sig) == []
        return
    assert active(sig) == [(25, 0, 1)]
    assert sig.stop[25, 0] == pytest.approx(100.2 - 99.5)  # at the wick's extreme
    assert sig.target[25, 0] == wickflow.Params().target_r
    assert sig.score[25, 0] == pytest.approx(score)


def test_wickflow_wick_must_make_a_new_extreme():
    rows, volume = wick_bars(2500.0)
    s = get_strategy("wickflow")
    rows[10, 2] = 99.4  # an earlier low below the flush's 99.5, inside the 20-bar window
    assert active(s.generate(candle_market(rows, volume=volume), wickflow.Params(), "live")) == []
    rows[3, 2] = 99.4  # ... outside it (bars 5-24): the flush is a new 20-bar low again
    rows[10, 2] = 99.9
    sig = s.generate(candle_market(rows, volume=volume), wickflow.Params(), "live")
    assert active(sig) == [(25, 0, 1)]


def test_wickflow_short_on_an_upper_wick_and_not_below_twice_the_body():
    rows, volume = wick_bars(2500.0)
    rows[25] = [100.2, 100.7, 100.05, 100.1]  # upper wick 0.5 = 5x the body 0.1, new 20-bar high
    sig = get_strategy("wickflow").generate(candle_market(rows, volume=volume), wickflow.Params(), "live")
    assert active(sig) == [(25, 0, -1)] and sig.stop[25, 0] == pytest.approx(100.7 - 100.1)
    rows[25] = [100.2, 100.39, 99.95, 100.0]  # upper wick 0.19 < 2 x the body 0.2
    sig = get_strategy("wickflow").generate(candle_market(rows, volume=volume), wickflow.Params(), "live")
    assert active(sig) == []


# ---------------------------------------------------------------- PairFlow


def pair_market(jump: float, after: float = 0.01) -> tuple:
    """BTC and ETH. ETH flat at 100; BTC = 100 x exp(+-0.01) alternating, so the log spread
    alternates +-0.01, except at bar 30 (`jump`) and bar 31 (`after`)."""
    n = 34
    spread = np.where(np.arange(n) % 2 == 0, 0.01, -0.01)
    spread[30], spread[31] = jump, after
    btc, eth = 100.0 * np.exp(spread), np.full(n, 100.0)
    close = np.column_stack([btc, eth])
    ohlc = np.stack([close, close, close, close])
    return candle_market(ohlc, coins=("BTC", "ETH")), spread


def test_pairflow_opens_both_legs_beyond_two_sigma_and_exits_them_together():
    p = pairflow.Params(window=20)
    m, spread = pair_market(jump=0.05)
    assert window_z(spread, 29, 20) < 2.0 < window_z(spread, 30, 20)  # the cross is at bar 30
    assert window_z(spread, 31, 20) < p.z_exit  # and back inside the band at bar 31
    sig = get_strategy("pairflow").generate(m, p, "live")
    assert active(sig) == [(30, 0, -1), (30, 1, 1)]  # BTC rich: short BTC, long ETH
    assert sig.setup[30, 0] == sig.setup[30, 1] == setup_key(30, 0, -1, FAMILY_PAIR)  # one key
    np.testing.assert_allclose(sig.stop[30], p.stop_pct * m.close[30])  # each leg's own price
    assert np.isnan(sig.target[30]).all() and (sig.hold[30] == p.max_hold).all()
    assert sig.score[30, 0] == sig.score[30, 1] > 0
    assert np.flatnonzero(sig.exit.any(axis=1)).tolist() == [31] and sig.exit[31].all()


def test_pairflow_legs_trade_together_in_the_harness():
    """v3+ de-duplication is per coin, so two positions with one setup key on two coins both
    open; the shared exit closes both at the same open."""
    m, _ = pair_market(jump=0.05)
    sig = get_strategy("pairflow").generate(m, pairflow.Params(window=20), "live")
    trades = simulate(m, sig, friction="v4").trades(0)
    got = trades[["coin", "side", "signal_bar", "entry_bar", "exit_bar", "exit_reason"]]
    assert got.values.tolist() == [["BTC", -1, 30, 31, 32, "signal"], ["ETH", 1, 30, 31, 32, "signal"]]
    assert trades.setup.nunique() == 1


def test_pairflow_mirror_and_no_cross():
    m, spread = pair_market(jump=-0.05)  # BTC cheap: long BTC, short ETH
    assert window_z(spread, 30, 20) < -2.0
    assert active(get_strategy("pairflow").generate(m, pairflow.Params(window=20), "live")) == [(30, 0, 1), (30, 1, -1)]
    # a smaller move: mean (0.02 - 0.01) / 20, std sqrt((19e-4 + 4e-4) / 20 - 0.0005^2) = 0.0107,
    # z = 0.0195 / 0.0107 = 1.82: inside 2 sigma, beyond the shadow net's 1.5
    m, spread = pair_market(jump=0.02)
    assert 1.5 < window_z(spread, 30, 20) < 2.0
    p = pairflow.Params(window=20)
    assert active(get_strategy("pairflow").generate(m, p, "live")) == []
    sig = get_strategy("pairflow").generate(m, p, "shadow")
    out = next(t for t in range(31, m.n_bars) if window_z(spread, t, 20) < p.z_exit)  # 0.80, 0.80, then bar 33
    held = [(t, k, side) for t in range(30, out) for k, side in ((0, -1), (1, 1))]
    assert active(sig) == held  # the direction is held on both legs while the pair is open
    assert (sig.setup[30:out] == setup_key(30, 0, -1, FAMILY_PAIR)).all()  # one setup throughout
    assert np.flatnonzero(sig.exit.any(axis=1)).tolist() == [out] and sig.exit[out].all()


def test_pair_book_one_pair_per_coin_largest_z_first_time_stop():
    legs = np.array([[0, 1], [0, 2], [1, 2]])  # BTC/ETH, BTC/SOL, ETH/SOL
    z = np.array([[0.0, 0.0, 0.0], [2.5, 3.0, 0.0], [2.5, 3.0, 2.2], [0.3, 0.4, 0.1], [0.0, 0.0, -2.4]])
    d, ex, origin, pair = pair_book(z, legs, 3, 2.0, 0.5, 100)
    # bar 1: BTC/SOL has the larger |z| and opens (BTC short, SOL long); BTC/ETH waits on BTC;
    # bar 2: ETH/SOL beyond 2 sigma but SOL is held; bar 3: BTC/SOL z 0.4 < 0.5 closes;
    # bar 4: ETH/SOL at -2.4: ETH cheap, long ETH, short SOL
    np.testing.assert_array_equal(d, [[0, 0, 0], [-1, 0, 1], [-1, 0, 1], [0, 0, 0], [0, 1, -1]])
    np.testing.assert_array_equal(ex, [[0, 0, 0], [0, 0, 0], [0, 0, 0], [1, 0, 1], [0, 0, 0]])
    assert origin[2].tolist() == [1, -1, 1] and pair[4].tolist() == [-1, 2, 2]
    # a 2-bar time stop frees BTC/SOL (opened at bar 1) at bar 3 with no exit flag: the harness's
    # time stop closes the legs; the exit band is never reached (z stays at 3.0)
    z_on = np.array([[0.0, 0.0, 0.0], [2.5, 3.0, 0.0], [2.5, 3.0, 0.0], [0.0, 3.0, 0.0]])
    d, ex, origin, _ = pair_book(z_on, legs, 3, 2.0, 0.5, 2)
    assert d[:, 0].tolist() == [0, -1, -1, -1] and not ex.any()
    assert origin[:, 0].tolist() == [-1, 1, 1, 3]  # reopened at bar 3 as a new setup


# ---------------------------------------------------------------- SkewFlow


@pytest.mark.parametrize("spike,want", [(1.0e-3, -1), (-8.0e-4, 1)])
def test_skewflow_fades_a_premium_extreme(spike, want):
    """Flat candles 99.5..100.5 (true range 1, so ATR(14) = 1); the premium alternates 1e-4 +- 5e-5
    and spikes at bar 40."""
    n = 45
    premium = np.where(np.arange(n) % 2 == 0, 1.5e-4, 0.5e-4)
    premium[40] = spike
    m = candle_market(np.tile([100.0, 100.5, 99.5, 100.0], (n, 1)), premium=premium)
    p = skewflow.Params(window=20)
    assert abs(window_z(premium, 39, 20)) < skewflow.LIVE.z_entry < abs(window_z(premium, 40, 20))
    sig = get_strategy("skewflow").generate(m, p, "live")
    assert active(sig) == [(40, 0, want)]  # a rich premium is shorted, a cheap one bought
    assert sig.stop[40, 0] == pytest.approx(p.stop_atr * 1.0)
    assert np.isnan(sig.target[40, 0]) and sig.hold[40, 0] == p.max_hold
    z41 = window_z(premium, 41, 20)
    assert sig.exit[41, 0] == (abs(z41) < p.z_exit)


# ---------------------------------------------------------------- QuantFlow


def rv_closes(jump: float, calm: bool = True) -> np.ndarray:
    """Log returns +-0.01 alternating for bars 1-24, +-0.001 for bars 25-28 (calm), then `jump`
    at bar 29, then +-0.001."""
    r = np.where(np.arange(33) % 2 == 1, 0.01, -0.01)
    r[0] = 0.0
    if calm:
        r[25:29] = np.where(np.arange(25, 29) % 2 == 1, 0.001, -0.001)
    r[29] = jump
    r[30:] = np.where(np.arange(30, 33) % 2 == 1, 0.001, -0.001)
    return r


def wilder_atr(h, lo, c, n=14) -> np.ndarray:
    tr = [h[0] - lo[0]] + [max(h[i] - lo[i], abs(h[i] - c[i - 1]), abs(lo[i] - c[i - 1])) for i in range(1, len(c))]
    out = np.full(len(c), np.nan)
    out[n - 1] = np.mean(tr[:n])
    for i in range(n, len(c)):
        out[i] = out[i - 1] + (tr[i] - out[i - 1]) / n
    return out


@pytest.mark.parametrize("jump,calm,want", [(0.08, True, 1), (-0.08, True, -1), (0.08, False, 0)])
def test_quantflow_trades_the_switch_from_compressed_to_expanding(jump, calm, want):
    p = quantflow.Params(rv_fast=4, rv_slow=16, memory=4)
    r = rv_closes(jump, calm)
    c = 100.0 * np.exp(np.cumsum(r))
    o = np.r_[c[0], c[:-1]]
    h, lo = np.maximum(o, c) + 0.05, np.minimum(o, c) - 0.05
    m = candle_market(np.column_stack([o, h, lo, c]))

    def ratio(t):
        return r[t - 3: t + 1].std() / r[t - 15: t + 1].std()

    if calm:  # bar 28: fast std 0.001, slow std sqrt((12e-4 + 4e-6) / 16) = 0.0087: ratio 0.115
        assert ratio(28) < quantflow.LIVE.compress
    assert ratio(28) < quantflow.LIVE.expand <= ratio(29)  # bar 29: 0.0348 / 0.0212 = 1.64
    sig = get_strategy("quantflow").generate(m, p, "live")
    if not want:  # no compression before it: the same jump is no regime switch
        assert active(sig) == []
        return
    assert active(sig) == [(29, 0, want)]  # the side of the move over the last 4 bars
    assert sig.stop[29, 0] == pytest.approx(p.stop_atr * wilder_atr(h, lo, c)[29])
    assert sig.target[29, 0] == p.target_r
