"""SkewFlow (the ten-strategy paper system): fade a perp premium far from its recent distribution.

The premium (Market.premium: the perp's premium over the oracle, recorded for BTC and ETH in
../shared/data; NaN elsewhere, so other coins never trade) is z-scored over the last `window`
bars (indicators.rolling_z, current bar included). A premium more than z_entry sigma above its
recent distribution (2.5 in live: premium spikes are fat-tailed, so 2 sigma is common) means the
perp is bid up over the index: short, expecting the premium, and with it the perp, to revert;
more than z_entry below: long. A run of such bars is one setup. Exit at the next open once
|z| < z_exit, or after `max_hold` bars. Stop `stop_atr` x ATR(14), inside `max_stop_pct` of
price; no target (the exit is the premium's, so the 2:1 rule has no reward to measure); optional
funding filter (a rich premium comes with high funding, which a short receives: a tailwind).
Score: |z| / z_entry x the funding bonus.

Interval: 1h, the premium's own sampling (one record per hour).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.market import Market
from harness.signals import Signals
from harness.strategy import Mode
from strategies import indicators as ind
from strategies.base import param, register
from strategies.common import FAMILY_PREMIUM, columnar, finish, pick
from strategies.filters import MAX_STOP_FRAC, funding_filter, stop_within


@dataclass(frozen=True)
class Params:
    window: int = param(168, 24, 720, help="premium z-score window (bars)")
    z_exit: float = param(0.5, 0.0, 1.5, help="exit at the next open once |z| is inside this")
    stop_atr: float = param(2.0, 0.5, 5.0, help="stop distance in ATR(14)s (1R)")
    max_hold: int = param(24, 2, 168, help="time stop: close after this many bars")
    use_funding: bool = param(True, help="apply the funding filter and tailwind bonus")
    max_stop_pct: float = param(MAX_STOP_FRAC, 0.01, 0.10, help="skip a setup whose stop is wider than this fraction of price (liquidation-safe)")


@dataclass(frozen=True)
class Thresholds:
    z_entry: float  # enter beyond +-z_entry sigma of the premium


LIVE = Thresholds(z_entry=2.5)
SHADOW = Thresholds(z_entry=2.0)


@register("skewflow", Params, description="perp premium beyond 2.5 sigma of its rolling "
          "distribution, traded toward reversion; exit inside the band, ATR stop, time stop")
def generate(market: Market, p: Params, mode: Mode = "live", fitted=None) -> Signals:
    th = pick(mode, LIVE, SHADOW)
    market = columnar(market)
    c = market.close
    z = ind.rolling_z(market.premium, p.window)
    with np.errstate(invalid="ignore"):
        d = (z < -th.z_entry).astype(np.int8) - (z > th.z_entry).astype(np.int8)
        exit_ = np.abs(z) < p.z_exit
    atr = ind.atr(market, 14)
    stop = p.stop_atr * atr
    allowed = stop_within(stop, c, p.max_stop_pct)
    score = np.ones(c.shape)
    if p.use_funding:
        ok, score = funding_filter(market.funding, d)
        allowed &= ok
    d = np.where(allowed, d, 0)
    return finish(market, "skewflow", mode, d, stop, None, score * np.abs(np.nan_to_num(z)) / th.z_entry,
                  FAMILY_PREMIUM, exit=exit_, hold=p.max_hold, atr14=atr)
