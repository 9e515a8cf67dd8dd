"""QuantFlow, realized-volatility regime (the ten-strategy paper system's QuantFlow without its
options half): trade the switch from compressed to expanding volatility.

Realized volatility = the population std of one-bar log returns over `rv_fast` and over
`rv_slow` bars; ratio = fast / slow. The regime is compressed while the ratio is at most
`compress` and expanding once it is at least `expand`. A switch: the ratio crosses up through
`expand` at bar t (>= at t, < one bar earlier) after being compressed within the previous
`memory` bars. The trade follows the move that broke the calm: long if the close is above the
close `rv_fast` bars ago, short if below. Live: compress 0.7, expand 1.5; shadow 0.8 / 1.25.
Stop `stop_atr` x ATR(14), target `target_r` R (>= 2: the 2:1 rule), time stop `max_hold`;
the stop inside `max_stop_pct` of price; optional 200-MA gate and funding filter.
Score: ratio / expand x the funding bonus.

Interval: 1h (the hourly file's seven months hold both windows' history many times over).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.market import Market
from harness.signals import Signals
from harness.strategy import Mode
from strategies import indicators as ind
from strategies.base import param, register
from strategies.common import FAMILY_VOL_REGIME, columnar, finish, pick
from strategies.filters import (
    MAX_STOP_FRAC,
    MIN_REWARD_RISK,
    funding_filter,
    ma_gate,
    reward_risk_gate,
    stop_within,
)


@dataclass(frozen=True)
class Params:
    rv_fast: int = param(24, 4, 48, help="fast realized-volatility window (bars)")
    rv_slow: int = param(168, 72, 720, help="slow realized-volatility window (bars)")
    memory: int = param(24, 2, 96, help="the compression must lie within this many bars before the switch")
    stop_atr: float = param(1.5, 0.5, 4.0, help="stop distance in ATR(14)s (1R)")
    target_r: float = param(3.0, MIN_REWARD_RISK, 8.0, help="take-profit in R (>= 2: the 2:1 rule)")
    max_hold: int = param(48, 4, 240, help="time stop: close after this many bars")
    use_ma_gate: bool = param(True, help="apply the 200-MA gate")
    use_funding: bool = param(True, help="apply the funding filter and tailwind bonus")
    max_stop_pct: float = param(MAX_STOP_FRAC, 0.01, 0.10, help="skip a setup whose stop is wider than this fraction of price (liquidation-safe)")


@dataclass(frozen=True)
class Thresholds:
    compress: float  # fast / slow realized volatility at or below this: compressed
    expand: float  # ... at or above this: expanding


LIVE = Thresholds(compress=0.7, expand=1.5)
SHADOW = Thresholds(compress=0.8, expand=1.25)


def rv_ratio(close: np.ndarray, fast: int, slow: int) -> np.ndarray:
    """Realized volatility of one-bar log returns over `fast` bars over that over `slow` bars."""
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.log(close / ind.lag(close, 1))
        return ind.rolling_std(r, fast) / ind.rolling_std(r, slow)


@register("quantflow", Params, description="realized-volatility regime switch: fast/slow RV "
          "crosses 1.5 after a compression (<= 0.7); trade the breakout's side, ATR stop, R target")
def generate(market: Market, p: Params, mode: Mode = "live", fitted=None) -> Signals:
    th = pick(mode, LIVE, SHADOW)
    market = columnar(market)
    c = market.close
    ratio = rv_ratio(c, p.rv_fast, p.rv_slow)
    with np.errstate(invalid="ignore"):
        switch = ((ratio >= th.expand) & (ind.lag(ratio, 1) < th.expand)
                  & (ind.lag(ind.rolling_min(ratio, p.memory), 1) <= th.compress))
        move = c - ind.lag(c, p.rv_fast)
    d = np.where(switch, np.sign(np.nan_to_num(move)), 0).astype(np.int8)
    atr = ind.atr(market, 14)
    stop = p.stop_atr * atr
    allowed = reward_risk_gate(p.target_r) & stop_within(stop, c, p.max_stop_pct)
    if p.use_ma_gate:
        allowed &= ma_gate(c, d)
    score = np.ones(c.shape)
    if p.use_funding:
        ok, score = funding_filter(market.funding, d)
        allowed &= ok
    d = np.where(allowed, d, 0)
    return finish(market, "quantflow", mode, d, stop, p.target_r, score * np.nan_to_num(ratio) / th.expand,
                  FAMILY_VOL_REGIME, hold=p.max_hold, atr14=atr)
