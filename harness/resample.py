"""Higher-interval bars built causally from lower ones, and mapped back without look-ahead.

A higher bar (4h, 1d) exists only once every one of its base bars has closed: the trailing
incomplete bucket is dropped, and so is a leading bucket the market does not fully cover.
A bucket in which a coin misses any base bar is unlisted (NaN) for that coin: its open, high,
low or volume would be wrong, and gaps are never filled with invented bars.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from harness.errors import DataError
from harness.market import Market, interval_seconds

NS = 1_000_000_000


def resample(market: Market, interval: str) -> Market:
    """Bars of `interval` (a whole multiple of the market's) from complete buckets only.

    open = first, high = max, low = min, close = last, volume = sum, funding = sum of the
    per-bar rates (so a 4h bar carries the 4 hourly payments), premium = the last base bar's
    value; open interest and book imbalance = the last recorded snapshot's in the bucket (NaN
    when none was). A market too short to hold one complete bucket gives 0 bars.
    """
    base_s, target_s = market.bar_seconds, interval_seconds(interval)
    if target_s == base_s:
        return market
    if target_s < base_s or target_s % base_s:
        raise DataError(
            f"cannot build {interval} bars from {market.interval} bars; resample only to a whole "
            f"multiple of the market's interval (load the data at a lower interval)"
        )
    k = target_s // base_s
    ts = market.ts_ns
    base_ns, target_ns = base_s * NS, target_s * NS
    if ts.size > 1 and np.any(np.diff(ts) != base_ns):
        raise DataError(f"{market.source}: the bar index is not regular at {market.interval}; "
                        "build the market with harness.sources.load_market")
    if ts.size:
        first = -(-int(ts[0]) // target_ns) * target_ns  # first bucket start fully inside
        i0 = (first - int(ts[0])) // base_ns
        m = max((ts.size - i0) // k, 0)
    else:
        first, i0, m = 0, 0, 0
    rows = slice(i0, i0 + m * k)
    n_coins = market.n_coins

    def buckets(a: np.ndarray) -> np.ndarray:
        return a[rows].reshape(m, k, n_coins)

    listed = buckets(market.listed).all(axis=1)
    out = {
        "open": buckets(market.open)[:, 0],
        "high": buckets(market.high).max(axis=1),
        "low": buckets(market.low).min(axis=1),
        "close": buckets(market.close)[:, -1],
        "volume": buckets(market.volume).sum(axis=1),
    }
    for name in out:
        out[name] = np.where(listed, out[name], np.nan)
    out["funding"] = buckets(market.funding).sum(axis=1)
    out["premium"] = buckets(market.premium)[:, -1].copy()
    for name in ("open_interest", "book_imbalance"):
        out[name] = _last_known(buckets(getattr(market, name)))
    index = pd.DatetimeIndex(
        (first + np.arange(m, dtype=np.int64) * target_ns).view("datetime64[ns]"), tz="UTC")
    return replace(market, index=index, interval=interval, listed=listed,
                   source=f"{market.source}, {interval} from {market.interval}",
                   _fingerprint=[], **out)


def _last_known(b: np.ndarray) -> np.ndarray:
    """(m, k, n_coins) -> (m, n_coins): the last non-NaN value along axis 1, NaN when none."""
    known = np.isfinite(b)
    last = b.shape[1] - 1 - np.argmax(known[:, ::-1], axis=1)
    out = np.take_along_axis(b, last[:, None], axis=1)[:, 0]
    return np.where(known.any(axis=1), out, np.nan)


def align_to_base(higher_values: np.ndarray, higher_market: Market, base_market: Market,
                  fill: float | int | bool = np.nan) -> np.ndarray:
    """Map (n_higher, ...) values onto the base bars without look-ahead.

    Base bar t gets the value of the latest higher bar that CLOSED at or before the close of
    bar t (a 4h bar opening at 00:00 closes at 04:00, so it first shows on the 1h bar opening
    at 03:00, whose close is 04:00); `fill` before the first such bar.
    """
    values = np.asarray(higher_values)
    if values.shape[:1] != (higher_market.n_bars,):
        raise DataError(f"align_to_base: values have {values.shape[:1]} rows but the higher "
                        f"market has {higher_market.n_bars} bars; pass values computed on it")
    if values.ndim == 2 and higher_market.coins != base_market.coins:
        raise DataError("align_to_base: the higher and base markets have different coins; "
                        "resample the base market itself")
    higher_close = higher_market.ts_ns + higher_market.bar_seconds * NS
    base_close = base_market.ts_ns + base_market.bar_seconds * NS
    j = np.searchsorted(higher_close, base_close, side="right") - 1
    dtype = np.result_type(values.dtype, np.asarray(fill).dtype)
    out = np.full((base_market.n_bars,) + values.shape[1:], fill, dtype=dtype)
    seen = j >= 0
    out[seen] = values[j[seen]]
    return out
