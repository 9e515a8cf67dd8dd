"""A small seeded hourly market with planted regimes, for the regime-model tests (no data files)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.market import Market


def planted_market(n: int = 1500, coins: tuple[str, ...] = ("BTC", "ETH"), seed: int = 0,
                   block: int = 120) -> tuple[Market, np.ndarray]:
    """Blocks of `block` bars alternate at random between calm chop (state 0) and a volatile
    trend (state 1, drift up or down). Returns the market and the (n,) planted state."""
    rng = np.random.default_rng(seed)
    n_blocks = -(-n // block)
    state = np.repeat(rng.integers(0, 2, n_blocks), block)[:n]
    side = np.repeat(rng.choice([-1.0, 1.0], n_blocks), block)[:n]
    k = len(coins)
    vol = np.where(state == 1, 0.012, 0.003)[:, None]
    drift = np.where(state == 1, 0.004 * side, 0.0)[:, None]
    r = drift + vol * rng.standard_normal((n, k))
    close = 100.0 * np.exp(np.cumsum(r, axis=0))
    open_ = np.vstack([close[:1], close[:-1]])
    wick = np.abs(rng.standard_normal((n, k))) * vol * close * 0.5
    high = np.maximum(open_, close) + wick
    low = np.minimum(open_, close) - wick
    idx = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    m = Market(index=idx, coins=tuple(coins), interval="1h", open=open_, high=high, low=low,
               close=close, volume=rng.uniform(50, 150, (n, k)) * (1 + state[:, None]),
               funding=1e-5 * rng.standard_normal((n, k)), premium=np.full((n, k), np.nan),
               open_interest=np.full((n, k), np.nan), listed=np.ones((n, k), dtype=bool),
               source="test planted regimes", synthetic=True)
    return m, state


def switching_market(n: int = 2400, coins: tuple[str, ...] = ("AAA", "BBB"), seed: int = 0,
                     block: tuple[int, int] = (36, 72)) -> tuple[Market, np.ndarray]:
    """Calm chop (state 0: hourly log returns N(0, 0.0005)) and a steady up-trend (state 1:
    N(0.004, 0.001)) alternating in blocks of random length in [block[0], block[1]): the
    generating model is a 2-state Gaussian HMM on the hourly return. Returns the market and
    the (n,) planted state."""
    rng = np.random.default_rng(seed)
    lens = rng.integers(block[0], block[1], n // block[0] + 1)
    state = np.repeat(np.arange(lens.size) % 2, lens)[:n]
    k = len(coins)
    vol = np.where(state == 1, 0.001, 0.0005)[:, None]
    r = np.where(state == 1, 0.004, 0.0)[:, None] + vol * rng.standard_normal((n, k))
    close = 100.0 * np.exp(np.cumsum(r, axis=0))
    open_ = np.vstack([close[:1], close[:-1]])
    wick = np.abs(rng.standard_normal((n, k))) * vol * close * 0.3
    idx = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    m = Market(index=idx, coins=tuple(coins), interval="1h", open=open_,
               high=np.maximum(open_, close) + wick, low=np.minimum(open_, close) - wick,
               close=close, volume=np.full((n, k), 100.0), funding=np.zeros((n, k)),
               premium=np.full((n, k), np.nan), open_interest=np.full((n, k), np.nan),
               listed=np.ones((n, k), dtype=bool), source="test switching regimes", synthetic=True)
    return m, state


def perturbed_after(market: Market, t: int, seed: int = 1) -> Market:
    """Bars after t replaced by a random walk of positive prices (a different future)."""
    rng = np.random.default_rng(seed)
    n, k = market.n_bars, market.n_coins
    arrays = {f: getattr(market, f).copy() for f in ("open", "high", "low", "close", "volume",
                                                     "funding")}
    m = n - t - 1
    if m > 0:
        c = market.close[t] * np.exp(np.cumsum(0.05 * rng.standard_normal((m, k)), axis=0))
        arrays["close"][t + 1:] = c
        arrays["open"][t + 1:] = c * np.exp(0.01 * rng.standard_normal((m, k)))
        arrays["high"][t + 1:] = np.maximum(arrays["open"][t + 1:], c) * 1.02
        arrays["low"][t + 1:] = np.minimum(arrays["open"][t + 1:], c) * 0.98
        arrays["volume"][t + 1:] = rng.uniform(1, 1000, (m, k))
        arrays["funding"][t + 1:] = 1e-3 * rng.standard_normal((m, k))
    return Market(index=market.index, coins=market.coins, interval=market.interval,
                  premium=market.premium, open_interest=market.open_interest,
                  listed=market.listed, source="perturbed", synthetic=True, **arrays)
