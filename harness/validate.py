"""Validation of raw candle and funding frames (DESIGN section 3).

Every problem is a DataError naming the file (`source`), the coin, the row (0-based position
in the frame as it was given) and what to do. Nothing is silently repaired in a way that
changes results: the only normalisations are lossless ones (timestamps to UTC nanoseconds,
integer prices to float64, rows grouped by coin) plus the two the data demands and documents:
funding timestamps floored to the hour, and 8-hourly funding spread over its hours.

Gaps (missing bars inside a coin's span) are not errors: they are reported per coin and later
become unlisted (NaN) bars, never forward-filled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.errors import DataError
from harness.market import INTERVALS

CANDLE_COLUMNS = ("coin", "ts", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")
FUNDING_COLUMNS = ("coin", "ts", "funding_rate", "premium")

NS = 1_000_000_000
HOUR_NS = 3600 * NS
# Hyperliquid recorded funding 8-hourly before this date, hourly since (HYPERLIQUID.md).
HOURLY_FUNDING_SINCE = pd.Timestamp("2023-06-08", tz="UTC")
FUNDING_CAP_PER_HOUR = 0.04  # Hyperliquid caps funding at 4% per hour


@dataclass(frozen=True)
class CoinGaps:
    """Bars missing inside one coin's span (first to last bar)."""

    coin: str
    bars: int
    first: pd.Timestamp
    last: pd.Timestamp
    missing: int  # bars absent between first and last
    runs: int  # separate gaps
    longest: int  # bars in the longest gap


@dataclass(frozen=True)
class CandleCheck:
    """A validated candle frame (sorted by coin, ts; ts as datetime64[ns, UTC]) and its gaps."""

    frame: pd.DataFrame
    interval: str
    gaps: tuple[CoinGaps, ...]


@dataclass(frozen=True)
class FundingCheck:
    """A validated per-hour funding frame (sorted by coin, ts; ts on the hour)."""

    frame: pd.DataFrame
    converted_8h: int  # 8-hourly records spread over their hours


def interval_of_seconds(seconds: int) -> str | None:
    for name, sec in INTERVALS.items():
        if sec == seconds:
            return name
    return None


def _fmt_ts(ns: int) -> str:
    return str(pd.Timestamp(int(ns), tz="UTC"))


def _more(n: int) -> str:
    return f" (and {n - 1} more row{'s' if n > 2 else ''})" if n > 1 else ""


def _require_columns(df: pd.DataFrame, required: tuple[str, ...], source: str, what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{source}: expected a pandas DataFrame of {what}, got {type(df).__name__}")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(
            f"{source}: missing column(s) {', '.join(missing)}; {what} need columns "
            f"{', '.join(required)} (found: {', '.join(map(str, df.columns)) or 'none'}): "
            "rename or add them"
        )


def _coins(df: pd.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes into the sorted unique coin names."""
    col = df["coin"]
    if not (pd.api.types.is_string_dtype(col.dtype)
            or pd.api.types.infer_dtype(col, skipna=True) in ("string", "empty")):
        raise DataError(
            f"{source}: column coin has type {col.dtype}; expected strings such as 'BTC': "
            "convert it with .astype(str)"
        )
    codes, names = pd.factorize(col, sort=True)
    bad = np.flatnonzero(codes < 0)
    if bad.size == 0:
        empty = [i for i, n in enumerate(names) if not str(n).strip()]
        if empty:
            bad = np.flatnonzero(np.isin(codes, empty))
    if bad.size:
        raise DataError(
            f"{source}: row {bad[0]}: coin is empty or null{_more(bad.size)}; every row needs "
            "a coin name: fill it in or drop the row"
        )
    return codes.astype(np.int64), np.asarray(names, dtype=object)


def _ts_ns(df: pd.DataFrame, source: str, name: str = "ts") -> np.ndarray:
    col = df[name]
    if not isinstance(col.dtype, pd.DatetimeTZDtype):
        if pd.api.types.is_datetime64_dtype(col.dtype):
            raise DataError(
                f"{source}: column {name} is timezone-naive ({col.dtype}); timestamps must be UTC: "
                "use .dt.tz_localize('UTC') if they already are UTC"
            )
        raise DataError(
            f"{source}: column {name} has type {col.dtype}; expected a UTC timestamp: convert "
            f"epoch milliseconds with pd.to_datetime({name}, unit='ms', utc=True)"
        )
    arr = col.array.tz_convert("UTC").as_unit("ns")
    if arr.isna().any():
        row = int(np.flatnonzero(arr.isna())[0])
        raise DataError(f"{source}: row {row}: {name} is missing; drop the row or fill in its time")
    return arr.asi8.astype(np.int64)


def _floats(df: pd.DataFrame, name: str, source: str) -> np.ndarray:
    col = df[name]
    if pd.api.types.is_bool_dtype(col.dtype) or not pd.api.types.is_numeric_dtype(col.dtype):
        raise DataError(
            f"{source}: column {name} has type {col.dtype}; expected float64 numbers: "
            "convert it with .astype(float)"
        )
    return col.to_numpy(dtype=np.float64, na_value=np.nan)


def _group_by_coin(codes: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Row order grouping coins together, keeping each coin's rows in their given order."""
    if codes.size < 2 or bool(np.all(codes[1:] >= codes[:-1])):
        return np.arange(codes.size)
    return np.argsort(codes, kind="stable")


def _check_order(codes: np.ndarray, ts: np.ndarray, order: np.ndarray, names: np.ndarray,
                 source: str, what: str) -> np.ndarray:
    """Per-coin timestamp steps (0 where a new coin starts); raises on unsorted/duplicate rows."""
    c, t = codes[order], ts[order]
    same = np.zeros(c.size, dtype=bool)
    same[1:] = c[1:] == c[:-1]
    step = np.zeros(c.size, dtype=np.int64)
    step[1:] = t[1:] - t[:-1]
    step[~same] = 0
    for cond, kind, fix in (
        (same & (step == 0), "duplicate", "keep one row per (coin, ts)"),
        (same & (step < 0), "out-of-order", "sort the rows by coin, ts"),
    ):
        bad = np.flatnonzero(cond)
        if bad.size:
            i = bad[0]
            raise DataError(
                f"{source}: coin {names[c[i]]!r}, row {order[i]}: {kind} timestamp {_fmt_ts(t[i])} "
                f"(after row {order[i - 1]} at {_fmt_ts(t[i - 1])}){_more(bad.size)}; {what} "
                f"must have strictly increasing ts per coin: {fix}"
            )
    return step


def _first_bad(mask: np.ndarray, order: np.ndarray | None = None) -> tuple[int, int] | None:
    bad = np.flatnonzero(mask)
    if bad.size == 0:
        return None
    return int(bad[0] if order is None else order[bad[0]]), int(bad.size)


def validate_candles(df: pd.DataFrame, source: str, interval: str | None = None) -> CandleCheck:
    """Check a raw candle frame; infer the interval from the bar spacing when not given."""
    _require_columns(df, CANDLE_COLUMNS, source, "candles")
    if len(df) == 0:
        raise DataError(f"{source}: no candles (0 rows); point at a file or folder that holds data")
    if interval is not None and interval not in INTERVALS:
        raise DataError(f"unknown interval {interval!r}: use one of {', '.join(INTERVALS)}")
    codes, names = _coins(df, source)
    ts = _ts_ns(df, source)
    values = {name: _floats(df, name, source) for name in CANDLE_COLUMNS[2:]}

    o, h, lo, c, v = (values[k] for k in ("open", "high", "low", "close", "volume"))
    prices = np.column_stack([o, h, lo, c])
    checks = (
        (~np.isfinite(prices).all(axis=1), "a NaN or infinite price",
         "drop the bar or fill it from the source"),
        ((prices <= 0).any(axis=1), "a non-positive price", "prices must be > 0: drop the bar"),
        (h < np.maximum(o, c), "high below max(open, close)",
         "fix the bar at the source or drop it"),
        (lo > np.minimum(o, c), "low above min(open, close)",
         "fix the bar at the source or drop it"),
        (~np.isfinite(v) | (v < 0), "a NaN, infinite or negative volume",
         "volume must be a finite number >= 0: fix or drop it"),
    )
    for mask, what, fix in checks:
        hit = _first_bad(mask)
        if hit:
            row, n = hit
            bar = ", ".join(f"{k}={values[k][row]:g}" for k in CANDLE_COLUMNS[2:])
            raise DataError(
                f"{source}: coin {names[codes[row]]!r}, row {row} ({_fmt_ts(ts[row])}): "
                f"{what} ({bar}){_more(n)}; {fix}"
            )

    order = _group_by_coin(codes, ts)
    step = _check_order(codes, ts, order, names, source, "candles")
    gaps_ns = step[step > 0]
    if interval is None:
        if gaps_ns.size == 0:
            raise DataError(
                f"{source}: cannot infer the bar interval (no coin has two bars); pass the "
                f"interval explicitly ({', '.join(INTERVALS)})"
            )
        vals, counts = np.unique(gaps_ns, return_counts=True)
        mode_s = int(vals[np.argmax(counts)] // NS)
        interval = interval_of_seconds(mode_s)
        if interval is None:
            raise DataError(
                f"{source}: bars are mostly {mode_s} s apart, not a supported interval "
                f"({', '.join(INTERVALS)}); resample the file to one of them"
            )
    step_ns = INTERVALS[interval] * NS
    if gaps_ns.size:
        vals, counts = np.unique(gaps_ns, return_counts=True)
        mode = int(vals[np.argmax(counts)])
        if mode != step_ns:
            found = interval_of_seconds(mode // NS) or f"{mode // NS} s"
            raise DataError(
                f"{source}: bars are mostly {found} apart but the interval is {interval}; "
                f"load it as {found} or point at the {interval} file"
            )
    off_grid = _first_bad(ts % step_ns != 0)
    uneven = _first_bad((step % step_ns) != 0, order)
    for hit, what in ((off_grid, "is not on the"), (uneven, "is off the")):
        if hit:
            row, n = hit
            raise DataError(
                f"{source}: coin {names[codes[row]]!r}, row {row}: bar at {_fmt_ts(ts[row])} "
                f"{what} {interval} grid{_more(n)}; the file mixes intervals: keep one interval "
                "per file (and bar open times on the interval's UTC grid)"
            )

    frame = pd.DataFrame({
        "coin": pd.array(names[codes[order]], dtype="str"),
        "ts": pd.DatetimeIndex(ts[order].view("datetime64[ns]"), tz="UTC"),
        **{k: values[k][order] for k in CANDLE_COLUMNS[2:]},
    })
    return CandleCheck(frame=frame, interval=interval,
                       gaps=_gaps(codes[order], ts[order], step, step_ns, names))


def _gaps(codes: np.ndarray, ts: np.ndarray, step: np.ndarray, step_ns: int,
          names: np.ndarray) -> tuple[CoinGaps, ...]:
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    ends = np.r_[starts[1:], codes.size]
    missing = np.maximum(step // step_ns - 1, 0)
    out = []
    for s, e in zip(starts, ends, strict=True):
        m = missing[s:e]
        out.append(CoinGaps(
            coin=str(names[codes[s]]), bars=int(e - s),
            first=pd.Timestamp(int(ts[s]), tz="UTC"), last=pd.Timestamp(int(ts[e - 1]), tz="UTC"),
            missing=int(m.sum()), runs=int((m > 0).sum()), longest=int(m.max(initial=0)),
        ))
    return tuple(out)


def validate_funding(df: pd.DataFrame, source: str) -> FundingCheck:
    """Check a raw funding frame and return per-hour rates on the hour.

    Timestamps carry millisecond jitter and are floored to the hour. Hyperliquid's
    `fundingRate` is per hour and is never divided by 8, except for the 8-hourly records of
    a coin before 2023-06-08: such a record at time T paid for the 8 hours ending at T, so it
    becomes 8 hourly records at T-7h ... T, each with rate/8 (the premium stays on T only, the
    other 7 hours get NaN: it was not observed then). A coin's early records count as
    8-hourly when the usual spacing between them is 8 hours.
    `premium` is optional (NaN when absent).
    """
    _require_columns(df, FUNDING_COLUMNS[:3], source, "funding")
    codes, names = _coins(df, source) if len(df) else (np.zeros(0, np.int64), np.zeros(0, object))
    ts = _ts_ns(df, source) if len(df) else np.zeros(0, np.int64)
    rate = _floats(df, "funding_rate", source)
    premium = _floats(df, "premium", source) if "premium" in df.columns else np.full(len(df), np.nan)
    hit = _first_bad(~np.isfinite(rate))
    if hit:
        row, n = hit
        raise DataError(
            f"{source}: coin {names[codes[row]]!r}, row {row}: funding_rate is NaN or infinite{_more(n)}; "
            "drop the row (unknown funding is treated as 0)"
        )
    ts = ts - ts % HOUR_NS
    order = _group_by_coin(codes, ts)
    step = _check_order(codes, ts, order, names, source, "funding (floored to the hour)")
    codes, ts, rate, premium = codes[order], ts[order], rate[order], premium[order]

    ts, codes, rate, premium, converted = _spread_8h(codes, ts, rate, premium, step, names, source)
    hit = _first_bad(np.abs(rate) > FUNDING_CAP_PER_HOUR)
    if hit:
        row, n = hit
        raise DataError(
            f"{source}: coin {names[codes[row]]!r} at {_fmt_ts(ts[row])}: funding_rate "
            f"{rate[row]:g} is beyond Hyperliquid's 4%/hour cap{_more(n)}; rates must be "
            "fractions per hour (0.0001 = 0.01%), not percent"
        )
    frame = pd.DataFrame({
        "coin": pd.array(names[codes], dtype="str"),
        "ts": pd.DatetimeIndex(ts.view("datetime64[ns]"), tz="UTC"),
        "funding_rate": rate,
        "premium": premium,
    })
    return FundingCheck(frame=frame, converted_8h=converted)


def _spread_8h(codes, ts, rate, premium, step, names, source):
    cutoff = HOURLY_FUNDING_SINCE.value
    early = ts < cutoff
    if not early.any():
        return ts, codes, rate, premium, 0
    eight = np.zeros(ts.size, dtype=bool)
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    ends = np.r_[starts[1:], codes.size]
    for s, e in zip(starts, ends, strict=True):
        pre = np.flatnonzero(early[s:e]) + s
        if pre.size == 0:
            continue
        spacing = step[pre[0] + 1: min(pre[-1] + 2, e)]  # steps after each early record
        if spacing.size == 0:
            continue
        vals, counts = np.unique(spacing, return_counts=True)
        if vals[np.argmax(counts)] == 8 * HOUR_NS:
            eight[pre] = True
    n8 = int(eight.sum())
    if n8 == 0:
        return ts, codes, rate, premium, 0
    offsets = np.arange(-7, 1, dtype=np.int64) * HOUR_NS
    ts_new = np.concatenate([ts[~eight], (ts[eight, None] + offsets).ravel()])
    codes_new = np.concatenate([codes[~eight], np.repeat(codes[eight], 8)])
    rate_new = np.concatenate([rate[~eight], np.repeat(rate[eight] / 8.0, 8)])
    prem8 = np.full((n8, 8), np.nan)
    prem8[:, -1] = premium[eight]
    prem_new = np.concatenate([premium[~eight], prem8.ravel()])
    order = np.lexsort((ts_new, codes_new))
    ts_new, codes_new = ts_new[order], codes_new[order]
    dup = np.flatnonzero((codes_new[1:] == codes_new[:-1]) & (ts_new[1:] == ts_new[:-1]))
    if dup.size:
        i = dup[0]
        raise DataError(
            f"{source}: coin {names[codes_new[i]]!r}: the 8-hourly funding record covering "
            f"{_fmt_ts(ts_new[i])} overlaps an hourly record{_more(dup.size)}; keep either the "
            "8-hourly or the hourly records for that period, not both"
        )
    return ts_new, codes_new, rate_new[order], prem_new[order], n8
