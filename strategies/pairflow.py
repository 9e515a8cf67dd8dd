"""PairFlow (the ten-strategy paper system): trade the spread of BTC/ETH, BTC/SOL and ETH/SOL.

Spread of a pair (A, B) = log(close A) - log(close B); z = its rolling z-score over `window`
bars (indicators.rolling_z). Beyond +-z_entry (2 sigma in live, the system's rule) the pair
opens: long the cheap leg, short the rich one (z > 0: A is rich, so A short and B long). It
closes when z comes back inside the band: side * z < z_exit (`exit` on both legs at once), or
after `max_hold` bars (both legs carry the same time stop). Each leg's stop is `stop_pct` of its
price (at most MAX_STOP_FRAC: liquidation-safe), so risk sizing gives both legs the same
notional: the pair is dollar-neutral. No target: the exit is the spread's (so the 2:1 rule has
no reward to measure here). Score: |z| / z_entry, the same on both legs.

Two legs, two positions, one setup key: both carry setup_key(opening bar, coin A, A's side,
FAMILY_PAIR), and the direction is held on both legs while the pair is open. The kernel's v3
de-duplication is PER COIN (a signal is skipped when its key equals that of the position last
opened on the SAME coin; harness/kernel_nb.py), so the two legs on different coins both open,
and a leg stopped out early is not re-entered while its pair is open. A coin holds one position,
so pairs sharing a coin never run together: with these three pairs (any two share a coin) one
pair is open at a time (strategies/pair_nb.py). A leg the kernel could not open at once (no free
position slot) opens at the next bar that has one and keeps its own time stop.

Interval: 1h. Pairs whose coins are not both in the market are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.market import Market
from harness.signals import Signals, setup_key
from harness.strategy import Mode
from strategies import indicators as ind
from strategies.base import param, register
from strategies.common import FAMILY_PAIR, finish, pick
from strategies.filters import MAX_STOP_FRAC
from strategies.pair_nb import pair_book

PAIRS = (("BTC", "ETH"), ("BTC", "SOL"), ("ETH", "SOL"))


@dataclass(frozen=True)
class Params:
    window: int = param(168, 24, 720, help="spread z-score window (bars)")
    z_exit: float = param(0.5, 0.0, 1.5, help="close the pair once side x z falls below this (back inside the band)")
    stop_pct: float = param(0.03, 0.005, MAX_STOP_FRAC, kind="logfloat", help="each leg's stop as a fraction of its price (1R)")
    max_hold: int = param(168, 12, 720, help="time stop: close both legs after this many bars")


@dataclass(frozen=True)
class Thresholds:
    z_entry: float  # open beyond +-z_entry sigma


LIVE = Thresholds(z_entry=2.0)
SHADOW = Thresholds(z_entry=1.5)


def spread_z(market: Market, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(z (n_bars, n_pairs), legs (n_pairs, 2) coin indices) of the PAIRS this market holds."""
    legs = np.array([[market.coins.index(a), market.coins.index(b)] for a, b in PAIRS
                     if a in market.coins and b in market.coins], dtype=np.int64).reshape(-1, 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_close = np.log(market.close)
    spread = log_close[:, legs[:, 0]] - log_close[:, legs[:, 1]]
    return ind.rolling_z(spread, window), legs


@register("pairflow", Params, description="BTC/ETH, BTC/SOL, ETH/SOL spread z-score beyond 2 sigma: "
          "long the cheap leg, short the rich one, one setup key, shared exit inside the band")
def generate(market: Market, p: Params, mode: Mode = "live", fitted=None) -> Signals:
    th = pick(mode, LIVE, SHADOW)
    shape = (market.n_bars, market.n_coins)
    z, legs = spread_z(market, p.window)
    d, exit_, origin, pair = pair_book(z, legs, market.n_coins, th.z_entry, p.z_exit, p.max_hold)
    held = pair >= 0
    rows = np.arange(market.n_bars)[:, None]
    leg_a = np.where(held, legs[np.maximum(pair, 0), 0], 0) if legs.size else np.zeros(shape, dtype=np.int64)
    a_side = d[rows, leg_a]
    keys = np.where(held, setup_key(np.maximum(origin, 0), leg_a, a_side, FAMILY_PAIR), 0)
    score = np.zeros(shape)
    if legs.size:
        score = np.where(held, np.abs(z[rows, np.maximum(pair, 0)]) / th.z_entry, 0.0)
    return finish(market, "pairflow", mode, d, p.stop_pct * market.close, None,
                  np.nan_to_num(score), FAMILY_PAIR, exit=exit_, hold=p.max_hold, setup=keys)
