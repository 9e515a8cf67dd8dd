"""EMA pullback: in an established trend, buy the dip to the fast EMA once price resumes.

Long at the close of bar t when (short mirrored):
- established trend: EMA(fast) > EMA(slow) on each of the last `trend_bars` bars, and the slow
  EMA rose by at least `min_slope` ATRs over `slope_bars` bars;
- pullback: some low of the last `pullback_bars` bars came within `touch` of the fast EMA;
- resumption: the close is above the fast EMA and above the previous bar's high.
A bare EMA cross never qualifies: the stack must already have held for `trend_bars` bars.
Stop below the pullback's lowest low plus a 0.25 ATR buffer (at least `min_stop_atr` ATRs);
target `target_r` R; exit at the next open when the close crosses the slow EMA.
Filters: the 200-MA gate, the trend-efficiency gate, and a stop at most `max_stop_pct` of
price (liquidation-safe). Score: slope in ATRs x efficiency.
`regime_gate` (default off): enter only when the coin's forecast regime is trend (or not chop),
the regime model fitted on the train window (strategies.regime.gate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.market import Market
from harness.signals import Signals
from harness.strategy import Mode
from strategies import indicators as ind
from strategies.base import param, register
from strategies.common import FAMILY_TREND, columnar, finish, pick
from strategies.filters import MAX_STOP_FRAC, efficiency_gate, ma_gate, stop_within
from strategies.regime.gate import GATE_HELP, TREND_GATES, apply_gate, fit_regime

STOP_BUFFER_ATR = 0.25


@dataclass(frozen=True)
class Params:
    ema_fast: int = param(21, 8, 40, help="the EMA price pulls back to (bars)")
    ema_slow: int = param(55, 41, 150, help="trend EMA: fast above slow is an up-trend")
    slope_bars: int = param(10, 3, 48, help="bars over which the slow EMA's slope is measured")
    pullback_bars: int = param(5, 2, 12, help="the touch of the fast EMA must be this recent")
    atr_n: int = param(14, 5, 30, help="ATR period (Wilder)")
    min_stop_atr: float = param(0.5, 0.2, 2.0, help="minimum stop distance in ATRs")
    target_r: float = param(2.0, 1.0, 6.0, help="take-profit in R")
    use_ma_gate: bool = param(True, help="apply the 200-MA gate")
    eff_window: int = param(20, 5, 60, help="trend-efficiency window (bars); < 0.30 rejects")
    max_stop_pct: float = param(MAX_STOP_FRAC, 0.01, 0.10, help="skip a setup whose stop is wider than this fraction of price (liquidation-safe)")
    regime_gate: str = param("off", choices=TREND_GATES, help=GATE_HELP)


@dataclass(frozen=True)
class Thresholds:
    trend_bars: int  # the EMA stack must have held this long
    min_slope: float  # slow-EMA rise over slope_bars, in ATRs
    touch: float  # a low within this fraction above the fast EMA counts as a touch


LIVE = Thresholds(trend_bars=24, min_slope=0.5, touch=0.002)
SHADOW = Thresholds(trend_bars=12, min_slope=0.2, touch=0.006)


def fit(train: Market, p: Params):
    return fit_regime(train, p.regime_gate)


@register("ema_pullback", Params, fit=fit, description="established EMA trend (stack + slope), entry on a "
          "pullback to the fast EMA that resumes; stop under the pullback low")
def generate(market: Market, p: Params, mode: Mode = "live", fitted=None) -> Signals:
    th = pick(mode, LIVE, SHADOW)
    market = columnar(market)
    c, h, lo = market.close, market.high, market.low
    valid = np.isfinite(c)
    fast, slow = ind.ema(c, p.ema_fast), ind.ema(c, p.ema_slow)
    atr = ind.atr(market, p.atr_n)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (slow - ind.lag(slow, p.slope_bars)) / atr
        stack = np.where(valid & np.isfinite(slow), np.sign(fast - slow), np.nan)
        held_up = ind.rolling_min(stack, th.trend_bars) > 0
        held_down = ind.rolling_max(stack, th.trend_bars) < 0
        touch_up = ind.any_within(lo <= fast * (1 + th.touch), p.pullback_bars, valid)
        touch_down = ind.any_within(h >= fast * (1 - th.touch), p.pullback_bars, valid)
        long = held_up & (slope >= th.min_slope) & touch_up & (c > fast) & (c > ind.lag(h, 1))
        short = held_down & (slope <= -th.min_slope) & touch_down & (c < fast) & (c < ind.lag(lo, 1))
    d = long.astype(np.int8) - short.astype(np.int8)

    allowed, mult = efficiency_gate(c, p.eff_window)
    if p.use_ma_gate:
        allowed &= ma_gate(c, d)
    swing_low = ind.rolling_min(lo, p.pullback_bars + 1)
    swing_high = ind.rolling_max(h, p.pullback_bars + 1)
    stop = np.where(d > 0, c - swing_low, swing_high - c) + STOP_BUFFER_ATR * atr
    stop = np.maximum(stop, p.min_stop_atr * atr)
    d = np.where(allowed & stop_within(stop, c, p.max_stop_pct), d, 0)
    d = apply_gate(d, fitted, market, p.regime_gate)
    return finish(market, "ema_pullback", mode, d, stop, p.target_r, np.abs(slope) * mult,
                  FAMILY_TREND, exit=ind.crossed(c, slow) != 0, atr14=atr if p.atr_n == 14 else None)
