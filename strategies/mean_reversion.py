"""Mean reversion: fade an RSI extreme that closes outside the Bollinger band, in a range only.

Long at the close of bar t when RSI <= rsi_low and close < lower band (short mirrored), skipped
when the band width (upper - lower) / mid is over `max_width` (a wide band is a trend, not a
range). Stop `stop_atr` x ATR (tight); the target is the mid band at the decision bar, as an
R multiple; exit at the next open once the close crosses the mid band; time stop `max_hold`.

Filters: the 200-MA gate applies (no buying a dip more than 2% under the 200-MA: that is a
falling knife, not a range). The trend-efficiency gate is applied INVERTED, on purpose: this
strategy wants chop, so it rejects a strongly trending path (efficiency > 0.70) instead of a
choppy one (< 0.30 would reject exactly the ranges it trades). No funding filter (the issue
asks it of momentum only). A stop wider than `max_stop_pct` of price skips the setup. Score: how far beyond the band the close is, in ATRs, plus one.
`regime_gate` (default off): fade only when the coin's forecast regime is chop, reversal, or
not trend, the regime model fitted on the train window (strategies.regime.gate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.market import Market
from harness.signals import Signals
from harness.strategy import Mode
from strategies import indicators as ind
from strategies.base import param, register
from strategies.common import FAMILY_REVERSION, columnar, finish, pick
from strategies.filters import EFFICIENCY_BOOST, MAX_STOP_FRAC, ma_gate, stop_within
from strategies.regime.gate import GATE_HELP, REVERSION_GATES, apply_gate, fit_regime


@dataclass(frozen=True)
class Params:
    bb_n: int = param(20, 10, 60, help="Bollinger window (bars)")
    bb_k: float = param(2.0, 1.5, 3.0, help="Bollinger band width in standard deviations")
    rsi_n: int = param(14, 5, 30, help="RSI period (Wilder)")
    atr_n: int = param(14, 5, 30, help="ATR period (Wilder) for the stop")
    stop_atr: float = param(1.0, 0.3, 3.0, help="stop distance in ATRs (1R); tight by design")
    max_hold: int = param(24, 4, 96, help="time stop in bars (0: none)")
    use_ma_gate: bool = param(True, help="apply the 200-MA gate")
    eff_window: int = param(20, 5, 60, help="trend-efficiency window; a path above 0.70 is skipped")
    max_stop_pct: float = param(MAX_STOP_FRAC, 0.01, 0.10, help="skip a setup whose stop is wider than this fraction of price (liquidation-safe)")
    regime_gate: str = param("off", choices=REVERSION_GATES, help=GATE_HELP)


@dataclass(frozen=True)
class Thresholds:
    rsi_low: float  # long at or below
    rsi_high: float  # short at or above
    max_width: float  # skip when the band is wider than this fraction of the mid


LIVE = Thresholds(rsi_low=30.0, rsi_high=70.0, max_width=0.05)
SHADOW = Thresholds(rsi_low=35.0, rsi_high=65.0, max_width=0.08)


def fit(train: Market, p: Params):
    return fit_regime(train, p.regime_gate)


@register("mean_reversion", Params, fit=fit, description="RSI extreme + close outside the Bollinger band, "
          "skipped when band width > 5%; tight ATR stop, exit at the mid band")
def generate(market: Market, p: Params, mode: Mode = "live", fitted=None) -> Signals:
    th = pick(mode, LIVE, SHADOW)
    market = columnar(market)
    c = market.close
    mid, upper, lower, width = ind.bollinger(c, p.bb_n, p.bb_k)
    rsi = ind.rsi(c, p.rsi_n)
    atr = ind.atr(market, p.atr_n)
    eff = ind.trend_efficiency(c, p.eff_window)
    with np.errstate(invalid="ignore"):
        ranging = (width <= th.max_width) & ~(eff > EFFICIENCY_BOOST)
        long = ranging & (rsi <= th.rsi_low) & (c < lower)
        short = ranging & (rsi >= th.rsi_high) & (c > upper)
    d = long.astype(np.int8) - short.astype(np.int8)
    stop = p.stop_atr * atr
    allowed = stop_within(stop, c, p.max_stop_pct)
    if p.use_ma_gate:
        allowed &= ma_gate(c, d)
    d = apply_gate(np.where(allowed, d, 0), fitted, market, p.regime_gate)
    with np.errstate(invalid="ignore", divide="ignore"):
        beyond = np.where(d > 0, lower - c, c - upper) / atr
        target = np.abs(mid - c) / stop
    exit_ = ind.crossed(c, mid) != 0
    return finish(market, "mean_reversion", mode, d, stop, target, 1.0 + beyond, FAMILY_REVERSION,
                  exit=exit_, hold=p.max_hold, atr14=atr if p.atr_n == 14 else None)
