"""A Market from plain close (and funding / open-interest) arrays, for strategy unit tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.market import Market

FREQ = {"1h": "h", "4h": "4h", "1d": "D"}


def market_from_arrays(close: np.ndarray, funding: np.ndarray | None = None,
                       open_interest: np.ndarray | None = None, interval: str = "1h",
                       start: str = "2024-01-01", coins: tuple[str, ...] | None = None,
                       wick: float = 0.002) -> Market:
    """Open = previous close; high/low = max/min(open, close) widened by `wick` (a fraction)."""
    close = np.asarray(close, dtype=np.float64)
    if close.ndim == 1:
        close = close[:, None]
    shape = close.shape
    opn = np.vstack([close[:1], close[:-1]])
    high = np.maximum(opn, close) * (1 + wick)
    low = np.minimum(opn, close) * (1 - wick)
    coins = coins or ("BTC",) + tuple(f"C{i}" for i in range(1, shape[1]))
    return Market(
        index=pd.date_range(start, periods=shape[0], freq=FREQ[interval], tz="UTC"),
        coins=tuple(coins), interval=interval, open=opn, high=high, low=low, close=close,
        volume=np.full(shape, 1e6),
        funding=np.zeros(shape) if funding is None else np.asarray(funding, dtype=np.float64).reshape(shape),
        premium=np.full(shape, np.nan),
        open_interest=np.full(shape, np.nan) if open_interest is None else np.asarray(open_interest, dtype=np.float64),
        listed=np.isfinite(close), source="test arrays",
    )
