"""Small raw candle/funding frames for the data-layer tests (store schema, valid unless edited)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SHARED = Path(os.environ.get("HLQ_SHARED_DATA")
              or Path(__file__).resolve().parents[1].parent / "shared" / "data")
HL_DATASET = SHARED / "hyperliquid"


def need_shared():
    if not (HL_DATASET / "candles_1h.parquet").is_file():
        pytest.skip(f"real data not found at {HL_DATASET} (set HLQ_SHARED_DATA to ../shared/data)")
    return HL_DATASET


def candles(coins=("BTC", "ETH"), n=48, start="2024-01-01", freq="1h", seed=0) -> pd.DataFrame:
    """A random walk per coin with valid OHLC, sorted by coin, ts."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=n, freq=freq, tz="UTC").as_unit("ns")
    parts = []
    for i, coin in enumerate(coins):
        close = 100.0 * (i + 1) * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
        open_ = np.r_[close[0], close[:-1]]
        parts.append(pd.DataFrame({
            "coin": coin, "ts": ts, "open": open_,
            "high": np.maximum(open_, close) * (1 + rng.uniform(0, 0.005, n)),
            "low": np.minimum(open_, close) * (1 - rng.uniform(0, 0.005, n)),
            "close": close, "volume": rng.uniform(10, 100, n),
        }))
    return pd.concat(parts, ignore_index=True)


def funding(coins=("BTC", "ETH"), n=48, start="2024-01-01", seed=1, jitter_ms=True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=n, freq="1h", tz="UTC").as_unit("ns")
    parts = []
    for coin in coins:
        t = ts + pd.to_timedelta(rng.integers(1, 999, n) if jitter_ms else 0, unit="ms")
        parts.append(pd.DataFrame({"coin": coin, "ts": t,
                                   "funding_rate": rng.normal(1.25e-5, 2e-5, n),
                                   "premium": rng.normal(0, 3e-4, n)}))
    return pd.concat(parts, ignore_index=True)


def write_dataset(folder: Path, candles_1h: pd.DataFrame | None = None,
                  funding_1h: pd.DataFrame | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if candles_1h is not None:
        candles_1h.to_parquet(folder / "candles_1h.parquet", index=False)
    if funding_1h is not None:
        funding_1h.to_parquet(folder / "funding_1h.parquet", index=False)
    return folder
