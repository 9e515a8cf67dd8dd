"""The trailing Market the executor works on: every candle it has processed, warm-up included.

Rows are aligned by harness.sources.build_market (the one home of how candles and funding
records map onto bars), then written into a growing grid on a fixed coin list and a fixed first
bar, so bar indices (and setup keys) never shift as the window grows and each new candle costs
one row, not a rebuild.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.market import ARRAY_FIELDS, Market, interval_seconds
from harness.sources import build_market

CANDLE_COLS = ("coin", "ts", "open", "high", "low", "close", "volume")
FUNDING_COLS = ("coin", "ts", "funding_rate", "premium")
NAN_FIELDS = tuple(f for f in ARRAY_FIELDS if f != "funding")  # NaN where unknown


def _empty(cols: tuple[str, ...]) -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
    df["coin"] = df["coin"].astype(object)
    df["ts"] = pd.DatetimeIndex([], tz="UTC").as_unit("ns")
    return df


def empty_candles() -> pd.DataFrame:
    return _empty(CANDLE_COLS)


def empty_funding() -> pd.DataFrame:
    return _empty(FUNDING_COLS)


def _grid(shape: tuple[int, int]) -> dict[str, np.ndarray]:
    arrays = {name: np.full(shape, np.nan) for name in NAN_FIELDS}
    arrays["funding"] = np.zeros(shape)
    arrays["listed"] = np.zeros(shape, dtype=bool)
    return arrays


def _ns(ts: pd.Series) -> np.ndarray:
    return pd.DatetimeIndex(ts).as_unit("ns").asi8


def _paste(arrays: dict[str, np.ndarray], market: Market, coins: tuple[str, ...], start_ns: int,
           step: int) -> None:
    n_bars = arrays["listed"].shape[0]
    if not market.n_bars:
        return
    rows = (market.ts_ns - start_ns) // step
    keep = (rows >= 0) & (rows < n_bars)
    src = [i for i, c in enumerate(market.coins) if c in coins]
    dst = [coins.index(market.coins[i]) for i in src]
    r_src, r_dst = np.flatnonzero(keep), rows[keep]
    for name in ARRAY_FIELDS + ("listed",):
        arrays[name][np.ix_(r_dst, dst)] = getattr(market, name)[np.ix_(r_src, src)]


def market_rows(market: Market, t: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Candle and funding rows of bar t of a Market (what build_market makes bar t from)."""
    listed = np.flatnonzero(market.listed[t])
    ts = market.ts_ns[t]
    coins = np.array(market.coins, dtype=object)

    def stamps(n: int) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(np.full(n, ts, dtype=np.int64).view("datetime64[ns]"), tz="UTC")

    candles = pd.DataFrame({
        "coin": coins[listed], "ts": stamps(len(listed)),
        **{c: getattr(market, c)[t, listed] for c in CANDLE_COLS[2:]},
    })
    has = np.flatnonzero((market.funding[t] != 0) | np.isfinite(market.premium[t]))
    funding = pd.DataFrame({  # stamped at the bar's close: a record pays the hour ending there
        "coin": coins[has], "ts": stamps(len(has)) + pd.Timedelta(seconds=market.bar_seconds),
        "funding_rate": market.funding[t, has], "premium": market.premium[t, has],
    })
    return candles, funding


class Window:
    """The grid of every processed bar; `market(n)` is a Market of its first n bars."""

    def __init__(self, interval: str, coins: tuple[str, ...], start: pd.Timestamp, source: str,
                 synthetic: bool = False) -> None:
        self.interval, self.coins, self.start = interval, tuple(coins), pd.Timestamp(start)
        self.source, self.synthetic = source, synthetic
        self.step = interval_seconds(interval) * 1_000_000_000
        self._start_ns = self.start.as_unit("ns").value
        self._arrays = _grid((256, len(self.coins)))

    def _reserve(self, n: int) -> None:
        have = self._arrays["listed"].shape[0]
        if n > have:
            bigger = _grid((max(n, 2 * have), len(self.coins)))
            for name, arr in self._arrays.items():
                bigger[name][:have] = arr
            self._arrays = bigger

    def add(self, candles: pd.DataFrame, funding: pd.DataFrame, bar: pd.Timestamp | None = None) -> None:
        """Rows of one bar (`bar`) or of many (bar None: each row's own bar).

        build_market keeps funding only for coins it has candles of, and only on bars between
        its first and last candle, so every coin gets a placeholder candle one bar before the
        first and one after the last; those two rows are dropped. A coin without a candle at a
        bar keeps its funding there, as when the whole history is built at once.
        """
        if not len(candles) and not len(funding):
            return
        step = pd.Timedelta(self.step)
        # the bar of a funding record stamped H is the one with open < H <= close
        stamps = [x for x in (candles["ts"], funding["ts"] - pd.Timedelta(1)) if len(x)]
        first = pd.Timestamp(bar if bar is not None else min(x.min() for x in stamps)).floor(step)
        last = pd.Timestamp(bar if bar is not None else max(x.max() for x in stamps)).floor(step)
        n = len(self.coins)
        ends = np.r_[np.full(n, (first - step).value), np.full(n, (last + step).value)].astype(np.int64)
        c = pd.DataFrame({
            "coin": np.r_[np.array(self.coins * 2, dtype=object), candles["coin"].to_numpy(dtype=object)],
            "ts": pd.DatetimeIndex(np.r_[ends, _ns(candles["ts"])].view("datetime64[ns]"), tz="UTC"),
            **{k: np.r_[np.full(2 * n, 0.0 if k == "volume" else 1.0), candles[k].to_numpy(np.float64)]
               for k in CANDLE_COLS[2:]},
        })
        f = funding.loc[:, list(FUNDING_COLS)]
        if len(f) > 1:
            order = np.lexsort((_ns(f["ts"]), f["coin"].to_numpy(dtype=object).astype(str)))
            if (order != np.arange(len(f))).any():
                f = f.iloc[order].reset_index(drop=True)
        m = build_market(c, f, self.interval, self.source, self.synthetic)
        m = m.slice(1, m.n_bars - 1)
        self._reserve(int((m.ts_ns[-1] - self._start_ns) // self.step) + 1)
        _paste(self._arrays, m, self.coins, self._start_ns, self.step)

    def market(self, n_bars: int) -> Market:
        """Bars [start, start + n_bars * interval) on `coins` (a copy: Markets are immutable)."""
        self._reserve(n_bars)
        index = pd.DatetimeIndex((self._start_ns + np.arange(n_bars, dtype=np.int64) * self.step)
                                 .view("datetime64[ns]"), tz="UTC")
        arrays = {name: arr[:n_bars].copy() for name, arr in self._arrays.items()}
        return Market(index=index, coins=self.coins, interval=self.interval, source=self.source,
                      synthetic=self.synthetic, **arrays)
