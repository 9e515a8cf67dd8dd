"""WickFlow (the ten-strategy paper system): fade the exhaustion wick of a liquidation cascade.

Liquidations are not in the data, so a cascade's exhaustion is read from the candle: a bar that
flushes to a new `extreme_window`-bar low, with a lower wick at least `wick_mult` x its body
(2x in live, the system's rule) and longer than its upper wick, on volume at least `vol_mult`
x the mean of the previous `vol_window` bars, goes long at its close; a spike to a new high
with the mirrored upper wick goes short. Stop at the wick's extreme (plus `stop_buffer` of
price), target `target_r` R (>= 2: the 2:1 rule, filters.reward_risk_gate), the stop inside
`max_stop_pct` of price; optional funding filter. Score: volume / its mean over vol_mult.

Interval: 1h (cascades play out over hours; the hourly file spans seven months).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.market import Market
from harness.signals import Signals
from harness.strategy import Mode
from strategies import indicators as ind
from strategies.base import param, register
from strategies.common import FAMILY_WICK, columnar, finish, pick
from strategies.filters import (
    MAX_STOP_FRAC,
    MIN_REWARD_RISK,
    funding_filter,
    reward_risk_gate,
    stop_within,
)


@dataclass(frozen=True)
class Params:
    vol_window: int = param(20, 5, 60, help="volume mean over this many previous bars")
    extreme_window: int = param(20, 3, 100, help="the wick must make a new low / high of this many previous bars")
    target_r: float = param(2.5, MIN_REWARD_RISK, 6.0, help="take-profit in R (>= 2: the 2:1 rule)")
    stop_buffer: float = param(0.0, 0.0, 0.01, help="stop this fraction of price beyond the wick")
    max_hold: int = param(24, 2, 120, help="time stop: close after this many bars")
    use_funding: bool = param(True, help="apply the funding filter and tailwind bonus")
    max_stop_pct: float = param(MAX_STOP_FRAC, 0.01, 0.10, help="skip a setup whose stop is wider than this fraction of price (liquidation-safe)")


@dataclass(frozen=True)
class Thresholds:
    wick_mult: float  # reversal wick / body
    vol_mult: float  # volume / its mean over the previous vol_window bars


LIVE = Thresholds(wick_mult=2.0, vol_mult=2.0)
SHADOW = Thresholds(wick_mult=1.5, vol_mult=1.5)


@register("wickflow", Params, description="reversal wick >= 2x the body at a new local extreme on "
          "elevated volume (cascade exhaustion); stop at the wick, fixed R target (>= 2R)")
def generate(market: Market, p: Params, mode: Mode = "live", fitted=None) -> Signals:
    th = pick(mode, LIVE, SHADOW)
    market = columnar(market)
    o, h, lo, c, v = market.open, market.high, market.low, market.close, market.volume
    body = np.abs(c - o)
    upper, lower = h - np.maximum(o, c), np.minimum(o, c) - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        vol_ratio = v / ind.lag(ind.sma(v, p.vol_window), 1)
        loud = vol_ratio >= th.vol_mult
        new_low = lo < ind.lag(ind.rolling_min(lo, p.extreme_window), 1)
        new_high = h > ind.lag(ind.rolling_max(h, p.extreme_window), 1)
        long = loud & new_low & (lower >= th.wick_mult * body) & (lower > upper)
        short = loud & new_high & (upper >= th.wick_mult * body) & (upper > lower)
    d = long.astype(np.int8) - short.astype(np.int8)
    stop = np.where(d > 0, c - lo * (1 - p.stop_buffer), h * (1 + p.stop_buffer) - c)
    allowed = reward_risk_gate(p.target_r) & stop_within(stop, c, p.max_stop_pct)
    score = np.ones(c.shape)
    if p.use_funding:
        ok, score = funding_filter(market.funding, d)
        allowed &= ok
    d = np.where(allowed, d, 0)
    return finish(market, "wickflow", mode, d, stop, p.target_r, score * vol_ratio / th.vol_mult,
                  FAMILY_WICK, hold=p.max_hold)
