"""Order-block and breaker retests (the ten-strategy paper system), registered as two strategies.

Order block: the last opposing candle before a displacement candle (body >= `disp_mult` x the
mean body of the previous `body_window` candles; 2x in live, the system's rule); the zone is
that candle's body, open to close. A bullish displacement makes a demand zone (its last bearish
candle), a bearish one a supply zone. `order_block` trades the zone's first retest: long at the
close of a bar whose low enters a demand zone and whose close is back above it (short mirrored).
Breaker: an order block becomes a breaker when any single candle closes through its zone; its
polarity flips (a broken demand zone becomes supply), and `breaker` trades its first retest the
same way. Zones expire after `max_age` bars; the latest zone of each kind is kept
(strategies.price_action.order_block_zones).

Stop beyond the zone or the retest wick, whichever is further (plus `stop_buffer` of price);
target `target_r` R (at least 2: the 2:1 rule, filters.reward_risk_gate); the stop inside
`max_stop_pct` of price; optional funding filter and HTF swing bias (price_action.htf_bias).
Score: the displacement's body over the mean body, divided by the threshold.

Interval: 1h (the hourly file spans seven months; the zone logic is interval-agnostic).
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
from strategies.price_action import BODY_WINDOW, htf_bias, order_block_zones


@dataclass(frozen=True)
class Params:
    body_window: int = param(BODY_WINDOW, 5, 30, help="displacement: body vs the mean body of this many previous candles")
    max_age: int = param(48, 6, 240, help="a zone expires this many bars after it was made (or flipped)")
    target_r: float = param(2.5, MIN_REWARD_RISK, 6.0, help="take-profit in R (>= 2: the 2:1 rule)")
    stop_buffer: float = param(0.0, 0.0, 0.01, help="stop this fraction of price beyond the zone / wick")
    max_hold: int = param(48, 6, 168, help="time stop: close after this many bars")
    use_bias: bool = param(False, help="trade only with the HTF swing bias (W / 3D / D)")
    use_funding: bool = param(True, help="apply the funding filter and tailwind bonus")
    max_stop_pct: float = param(MAX_STOP_FRAC, 0.01, 0.10, help="skip a setup whose stop is wider than this fraction of price (liquidation-safe)")


@dataclass(frozen=True)
class Thresholds:
    disp_mult: float  # displacement body / mean body
    bias_votes: int  # HTF views that must agree when use_bias is on


LIVE = Thresholds(disp_mult=2.0, bias_votes=2)
SHADOW = Thresholds(disp_mult=1.5, bias_votes=1)


def _retest_signals(market: Market, p: Params, mode: Mode, name: str, breaker: bool) -> Signals:
    th = pick(mode, LIVE, SHADOW)
    market = columnar(market)
    c = market.close
    z = order_block_zones(market, p.body_window, th.disp_mult, p.max_age)
    d, level, strength = (z.brk_dir, z.brk_stop, z.brk_strength) if breaker else (z.ob_dir, z.ob_stop, z.ob_strength)
    d = d.astype(np.int8)
    if p.use_bias:
        d = np.where(d == htf_bias(market, th.bias_votes), d, 0)
    stop = np.where(d > 0, c - level * (1 - p.stop_buffer), level * (1 + p.stop_buffer) - c)
    allowed = reward_risk_gate(p.target_r) & stop_within(stop, c, p.max_stop_pct)
    score = np.ones(c.shape)
    if p.use_funding:
        ok, score = funding_filter(market.funding, d)
        allowed &= ok
    d = np.where(allowed, d, 0)
    return finish(market, name, mode, d, stop, p.target_r, score * strength / th.disp_mult,
                  FAMILY_PRICE_ACTION, hold=p.max_hold)


@register("order_block", Params, description="first retest of an order block (last opposing candle "
          "before a 2x displacement); stop beyond the zone, fixed R target (>= 2R)")
def generate_order_block(market: Market, p: Params, mode: Mode = "live", fitted=None) -> Signals:
    return _retest_signals(market, p, mode, "order_block", breaker=False)


@register("breaker", Params, description="first retest of a breaker (an order block closed through, "
          "polarity flipped); stop beyond the zone, fixed R target (>= 2R)")
def generate_breaker(market: Market, p: Params, mode: Mode = "live", fitted=None) -> Signals:
    return _retest_signals(market, p, mode, "breaker", breaker=True)
