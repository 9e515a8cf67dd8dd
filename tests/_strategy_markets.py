"""Markets for the strategy tests: the embedded default and subsets of ../shared/data (None when
the folder is absent, so the caller can skip with a reason)."""

from __future__ import annotations

import os
from pathlib import Path

from harness.market import Market
from harness.sources import load_market

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HLQ_SHARED_DATA", ROOT.parent / "shared" / "data"))
HL = DATA / "hyperliquid"
BEAR = DATA / "binance" / "bear_portfolio_2022_1d.parquet"
REAL_COINS = ("BTC", "ETH", "SOL", "DOGE", "AVAX", "LINK", "HYPE", "XRP", "SUI", "WIF", "AAVE", "LTC")


def default_market() -> Market:
    """The embedded default market (deterministic synthetic, 8 coins x 8,760 hourly bars)."""
    return load_market("embedded", store=ROOT / "data")


def real_market(coins=REAL_COINS, n_bars: int | None = 2000, interval: str = "1h") -> Market | None:
    """The last `n_bars` bars of ../shared/data for `coins` (every coin if None), from its
    candles_<interval> file (hourly; the 15m file spans only 2025-02-06..03-31)."""
    if not (HL / f"candles_{interval}.parquet").exists():
        return None
    m = load_market(HL, interval, coins=None if coins is None else list(coins))
    return m if n_bars is None else m.slice(max(0, m.n_bars - n_bars), m.n_bars)


def full_span_market(interval: str = "1h") -> Market | None:
    """The coins of ../shared/data listed on (nearly) every bar: the 116-coin benchmark (1h)."""
    m = real_market(coins=None, n_bars=None, interval=interval)
    if m is None:
        return None
    keep = [c for c, f in zip(m.coins, m.listed.mean(axis=0) > 0.97, strict=True) if f]
    return m.select(keep)


def real_daily_market() -> Market | None:
    """The 2022 bear-market daily basket (gem_bear's home), or None when absent."""
    if not BEAR.exists():
        return None
    return load_market(BEAR, "1d")
