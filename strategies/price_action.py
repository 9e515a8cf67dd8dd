"""Price-action patterns shared by the candle strategies (monday_range, order_block, breaker,
sfp): higher-timeframe swing bias, order-block and breaker zones, swing failures, the Monday
range. Market-facing wrappers over strategies/price_action_nb.py; every result is a
(n_bars, n_coins) array aligned with the market and causal (a value at bar t uses bars <= t).

HTF bias (the ten-strategy paper system's rule): swing structure on weekly, 3-day and daily
bars, swing lookback 3 (W, 3D) and 5 (D); higher highs and higher lows = bullish, lower highs
and lower lows = bearish, else neutral. Daily bars come from harness.resample (complete UTC days
only); 3-day bars group whole days counted from the epoch, weekly bars whole Monday-to-Sunday
UTC weeks, again complete only (a day missing for a coin drops the group for that coin). A base
bar sees a higher bar only once it has closed (harness.resample.align_to_base on the daily grid).
The three views vote: bullish when at least `votes` of them are bullish and none is bearish.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from harness.market import Market
from harness.resample import align_to_base, resample
from strategies import price_action_nb as nb

HTF_DAYS = (7, 3, 1)  # weekly, 3-day, daily
HTF_LOOKBACK = (3, 3, 5)
WEEK_ANCHOR = 3  # (days since 1970-01-01 + 3) % 7 == 0 on Mondays
DISPLACEMENT_MULT = 2.0  # the system's displacement: body >= 2x the mean of the previous bodies
BODY_WINDOW = 10  # ... of the previous 10 candles

_BIAS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _rows(a: np.ndarray) -> np.ndarray:
    """(n_coins, n_bars) C-contiguous view (no copy for a Fortran-ordered market array)."""
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64).T)


def _ohlc_rows(market: Market) -> tuple[np.ndarray, ...]:
    return tuple(_rows(getattr(market, f)) for f in ("open", "high", "low", "close"))


def swing_bias(high: np.ndarray, low: np.ndarray, k: int) -> np.ndarray:
    """(n_bars, n_coins) int8: the swing structure of each bar's own series (see
    price_action_nb.swing_bias_1d), pivots of lookback k."""
    return nb.swing_bias_rows(_rows(high), _rows(low), int(k)).T


def _group_days(daily: Market, days: int, anchor: int) -> tuple[np.ndarray, np.ndarray, int]:
    """High and low of complete groups of `days` daily bars, groups starting on days whose
    (epoch day + anchor) % days == 0; also the index of the first group's first day."""
    day_no = daily.ts_ns // nb.DAY_NS
    starts = np.flatnonzero((day_no + anchor) % days == 0)
    i0 = int(starts[0]) if starts.size else daily.n_bars
    m = max((daily.n_bars - i0) // days, 0)
    rows = slice(i0, i0 + m * days)

    def block(a):
        return a[rows].reshape(m, days, daily.n_coins)

    ok = block(daily.listed).all(axis=1)
    high = np.where(ok, block(daily.high).max(axis=1), np.nan)
    low = np.where(ok, block(daily.low).min(axis=1), np.nan)
    return high, low, i0


def htf_views(market: Market) -> tuple[np.ndarray, ...]:
    """The weekly, 3-day and daily swing bias on the market's bars, cached per Market."""
    hit = _BIAS.get(market)
    if hit is None:
        daily = resample(market, "1d")
        views = []
        for days, k in zip(HTF_DAYS, HTF_LOOKBACK, strict=True):
            if days == 1:
                on_daily = swing_bias(daily.high, daily.low, k)
            else:
                high, low, i0 = _group_days(daily, days, WEEK_ANCHOR if days == 7 else 0)
                bias = swing_bias(high, low, k)
                # daily bar d closes after group g's last day when (d - i0 + 1) // days > g
                g = (np.arange(daily.n_bars) - i0 + 1) // days - 1
                seen = (g >= 0) & (g < bias.shape[0])
                on_daily = np.zeros((daily.n_bars, daily.n_coins), dtype=np.int8)
                on_daily[seen] = bias[g[seen]]
            views.append(align_to_base(on_daily, daily, market, fill=0).astype(np.int8))
        hit = tuple(views)
        _BIAS[market] = hit
    return hit


def htf_bias(market: Market, votes: int = 2) -> np.ndarray:
    """(n_bars, n_coins) int8 HTF bias: +1 where at least `votes` of the weekly, 3-day and
    daily structures are bullish and none bearish, -1 mirrored, 0 otherwise."""
    stack = np.stack(htf_views(market))
    bull, bear = (stack == 1).sum(axis=0), (stack == -1).sum(axis=0)
    return ((bull >= votes) & (bear == 0)).astype(np.int8) - ((bear >= votes) & (bull == 0)).astype(np.int8)


@dataclass(frozen=True)
class Zones:
    """Order-block and breaker retests and the zones standing after each bar, (n_bars, n_coins).

    `*_dir` is +1 (retest of a demand zone: long), -1 (supply: short) or 0; `*_stop` the stop
    LEVEL (beyond the zone or the retest wick); `*_strength` the displacement's body over the
    mean body. `zone` keeps the kernel's layout, (8, n_coins, n_bars), for the SFP kernel: rows
    2 * kind and 2 * kind + 1 are the low and high edge of the zone of that kind
    (price_action_nb.BULL_OB ...) standing after the bar, NaN where none stands.
    """

    ob_dir: np.ndarray
    ob_stop: np.ndarray
    ob_strength: np.ndarray
    brk_dir: np.ndarray
    brk_stop: np.ndarray
    brk_strength: np.ndarray
    zone: np.ndarray


def order_block_zones(market: Market, n: int = BODY_WINDOW, mult: float = DISPLACEMENT_MULT,
                      max_age: int = 48) -> Zones:
    """Order blocks (the last opposing candle before a displacement of body >= mult x the mean
    body of the previous n bars; the zone is its body), breakers (an order block closed through
    by a single candle, polarity flipped) and their first retests; see price_action_nb.zones_1d."""
    sig, zone = nb.zones_rows(*_ohlc_rows(market), int(n), float(mult), int(max_age))
    return Zones(ob_dir=sig[nb.OB_DIR].T, ob_stop=sig[nb.OB_STOP].T, ob_strength=sig[nb.OB_STRENGTH].T,
                 brk_dir=sig[nb.BRK_DIR].T, brk_stop=sig[nb.BRK_STOP].T,
                 brk_strength=sig[nb.BRK_STRENGTH].T, zone=zone)


@dataclass(frozen=True)
class SwingFailures:
    """Confirmed SFPs at their confirmation bar, (n_bars, n_coins): side, stop level (the SFP
    wick's extreme), confidence (the candle's rejection share) and confluence (at a zone)."""

    direction: np.ndarray
    stop: np.ndarray
    confidence: np.ndarray
    confluence: np.ndarray  # bool


def swing_failures(market: Market, k: int, zones: Zones) -> SwingFailures:
    """Swing failures of the swing levels of lookback k, confluence with `zones`; see
    price_action_nb.sfp_1d."""
    out = nb.sfp_rows(*_ohlc_rows(market), int(k), zones.zone)
    return SwingFailures(direction=out[nb.SFP_DIR].T, stop=out[nb.SFP_STOP].T,
                         confidence=out[nb.SFP_CONF].T, confluence=out[nb.SFP_CONFLUENCE].T > 0)


def monday_range(market: Market) -> tuple[np.ndarray, np.ndarray]:
    """(high, low) of the week's complete UTC Monday on each bar from Tuesday to Sunday, NaN
    elsewhere; see price_action_nb.monday_range_rows."""
    valid = np.ascontiguousarray((market.listed & np.isfinite(market.high) & np.isfinite(market.low)).T)
    hi, lo = nb.monday_range_rows(market.ts_ns, market.bar_seconds * 1_000_000_000,
                                  _rows(market.high), _rows(market.low), valid)
    return hi.T, lo.T
