"""What Hyperliquid keeps no history of, recorded from now on: asset contexts and L2 books.

Two store tables (harness.store), written by `python -m sweep data sync --contexts` and by the
paper executor:
- `asset_ctxs_1h`: one `metaAndAssetCtxs` snapshot per coin and hour: open interest (in coins,
  as Hyperliquid reports it), mark, oracle and mid prices, premium, funding (per hour), day
  notional volume, impact bid and ask prices (the average fill of a market order of the impact
  notional, harness.costs.impact_notional);
- `books`: one `l2Book` snapshot per coin and hour, a row per level (1 = best, at most 20 a
  side): price and size (in coins), with the imbalance over 5 and 20 levels on every row.

Time: `time` is when the snapshot was taken (contexts: the recorder's clock when the answer
arrived, the API gives none; books: the book's own `time`); `ts` is `time` floored to the hour,
the key: one snapshot per coin and hour, the first recorded wins (like every store row). A
snapshot belongs to the bar with open < time <= close, the convention of funding records
(harness.sources.build_market): it is known at that bar's close, where a strategy deciding may
use it, and no earlier bar sees it.

Imbalance over the first n levels: rho_n = (bid size - ask size) / (bid size + ask size), sizes
summed over levels 1..n of each side, in [-1, 1] (> 0: bids outweigh asks); a side with fewer
than n levels contributes the levels it has.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.errors import DataError
from harness.validate import (
    FUNDING_CAP_PER_HOUR,
    HOUR_NS,
    NS,
    _check_order,
    _coins,
    _first_bad,
    _floats,
    _fmt_ts,
    _group_by_coin,
    _more,
    _require_columns,
    _ts_ns,
)

CTX_COLUMNS = ("coin", "ts", "time", "open_interest", "mark_px", "oracle_px", "mid_px", "premium",
               "funding", "day_ntl_vlm", "impact_bid_px", "impact_ask_px")
CTX_VALUES = CTX_COLUMNS[3:]
BOOK_COLUMNS = ("coin", "ts", "time", "level", "side", "price", "size", "imbalance_5",
                "imbalance_20")
BOOK_DEPTH = 20  # levels a side Hyperliquid's l2Book returns at most
IMBALANCE_DEPTHS = (5, 20)
SIDES = ("bid", "ask")
# A book's `time` is the server's clock; the recorder's may lag it by this much without the
# snapshot counting as "in the future".
MAX_CLOCK_SKEW_NS = 60 * NS
IMBALANCE_TOL = 1e-9


def imbalance(bid_sizes, ask_sizes, depth: int) -> float:
    """rho over the first `depth` levels of each side (sizes best first); NaN when both are empty."""
    b = float(np.sum(np.asarray(bid_sizes, dtype=np.float64)[:depth]))
    a = float(np.sum(np.asarray(ask_sizes, dtype=np.float64)[:depth]))
    return (b - a) / (b + a) if b + a > 0 else float("nan")


def book_frame(coin: str, time_ns: int, bids: list[tuple[float, float]],
               asks: list[tuple[float, float]]) -> pd.DataFrame:
    """The `books` rows of one snapshot: (price, size) per level, best first; imbalances added."""
    bids, asks = bids[:BOOK_DEPTH], asks[:BOOK_DEPTH]
    rows = [(s, i + 1, px, sz) for s, levels in zip(SIDES, (bids, asks), strict=True)
            for i, (px, sz) in enumerate(levels)]
    n = len(rows)
    stamp = pd.DatetimeIndex(np.full(n, time_ns, dtype=np.int64).view("datetime64[ns]"), tz="UTC")
    rho = {f"imbalance_{d}": np.full(n, imbalance([s for _, s in bids], [s for _, s in asks], d))
           for d in IMBALANCE_DEPTHS}
    return pd.DataFrame({
        "coin": [coin] * n, "ts": stamp.floor("h"), "time": stamp,
        "level": np.array([r[1] for r in rows], dtype=np.int64),
        "side": [r[0] for r in rows],
        "price": np.array([r[2] for r in rows], dtype=np.float64),
        "size": np.array([r[3] for r in rows], dtype=np.float64),
        **rho,
    })


def _now_ns(now: pd.Timestamp | None) -> int:
    return (pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)).value


def _check_times(codes, names, ts, time, now_ns: int, source: str) -> None:
    """ts is time floored to the hour, and no snapshot is in the future."""
    hit = _first_bad(ts != time - time % HOUR_NS)
    if hit:
        row, n = hit
        raise DataError(f"{source}: coin {names[codes[row]]!r}, row {row}: ts {_fmt_ts(ts[row])} "
                        f"is not the hour of its time {_fmt_ts(time[row])}{_more(n)}; ts must be "
                        "time floored to the hour: re-record the snapshot")
    hit = _first_bad(time > now_ns + MAX_CLOCK_SKEW_NS)
    if hit:
        row, n = hit
        raise DataError(f"{source}: coin {names[codes[row]]!r}, row {row}: snapshot time "
                        f"{_fmt_ts(time[row])} is in the future (now {_fmt_ts(now_ns)}){_more(n)}; "
                        "check the recorder's clock and drop the row")


def _fail(source: str, names, codes, ts, row: int, n: int, what: str, fix: str) -> None:
    raise DataError(f"{source}: coin {names[codes[row]]!r}, row {row} (snapshot "
                    f"{_fmt_ts(ts[row])}): {what}{_more(n)}; {fix}")


def validate_asset_ctxs(df: pd.DataFrame, source: str, now: pd.Timestamp | None = None
                        ) -> pd.DataFrame:
    """Check an `asset_ctxs_1h` frame; returns it sorted by coin, ts (a DataError otherwise).

    oracle_px is required (> 0); mark, mid, premium and the impact prices may be NaN (the API
    gives null for a coin without a book); open interest and day volume are >= 0.
    """
    _require_columns(df, CTX_COLUMNS, source, "asset contexts")
    if len(df) == 0:
        return empty_asset_ctxs()
    codes, names = _coins(df, source)
    ts, time = _ts_ns(df, source), _ts_ns(df, source, "time")
    v = {k: _floats(df, k, source) for k in CTX_VALUES}
    _check_times(codes, names, ts, time, _now_ns(now), source)

    def positive_or_nan(x: np.ndarray) -> np.ndarray:
        return ~(np.isnan(x) | (np.isfinite(x) & (x > 0)))

    checks = (
        (~np.isfinite(v["open_interest"]) | (v["open_interest"] < 0),
         "a negative or non-finite open interest", "open interest is >= 0 coins"),
        (~(np.isfinite(v["oracle_px"]) & (v["oracle_px"] > 0)), "a missing or non-positive "
         "oracle price", "every context has an oracle price > 0"),
        (positive_or_nan(v["mark_px"]) | positive_or_nan(v["mid_px"])
         | positive_or_nan(v["impact_bid_px"]) | positive_or_nan(v["impact_ask_px"]),
         "a non-positive mark, mid or impact price", "prices are > 0 (or NaN when unknown)"),
        (v["impact_bid_px"] > v["impact_ask_px"], "a crossed book (impact bid above impact ask)",
         "the impact bid is at most the impact ask"),
        (~np.isfinite(v["day_ntl_vlm"]) | (v["day_ntl_vlm"] < 0),
         "a negative or non-finite day volume", "day notional volume is >= 0"),
        (~np.isfinite(v["funding"]) | (np.abs(v["funding"]) > FUNDING_CAP_PER_HOUR),
         "a funding rate that is not finite or beyond the 4%/hour cap",
         "funding is a fraction per hour"),
        (np.isinf(v["premium"]), "an infinite premium", "premium is finite or NaN"),
    )
    for mask, what, fix in checks:
        hit = _first_bad(mask)
        if hit:
            _fail(source, names, codes, ts, *hit, what,
                  f"{fix}: the snapshot is corrupt, re-record it or drop the row")
    order = _group_by_coin(codes, ts)
    _check_order(codes, ts, order, names, source, "asset contexts (one per coin and hour)")
    return pd.DataFrame({
        "coin": pd.array(names[codes[order]], dtype="str"),
        "ts": pd.DatetimeIndex(ts[order].view("datetime64[ns]"), tz="UTC"),
        "time": pd.DatetimeIndex(time[order].view("datetime64[ns]"), tz="UTC"),
        **{k: v[k][order] for k in CTX_VALUES},
    })


def validate_books(df: pd.DataFrame, source: str, now: pd.Timestamp | None = None) -> pd.DataFrame:
    """Check a `books` frame; returns it sorted by coin, ts, side (bids first), level.

    Per snapshot (coin, ts): one time; each side's levels run 1, 2, ... (at most 20) with bid
    prices falling and ask prices rising; sizes and prices > 0; the best bid below the best ask
    (else the book is crossed); the stored imbalances equal the formula (module doc).
    """
    _require_columns(df, BOOK_COLUMNS, source, "books")
    if len(df) == 0:
        return empty_books()
    codes, names = _coins(df, source)
    ts, time = _ts_ns(df, source), _ts_ns(df, source, "time")
    _check_times(codes, names, ts, time, _now_ns(now), source)
    side_col = df["side"].astype(object).to_numpy()
    side = np.where(side_col == "bid", 0, np.where(side_col == "ask", 1, -1))
    level = _floats(df, "level", source)
    price, size = _floats(df, "price", source), _floats(df, "size", source)
    rho = {d: _floats(df, f"imbalance_{d}", source) for d in IMBALANCE_DEPTHS}
    checks = (
        (side < 0, "a side that is neither 'bid' nor 'ask'", "side is 'bid' or 'ask'"),
        (~((level >= 1) & (level <= BOOK_DEPTH) & (level == np.round(level))),
         f"a level outside 1..{BOOK_DEPTH}", "levels are whole numbers from 1 (the best)"),
        (~(np.isfinite(price) & (price > 0)), "a non-positive or non-finite price",
         "prices are > 0"),
        (np.isfinite(size) & (size < 0), "a negative size", "sizes are > 0 coins"),
        (~(np.isfinite(size) & (size > 0)), "a zero or non-finite size", "sizes are > 0 coins"),
    )
    for mask, what, fix in checks:
        hit = _first_bad(mask)
        if hit:
            _fail(source, names, codes, ts, *hit, what, f"{fix}: re-record the snapshot or drop it")

    order = np.lexsort((level, side, ts, codes))
    c, t, s, lv = codes[order], ts[order], side[order], level[order]
    same_snap = np.r_[False, (c[1:] == c[:-1]) & (t[1:] == t[:-1])]
    same_side = same_snap & np.r_[False, s[1:] == s[:-1]]
    p = price[order]
    step = np.r_[0.0, np.diff(p)]
    checks = (
        (same_snap & (time[order] != np.r_[time[order][:1], time[order][:-1]]),
         "rows of one snapshot with different times", "a snapshot has one time"),
        (np.where(same_side, lv != np.r_[0, lv[:-1]] + 1, lv != 1),
         "levels that do not run 1, 2, ... without gaps or repeats", "one row per side and level"),
        (same_side & (s == 0) & ~(step < 0), "bid prices that do not fall level by level",
         "bids are best (highest) first"),
        (same_side & (s == 1) & ~(step > 0), "ask prices that do not rise level by level",
         "asks are best (lowest) first"),
    )
    for mask, what, fix in checks:
        hit = _first_bad(mask, order)
        if hit:
            _fail(source, names, codes, ts, *hit, what, f"{fix}: re-record the snapshot")

    snap = np.cumsum(~same_snap) - 1  # snapshot number of each sorted row
    n_snap = int(snap[-1]) + 1
    best = {k: np.full(n_snap, np.nan) for k in (0, 1)}
    first = (lv == 1)
    for k in (0, 1):
        best[k][snap[first & (s == k)]] = p[first & (s == k)]
    bad = np.flatnonzero((best[0] >= best[1])[snap] & first & (s == 0))
    if bad.size:
        i = bad[0]
        _fail(source, names, codes, ts, int(order[i]), bad.size, f"a crossed book (best bid "
              f"{best[0][snap[i]]:g} >= best ask {best[1][snap[i]]:g})",
              "re-record the snapshot or drop it")
    sz = size[order]
    for d in IMBALANCE_DEPTHS:
        depth = [np.bincount(snap, weights=np.where((s == k) & (lv <= d), sz, 0.0),
                             minlength=n_snap) for k in (0, 1)]
        want = (depth[0] - depth[1]) / (depth[0] + depth[1])
        hit = _first_bad(~(np.abs(rho[d][order] - want[snap]) <= IMBALANCE_TOL), order)
        if hit:
            _fail(source, names, codes, ts, *hit, f"imbalance_{d} is not (bid - ask) / (bid + ask) "
                  f"of its levels 1..{d}", "recompute it (harness.snapshots.book_frame)")
    return pd.DataFrame({
        "coin": pd.array(names[c], dtype="str"),
        "ts": pd.DatetimeIndex(t.view("datetime64[ns]"), tz="UTC"),
        "time": pd.DatetimeIndex(time[order].view("datetime64[ns]"), tz="UTC"),
        "level": lv.astype(np.int64),
        "side": pd.array(np.array(SIDES, dtype=object)[s], dtype="str"),
        "price": p, "size": sz,
        **{f"imbalance_{d}": rho[d][order] for d in IMBALANCE_DEPTHS},
    })


def book_snapshots(books: pd.DataFrame) -> pd.DataFrame:
    """One row per snapshot of a validated `books` frame: coin, ts, time, the imbalances, the
    best bid and ask and how many levels each side has."""
    coin = books["coin"].to_numpy(dtype=object)
    ts = books["ts"].array.as_unit("ns").asi8
    new = np.r_[True, (coin[1:] != coin[:-1]) | (ts[1:] != ts[:-1])][:len(books)]
    snap = np.cumsum(new) - 1
    first = np.flatnonzero(new)
    side = books["side"].to_numpy(dtype=object)
    level = books["level"].to_numpy()
    price = books["price"].to_numpy(np.float64)
    out = books.iloc[first][["coin", "ts", "time"] + [f"imbalance_{d}" for d in IMBALANCE_DEPTHS]]
    out = out.reset_index(drop=True)
    for name in SIDES:
        on = side == name
        best = np.full(first.size, np.nan)
        best[snap[on & (level == 1)]] = price[on & (level == 1)]
        out[f"best_{name}"] = best
        out[f"{name}_levels"] = np.bincount(snap[on], minlength=first.size).astype(np.int64)
    return out


def empty_asset_ctxs() -> pd.DataFrame:
    return pd.DataFrame({"coin": pd.array([], dtype="str"),
                         "ts": pd.DatetimeIndex([], tz="UTC").as_unit("ns"),
                         "time": pd.DatetimeIndex([], tz="UTC").as_unit("ns"),
                         **{k: np.zeros(0) for k in CTX_VALUES}})


def empty_books() -> pd.DataFrame:
    return pd.DataFrame({"coin": pd.array([], dtype="str"),
                         "ts": pd.DatetimeIndex([], tz="UTC").as_unit("ns"),
                         "time": pd.DatetimeIndex([], tz="UTC").as_unit("ns"),
                         "level": np.zeros(0, np.int64), "side": pd.array([], dtype="str"),
                         "price": np.zeros(0), "size": np.zeros(0),
                         **{f"imbalance_{d}": np.zeros(0) for d in IMBALANCE_DEPTHS}})
