"""Swing-failure pattern with confluence (the ten-strategy paper system).

Swing levels: the latest swing high and low (pivots with `swing_n` bars on either side, known
`swing_n` bars after the pivot), each standing until a bar trades beyond it. SFP: the wick goes
beyond a standing level and the same candle closes back inside; the NEXT candle confirms by
closing beyond the SFP candle's close in the SFP direction (below it after a bearish SFP at a
swing high). The signal is at the confirmation bar's close: short after a bearish SFP, long
after a bullish one; an unconfirmed SFP never signals (strategies.price_action.swing_failures).

Confidence: the SFP candle's rejection, (high - close) / (high - low) for a bearish one. An SFP
whose wick reached into an order-block or breaker zone of the same polarity (supply for a
bearish SFP; price_action.order_block_zones with the system's 2x displacement) multiplies it by
1.5, capped at 1.0. Live trades confidence >= 0.6, shadow >= 0.4. Stop at the SFP wick's
extreme (plus `stop_buffer` of price), target `target_r` R (>= 2: the 2:1 rule), the stop
inside `max_stop_pct` of price; optional HTF swing bias. Score: the confidence.

Interval: 15m, the pattern's home, on the 15m file of ../shared/data (eight weeks, about 5,000
bars per coin, as many as the hourly file). No funding filter: on 15m bars only the bar opening
on the hour carries the hourly rate (harness.sources.build_market), so it would judge one bar
in four. The HTF bias barely forms on eight weeks (no weekly swing structure, few 3-day ones),
so `use_bias` leaves almost no trade there; it needs longer 15m history (or `--interval 1h`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.market import Market
from harness.signals import Signals
from harness.strategy import Mode
from strategies.base import param, register
from strategies.common import FAMILY_PRICE_ACTION, columnar, finish, pick
from strategies.filters import MAX_STOP_FRAC, MIN_REWARD_RISK, reward_risk_gate, stop_within
from strategies.price_action import (
    BODY_WINDOW,
    DISPLACEMENT_MULT,
    htf_bias,
    order_block_zones,
    swing_failures,
)

CONFLUENCE_MULT = 1.5


@dataclass(frozen=True)
class Params:
    swing_n: int = param(5, 2, 12, help="swing pivot lookback: bars on either side of a swing high / low")
    body_window: int = param(BODY_WINDOW, 5, 30, help="order-block zones (confluence): displacement vs the mean body of this many candles")
    max_age: int = param(96, 12, 480, help="order-block zones expire this many bars after they were made")
    target_r: float = param(2.5, MIN_REWARD_RISK, 6.0, help="take-profit in R (>= 2: the 2:1 rule)")
    stop_buffer: float = param(0.0, 0.0, 0.01, help="stop this fraction of price beyond the SFP wick")
    max_hold: int = param(96, 8, 384, help="time stop: close after this many bars")
    use_bias: bool = param(False, help="trade only with the HTF swing bias (W / 3D / D)")
    max_stop_pct: float = param(MAX_STOP_FRAC, 0.01, 0.10, help="skip a setup whose stop is wider than this fraction of price (liquidation-safe)")


@dataclass(frozen=True)
class Thresholds:
    min_confidence: float  # SFP confidence after confluence
    bias_votes: int  # HTF views that must agree when use_bias is on


LIVE = Thresholds(min_confidence=0.6, bias_votes=2)
SHADOW = Thresholds(min_confidence=0.4, bias_votes=1)


@register("sfp", Params, interval="15m", description="swing failure (wick beyond a swing level, "
          "close back inside) confirmed by the next candle; x1.5 confidence at an order-block zone")
def generate(market: Market, p: Params, mode: Mode = "live", fitted=None) -> Signals:
    th = pick(mode, LIVE, SHADOW)
    market = columnar(market)
    c = market.close
    zones = order_block_zones(market, p.body_window, DISPLACEMENT_MULT, p.max_age)
    s = swing_failures(market, p.swing_n, zones)
    conf = np.minimum(np.where(s.confluence, CONFLUENCE_MULT * s.confidence, s.confidence), 1.0)
    d = np.where(conf >= th.min_confidence, s.direction, 0).astype(np.int8)
    if p.use_bias:
        d = np.where(d == htf_bias(market, th.bias_votes), d, 0)
    stop = np.where(d > 0, c - s.stop * (1 - p.stop_buffer), s.stop * (1 + p.stop_buffer) - c)
    allowed = reward_risk_gate(p.target_r) & stop_within(stop, c, p.max_stop_pct)
    d = np.where(allowed, d, 0)
    return finish(market, "sfp", mode, d, stop, p.target_r, conf, FAMILY_PRICE_ACTION, hold=p.max_hold)
