"""The `Market`: the one object every layer receives (DESIGN section 3).

Aligned (n_bars, n_coins) float64 arrays; prices are NaN where a coin is not listed (before
listing, after delisting, and inside gaps: gaps are never forward-filled into fake bars).
Open interest and the book imbalance come from recorded snapshots (harness.snapshots): NaN on
every bar without one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from harness.errors import DataError

INTERVALS = {"15m": 900, "1h": 3600, "4h": 14400, "1d": 86400}
ARRAY_FIELDS = ("open", "high", "low", "close", "volume", "funding", "premium", "open_interest",
                "book_imbalance")


def interval_seconds(interval: str) -> int:
    try:
        return INTERVALS[interval]
    except KeyError:
        raise DataError(
            f"unknown interval {interval!r}: use one of {', '.join(INTERVALS)}"
        ) from None


@dataclass(frozen=True, eq=False)
class Market:
    index: pd.DatetimeIndex  # UTC bar-open times
    coins: tuple[str, ...]
    interval: str
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    funding: np.ndarray  # per-hour rate, 0 where unknown
    premium: np.ndarray  # NaN where unknown
    open_interest: np.ndarray  # NaN where unknown
    listed: np.ndarray  # bool
    source: str = "unknown"
    synthetic: bool = False
    _fingerprint: list = field(default_factory=list, repr=False)
    # imbalance over 20 levels of the book recorded in the bar (harness.snapshots), in [-1, 1];
    # NaN where unknown (None: no book data at all)
    book_imbalance: np.ndarray | None = None

    def __post_init__(self) -> None:
        shape = (len(self.index), len(self.coins))
        if self.book_imbalance is None:
            object.__setattr__(self, "book_imbalance", np.full(shape, np.nan))
        for name in ARRAY_FIELDS + ("listed",):
            arr = getattr(self, name)
            if arr.shape != shape:
                raise DataError(f"Market.{name} has shape {arr.shape}, expected {shape}")

    @property
    def n_bars(self) -> int:
        return len(self.index)

    @property
    def n_coins(self) -> int:
        return len(self.coins)

    @property
    def bar_seconds(self) -> int:
        return interval_seconds(self.interval)

    @property
    def ts_ns(self) -> np.ndarray:
        """Bar-open times as int64 ns since the epoch (for numba kernels)."""
        return self.index.asi8.astype(np.int64) if self.index.unit == "ns" else (
            self.index.as_unit("ns").asi8.astype(np.int64)
        )

    @property
    def label(self) -> str:
        return f"SYNTHETIC ({self.source})" if self.synthetic else self.source

    @property
    def fingerprint(self) -> str:
        """Hash of the contents, recorded on every results row. A market without any book
        imbalance hashes as before the field existed, so earlier results stay comparable."""
        if not self._fingerprint:
            h = hashlib.sha256()
            h.update(self.interval.encode())
            h.update("|".join(self.coins).encode())
            h.update(self.ts_ns.tobytes())
            for name in ARRAY_FIELDS + ("listed",):
                arr = getattr(self, name)
                if name == "book_imbalance" and not np.isfinite(arr).any():
                    continue
                h.update(np.ascontiguousarray(arr).tobytes())
            self._fingerprint.append(h.hexdigest()[:16])
        return self._fingerprint[0]

    def coin_index(self, coin: str) -> int:
        try:
            return self.coins.index(coin)
        except ValueError:
            raise DataError(
                f"coin {coin!r} is not in this market ({self.n_coins} coins: "
                f"{', '.join(self.coins[:8])}{'...' if self.n_coins > 8 else ''})"
            ) from None

    def slice(self, start: int, stop: int) -> Market:
        """Bars [start, stop) by position."""
        sl = slice(start, stop)
        arrays = {name: getattr(self, name)[sl] for name in ARRAY_FIELDS + ("listed",)}
        return replace(self, index=self.index[sl], _fingerprint=[], **arrays)

    def select(self, coins: list[str] | tuple[str, ...]) -> Market:
        """A market with only these coins, in this order."""
        idx = [self.coin_index(c) for c in coins]
        arrays = {name: getattr(self, name)[:, idx] for name in ARRAY_FIELDS + ("listed",)}
        return replace(self, coins=tuple(coins), _fingerprint=[], **arrays)

    def until(self, ts: pd.Timestamp) -> Market:
        """Bars whose open time is at or before `ts`."""
        return self.slice(0, int(self.index.searchsorted(ts, side="right")))
