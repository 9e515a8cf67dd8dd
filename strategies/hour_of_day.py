"""Hour of day: trade one UTC hour on every coin, one side, for a few bars (intraday seasonality).

Enter `side` at the close of every bar that closes at `hour` UTC; stop `stop_atr` x ATR(14)
(1R), no target, time stop `hold` bars. The simplest strategy whose edge is known exactly when
the market is built with one: `sweep calibrate` plants a drift after a chosen hour and asks
whether the search plus the promotion gate find it, and refuse it when it is not there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.market import Market
from harness.signals import Signals
from harness.strategy import Mode
from strategies import indicators as ind
from strategies.base import param, register
from strategies.common import FAMILY_SEASONAL, columnar, finish


@dataclass(frozen=True)
class Params:
    hour: int = param(15, 0, 23, help="UTC hour at which the decision bar closes")
    side: str = param("long", choices=("long", "short"), help="side traded")
    hold: int = param(4, 1, 12, help="time stop in bars")
    stop_atr: float = param(3.0, 1.0, 6.0, help="stop distance in ATR(14)s (1R)")


@register("hour_of_day", Params, description="one UTC hour, one side, every coin; ATR stop, time stop")
def generate(market: Market, p: Params, mode: Mode = "live", fitted=None) -> Signals:
    """One threshold set: live and shadow are the same (there is nothing to loosen)."""
    market = columnar(market)
    close_hour = ((market.ts_ns // 10**9 + market.bar_seconds) // 3600) % 24
    side = 1 if p.side == "long" else -1
    d = np.where((close_hour == p.hour)[:, None], side, 0) * np.ones((1, market.n_coins), np.int8)
    atr = ind.atr(market, 14)
    return finish(market, "hour_of_day", mode, d, p.stop_atr * atr, np.nan, 1.0, FAMILY_SEASONAL,
                  hold=p.hold, atr14=atr)
