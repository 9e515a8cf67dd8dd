"""Monday Range (the ten-strategy paper system): fade a sweep of Monday's range back to its middle.

Mark each week's Monday UTC high and low (strategies.price_action.monday_range: complete Mondays
only, usable from Tuesday 00:00 UTC to the end of Sunday). Long at the close of a bar whose low
sweeps below the Monday low and whose close is back inside the range; short mirrored at the
Monday high. Stop at the wick's extreme (plus `stop_buffer` of price), target the Monday
midpoint: target R = (mid - close) / stop for a long. Only in the direction of the HTF bias
(price_action.htf_bias: weekly, 3-day and daily swing structure; live needs 2 of the 3 views to
agree and none against, shadow 1). Risk rules: the target must be at least `min_rr` R (the 2:1
rule, filters.reward_risk_gate), the stop inside `max_stop_pct` of price (liquidation-safe);
optional funding filter. Score: target R / min_rr (room to the midpoint).

Interval: 1h. The rule was written for 15m candles, but ../shared/data has 15m bars for only
eight weeks (2025-02-06..03-31), too few for the weekly swing structure (lookback 3 needs weeks
on either side of each swing) and for more than a handful of Mondays; the hourly file gives 30
weeks. The code is interval-agnostic: `sweep run --interval 15m` trades 15m sweeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.market import Market
from harness.signals import Signals
from harness.strategy import Mode
from strategies.base import param, register
from strategies.common import FAMILY_PRICE_ACTION, columnar, finish, pick
from strategies.filters import (
    MAX_STOP_FRAC,
    MIN_REWARD_RISK,
    funding_filter,
    reward_risk_gate,
    stop_within,
)
from strategies.price_action import htf_bias, monday_range


@dataclass(frozen=True)
class Params:
    min_rr: float = param(MIN_REWARD_RISK, MIN_REWARD_RISK, 4.0, help="minimum reward-to-risk to the Monday midpoint (2 = the system's 2:1 rule)")
    stop_buffer: float = param(0.0, 0.0, 0.01, help="stop this fraction of price beyond the wick's extreme")
    max_hold: int = param(72, 6, 168, help="time stop: close after this many bars")
    use_funding: bool = param(True, help="apply the funding filter and tailwind bonus")
    max_stop_pct: float = param(MAX_STOP_FRAC, 0.01, 0.10, help="skip a setup whose stop is wider than this fraction of price (liquidation-safe)")


@dataclass(frozen=True)
class Thresholds:
    bias_votes: int  # HTF views (of W, 3D, D) that must agree with the trade, none against


LIVE = Thresholds(bias_votes=2)
SHADOW = Thresholds(bias_votes=1)


@register("monday_range", Params, description="sweep of Monday's UTC high/low closing back inside, "
          "with the HTF swing bias; stop at the wick, target the Monday midpoint (>= 2R)")
def generate(market: Market, p: Params, mode: Mode = "live", fitted=None) -> Signals:
    th = pick(mode, LIVE, SHADOW)
    market = columnar(market)
    h, lo, c = market.high, market.low, market.close
    mon_hi, mon_lo = monday_range(market)
    mid = (mon_hi + mon_lo) / 2
    with np.errstate(invalid="ignore"):
        long = (lo < mon_lo) & (c > mon_lo) & (c < mon_hi)
        short = (h > mon_hi) & (c < mon_hi) & (c > mon_lo)
    d = np.where(long, 1, np.where(short, -1, 0)).astype(np.int8)
    d = np.where(d == htf_bias(market, th.bias_votes), d, 0)
    stop = np.where(d > 0, c - lo * (1 - p.stop_buffer), h * (1 + p.stop_buffer) - c)
    with np.errstate(invalid="ignore", divide="ignore"):
        target = d * (mid - c) / stop
    allowed = reward_risk_gate(target, p.min_rr) & (target > 0) & stop_within(stop, c, p.max_stop_pct)
    score = np.ones(c.shape)
    if p.use_funding:
        ok, score = funding_filter(market.funding, d)
        allowed &= ok
    d = np.where(allowed, d, 0)
    return finish(market, "monday_range", mode, d, stop, target, score * target / p.min_rr,
                  FAMILY_PRICE_ACTION, hold=p.max_hold)
