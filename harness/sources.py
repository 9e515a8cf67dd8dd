"""One function builds the Market from any source: `load_market`.

Sources (`data`):
- None: the store at `store` when it holds candles for the interval (or 1h candles to build
  4h/1d from), else the embedded synthetic default;
- "embedded": the embedded synthetic default (harness.synthetic);
- a dataset folder laid out like ../shared/data/hyperliquid (candles_<interval>.parquet,
  funding_1h.parquet);
- a store root (it has a `hyperliquid/` folder of partitions), or that `hyperliquid/` folder;
- a single parquet file of candles (coin, ts, open, high, low, close, volume).

Every source is validated (harness.validate, harness.snapshots) before the Market is built; 4h
and 1d are built causally from 1h (harness.resample) when no native file exists for them. Open
interest and book imbalance come from the store's recorded snapshots (`data sync --contexts`);
other sources have none (NaN).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from harness import store as st
from harness import synthetic
from harness.errors import DataError
from harness.market import INTERVALS, Market
from harness.resample import resample
from harness.snapshots import (
    book_snapshots,
    empty_asset_ctxs,
    empty_books,
    validate_asset_ctxs,
    validate_books,
)
from harness.validate import NS, CoinGaps, validate_candles, validate_funding

RESAMPLE_FROM_1H = ("4h", "1d")
DEFAULT_INTERVAL = "1h"


@dataclass(frozen=True)
class Frames:
    """Validated candles and per-hour funding of one source, before alignment."""

    candles: pd.DataFrame
    funding: pd.DataFrame  # may be empty
    interval: str  # of `candles`; may be lower than `target` (then resample)
    target: str  # the interval the caller gets
    source: str
    synthetic: bool
    gaps: tuple[CoinGaps, ...]
    contexts: pd.DataFrame = field(default_factory=empty_asset_ctxs)  # asset_ctxs_1h rows
    books: pd.DataFrame = field(default_factory=lambda: book_snapshots(empty_books()))  # one
    # row per book snapshot


@dataclass(frozen=True)
class _Located:
    kind: str  # "embedded" | "store" | "dataset" | "file"
    path: Path | None


def _locate(data: str | Path | None, interval: str | None, store: str | Path) -> _Located:
    if data is None:
        wanted = interval or DEFAULT_INTERVAL
        have = st.stored_intervals(store)
        if wanted in have or (wanted in RESAMPLE_FROM_1H and "1h" in have):
            return _Located("store", Path(store))
        return _Located("embedded", None)
    if isinstance(data, str) and data == "embedded":
        return _Located("embedded", None)
    path = Path(data)
    if path.is_file():
        return _Located("file", path)
    if path.is_dir():
        if (path / "hyperliquid").is_dir():
            return _Located("store", path)
        if any((path / f"candles_{iv}").is_dir() for iv in INTERVALS):
            return _Located("store", path.parent)
        if st.dataset_files(path):
            return _Located("dataset", path)
        raise DataError(
            f"{path}: no market data here; expected a dataset folder (candles_<interval>.parquet, "
            "funding_1h.parquet), a store root (with hyperliquid/), or a candles parquet file"
        )
    raise DataError(f"{path}: no such file or folder; pass a dataset folder, a store root, a "
                    "candles parquet file, or 'embedded'")


def _unknown_coins(wanted: list[str], known: list[str], where: str) -> None:
    missing = [c for c in wanted if c not in set(known)]
    if missing:
        hint = difflib.get_close_matches(missing[0], known, n=3)
        few = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
        raise DataError(
            f"unknown coin {missing[0]!r} in {where}"
            + (f" (did you mean {', '.join(hint)}?)" if hint else "")
            + f"; it has {len(known)} coins: {few}"
        )


def _read_file(path: Path, coins: list[str] | None, columns_hint: str) -> pd.DataFrame:
    """A parquet file, filtered to `coins` before conversion (fast on big files)."""
    table = st.read_arrow(path)
    if coins is not None:
        if "coin" not in table.column_names:
            raise DataError(f"{path}: missing column coin; {columns_hint}")
        known = sorted(str(c) for c in pc.unique(table.column("coin")).to_pylist() if c)
        _unknown_coins(coins, known, str(path))
        table = table.filter(pc.is_in(table.column("coin"), value_set=pa.array(coins)))
    return table.to_pandas()


def load_frames(data: str | Path | None = None, interval: str | None = None,
                coins: list[str] | None = None, store: str | Path = "data") -> Frames:
    """Validated frames of a source; `interval=None` means 1h, or the file's own for a file."""
    if interval is not None and interval not in INTERVALS:
        raise DataError(f"unknown interval {interval!r}: use one of {', '.join(INTERVALS)}")
    coins = list(dict.fromkeys(coins)) if coins else None
    loc = _locate(data, interval, store)
    wanted = interval or DEFAULT_INTERVAL
    funding_raw = None
    snaps = {}
    hint = "candles need columns coin, ts, open, high, low, close, volume"

    if loc.kind == "embedded":
        if wanted not in ("1h",) + RESAMPLE_FROM_1H:
            raise DataError(f"the embedded default is hourly; it cannot give {wanted} bars "
                            "(use 1h, 4h or 1d)")
        candles_raw, funding_raw = synthetic.embedded_frames(store)
        if coins is not None:
            _unknown_coins(coins, sorted(candles_raw["coin"].unique()), "the embedded default")
            candles_raw = candles_raw[candles_raw["coin"].isin(coins)]
            funding_raw = funding_raw[funding_raw["coin"].isin(coins)]
        native, source = "1h", synthetic.source_label(synthetic.DEFAULT_SEED)
        candles_name = funding_name = source
    elif loc.kind == "store":
        have = st.stored_intervals(loc.path)
        native = wanted if wanted in have else ("1h" if wanted in RESAMPLE_FROM_1H and "1h" in have
                                                else None)
        if native is None:
            raise DataError(f"store {loc.path} has no {wanted} candles (it has: "
                            f"{', '.join(have) or 'nothing'}); run `python -m sweep data sync "
                            f"--interval {wanted}` or `data import` first")
        if coins is not None:
            _unknown_coins(coins, st.stored_coins(loc.path, st.candles_table(native)),
                           f"store {loc.path} ({native})")
        candles_raw = st.read_candles(loc.path, native, coins)
        funding_raw = st.read_funding(loc.path, coins)
        snaps = {"contexts": _contexts(loc.path, coins), "books": book_snapshots(validate_books(
            st.read_books(loc.path, coins), str(st.table_dir(loc.path, st.BOOK_TABLE))))}
        source = f"store {loc.path}"
        candles_name = str(st.table_dir(loc.path, st.candles_table(native)))
        funding_name = str(st.table_dir(loc.path, st.FUNDING_TABLE))
    elif loc.kind == "dataset":
        files = st.dataset_files(loc.path)
        name = f"candles_{wanted}"
        if name in files:
            native = wanted
        elif wanted in RESAMPLE_FROM_1H and "candles_1h" in files:
            native = "1h"
        else:
            raise DataError(f"{loc.path}: no {name}.parquet (it has: {', '.join(files)}); "
                            "pick an interval it holds")
        candles_name = str(files[f"candles_{native}"])
        candles_raw = _read_file(files[f"candles_{native}"], coins, hint)
        funding_name = str(files.get(st.FUNDING_TABLE))
        if st.FUNDING_TABLE in files:
            funding_raw = _read_file(files[st.FUNDING_TABLE], coins,
                                     "funding needs columns coin, ts, funding_rate, premium")
        source = f"dataset {loc.path}"
    else:
        candles_raw = _read_file(loc.path, coins, hint)
        native, source = None, f"file {loc.path}"  # its interval is inferred from the bars
        candles_name = funding_name = str(loc.path)

    check = validate_candles(candles_raw, candles_name, native)
    if interval is None and loc.kind == "file":
        wanted = check.interval
    if INTERVALS[wanted] < INTERVALS[check.interval] or INTERVALS[wanted] % INTERVALS[check.interval]:
        raise DataError(f"{source} holds {check.interval} bars; it cannot give {wanted} bars "
                        f"(ask for {check.interval} or a whole multiple of it)")
    funding = (validate_funding(funding_raw, funding_name).frame
               if funding_raw is not None and len(funding_raw) else
               st.FUNDING_SCHEMA.empty_table().to_pandas())
    return Frames(candles=check.frame, funding=funding, interval=check.interval, target=wanted,
                  source=source, synthetic=loc.kind == "embedded", gaps=check.gaps, **snaps)


def _contexts(store: Path, coins: list[str] | None) -> pd.DataFrame:
    return validate_asset_ctxs(st.read_asset_ctxs(store, coins),
                               str(st.table_dir(store, st.CTX_TABLE)))


def load_contexts(data: str | Path | None = None, interval: str | None = None,
                  coins: list[str] | None = None, store: str | Path = "data") -> pd.DataFrame:
    """The validated asset contexts of the source `load_market` would read (a store records
    them; other sources have none: an empty frame)."""
    loc = _locate(data, interval, store)
    return _contexts(loc.path, coins) if loc.kind == "store" else empty_asset_ctxs()


def _snapshot_grid(frame: pd.DataFrame, column: str, names: pd.Index, t0: int, step: int,
                   n: int) -> np.ndarray:
    """(n, k) values of a snapshot column, each on the bar with open < time <= close (the
    last snapshot in the bar when there are several); NaN elsewhere."""
    k = len(names)
    out = np.full(n * k, np.nan)
    if len(frame):
        col = names.get_indexer(frame["coin"])
        row = (frame["time"].array.as_unit("ns").asi8 - t0 - 1) // step  # open < time <= close
        ok = (col >= 0) & (row >= 0) & (row < n)
        flat = row[ok] * k + col[ok]
        last = np.r_[flat[1:] != flat[:-1], True][:flat.size]  # rows sorted by coin, time
        out[flat[last]] = frame[column].to_numpy(np.float64)[ok][last]
    return out.reshape(n, k)


def build_market(candles: pd.DataFrame, funding: pd.DataFrame, interval: str, source: str,
                 synthetic: bool = False, contexts: pd.DataFrame | None = None,
                 books: pd.DataFrame | None = None) -> Market:
    """Align validated frames on the union UTC index at the interval step.

    Prices are NaN and `listed` False where a coin has no bar. A funding record stamped H pays
    for the hour that ends at H, so it belongs to the bar whose open < H <= close: 1h bars carry
    the record stamped at their close, 4h and 1d bars the sum of the hourly records in
    (open, close], and only the 15m bar closing on the hour carries one; 0 where unknown (the
    kernel charges funding[t] at the close of t; a strategy deciding at that close knows it).
    Premium is the last record's in the bar, NaN where unknown. Open interest (`contexts`,
    validated asset_ctxs_1h rows) and book imbalance over 20 levels (`books`, one row per
    snapshot: harness.snapshots.book_snapshots) follow the same rule on each snapshot's time:
    a snapshot taken at H belongs to the bar with open < H <= close, so the first decision that
    can see it is that bar's close; NaN on bars without one (no history before recording).
    """
    step = INTERVALS[interval] * NS
    codes, names = pd.factorize(candles["coin"], sort=True)
    coins = tuple(str(c) for c in names)
    ts = candles["ts"].array.as_unit("ns").asi8
    t0 = int(ts.min())
    n, k = int((ts.max() - t0) // step) + 1, len(coins)
    flat = (ts - t0) // step * k + codes

    def grid(values: np.ndarray) -> np.ndarray:
        out = np.full(n * k, np.nan)
        out[flat] = values
        return out.reshape(n, k)

    arrays = {c: grid(candles[c].to_numpy(np.float64)) for c in ("open", "high", "low", "close",
                                                              "volume")}
    listed = np.zeros(n * k, dtype=bool)
    listed[flat] = True
    fund = np.zeros(n * k)
    prem = np.full(n * k, np.nan)
    if len(funding):
        fcol = pd.Index(names).get_indexer(funding["coin"])
        frow = (funding["ts"].array.as_unit("ns").asi8 - t0 - 1) // step  # open < H <= close
        ok = (fcol >= 0) & (frow >= 0) & (frow < n)
        fflat = frow[ok] * k + fcol[ok]
        fund = np.bincount(fflat, weights=funding["funding_rate"].to_numpy(np.float64)[ok],
                           minlength=n * k)
        last = np.r_[fflat[1:] != fflat[:-1], True]  # rows are sorted by coin, ts
        prem[fflat[last]] = funding["premium"].to_numpy(np.float64)[ok][last]
    index = pd.DatetimeIndex((t0 + np.arange(n, dtype=np.int64) * step).view("datetime64[ns]"),
                             tz="UTC")
    names = pd.Index(names)
    oi = _snapshot_grid(contexts if contexts is not None else empty_asset_ctxs(),
                        "open_interest", names, t0, step, n)
    obi = (_snapshot_grid(books, "imbalance_20", names, t0, step, n) if books is not None
           else np.full((n, k), np.nan))
    return Market(index=index, coins=coins, interval=interval, **arrays,
                  funding=fund.reshape(n, k), premium=prem.reshape(n, k),
                  open_interest=oi, listed=listed.reshape(n, k),
                  source=source, synthetic=synthetic, book_imbalance=obi)


def _ts(value, name: str) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        t = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise DataError(f"{name}={value!r} is not a date; use e.g. 2024-09-01 or "
                        "2024-09-01T12:00Z") from None
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _window(market: Market, start, end, requested: list[str] | None) -> Market:
    """Bars opening in [start, end), trimmed to the listed span; empty coins dropped."""
    t_start, t_end = _ts(start, "start"), _ts(end, "end")
    lo = 0 if t_start is None else int(market.index.searchsorted(t_start, side="left"))
    hi = market.n_bars if t_end is None else int(market.index.searchsorted(t_end, side="left"))
    if (lo, hi) != (0, market.n_bars):
        market = market.slice(lo, max(lo, hi))
    any_listed = market.listed.any(axis=1)
    if not any_listed.any():
        raise DataError(f"{market.label}: no bars between {t_start or 'the start'} and "
                        f"{t_end or 'the end'}; widen the window")
    rows = np.flatnonzero(any_listed)
    if (rows[0], rows[-1] + 1) != (0, market.n_bars):
        market = market.slice(int(rows[0]), int(rows[-1]) + 1)
    empty = [c for c, has in zip(market.coins, market.listed.any(axis=0), strict=True) if not has]
    if empty:
        if requested:
            raise DataError(f"coin {empty[0]!r} has no {market.interval} bars between "
                            f"{market.index[0]} and {market.index[-1]} in {market.label}; "
                            "widen the window or drop the coin")
        market = market.select([c for c in market.coins if c not in set(empty)])
    return market


def load_market(data: str | Path | None = None, interval: str | None = None,
                coins: list[str] | None = None, start=None, end=None,
                store: str | Path = "data") -> Market:
    """The aligned Market of a source (see the module doc), validated.

    interval: "15m", "1h", "4h" or "1d"; None means 1h, except for a single file where it is
    the file's own. coins: a subset (in this order) or None for all. start/end: keep bars
    opening in [start, end) (UTC; dates or timestamps). 4h/1d come from a native file when the
    source has one, else they are built from 1h: a higher bar only once all its hours closed.
    """
    frames = load_frames(data, interval, coins, store)
    market = build_market(frames.candles, frames.funding, frames.interval, frames.source,
                          frames.synthetic, frames.contexts, frames.books)
    if frames.target != frames.interval:
        market = resample(market, frames.target)
    market = _window(market, start, end, coins)
    if coins:
        market = market.select(list(dict.fromkeys(coins)))
    return market
