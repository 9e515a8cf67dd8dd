"""A Market from hand-written candles, for the pattern tests of the candle strategies."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.market import Market

FREQ = {"15m": "15min", "1h": "h", "1d": "D"}


def candle_market(ohlc, volume=None, premium=None, coins: tuple[str, ...] = ("X",),
                  start: str = "2024-01-01", interval: str = "1h") -> Market:
    """`ohlc`: (n_bars, 4) rows of open, high, low, close for one coin, or (4, n_bars, n_coins)
    for several. Volume defaults to 1000 per bar, premium to unknown, funding to 0. The coin is
    not BTC by default, so the BTC-regime multiplier is 1 and scores are the strategy's own."""
    a = np.asarray(ohlc, dtype=np.float64)
    o, h, lo, c = (a[:, i][:, None] for i in range(4)) if a.ndim == 2 else tuple(a)
    shape = c.shape
    assert (h >= np.maximum(o, c)).all() and (lo <= np.minimum(o, c)).all(), "invalid candle"

    def full(x, default):
        return np.full(shape, default) if x is None else np.asarray(x, dtype=np.float64).reshape(shape)

    return Market(index=pd.date_range(start, periods=shape[0], freq=FREQ[interval], tz="UTC"),
                  coins=coins, interval=interval, open=o, high=h, low=lo, close=c,
                  volume=full(volume, 1000.0), funding=np.zeros(shape), premium=full(premium, np.nan),
                  open_interest=np.full(shape, np.nan), listed=np.ones(shape, dtype=bool),
                  source="hand-made candles")


def active(sig) -> list[tuple[int, int, int]]:
    """(bar, coin, side) of every non-zero direction, in bar order."""
    return [(int(t), int(k), int(sig.direction[t, k])) for t, k in np.argwhere(sig.direction != 0)]
