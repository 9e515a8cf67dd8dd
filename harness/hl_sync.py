"""Record Hyperliquid candles and funding into the local store (`python -m sweep data sync`).

Through the hyperliquid-python-sdk `Info(base_url, skip_ws=True)` client. The API serves only
the latest 5,000 candles per interval, so history must be recorded over time: run it hourly.

- Candles: from the last stored bar + 1, less a trailing window of `REFETCH_BARS` stored bars
  fetched again (else `since`, else 5,000 bars back), paged by the last returned open time,
  rows repeated in a page kept once. A candle is closed when its own close time `T` is
  before the open of the newest candle the server shows: the server's clock decides, so a
  lagging server's still-open candle is never stored; a server whose newest candle is old
  says so in the coin's note. Re-fetched rows replace stored ones (a late fix lands).
- Funding: from the last stored hour + 1 h less the same trailing window (else `since`, else
  where the candles start), at most 500 rows per response, next startTime = last time + 1 ms,
  duplicates dropped.
- Weight budget: each request reserves its weight (20, plus 1 per 60 candles or 1 per 20
  funding rows it can return at most) in a sliding 60 s window, kept below Hyperliquid's
  1,200 per minute with headroom for other clients on the same IP (the paper executor).
- Retries: HTTP 429, 5xx, connection errors and timeouts back off exponentially; after
  `max_tries` a DataError says what failed and that re-running resumes where it stopped.
- Each coin is written as soon as it is fetched (atomic upserts), so an interrupted sync keeps
  what it finished and the next run continues from there.
- Snapshots (`contexts=True`, harness.snapshots): before any candle, one `metaAndAssetCtxs`
  (weight 20: every listed perp's context) and one `l2Book` per book coin (weight 2 each),
  validated together and written together, so a malformed or partial answer writes nothing;
  one snapshot per coin and hour, so a second run in the same hour adds nothing.

`HyperliquidClient` (budget, retries, paged `candles` / `funding`, `asset_ctxs`, `l2_book` as
store-schema frames) is public so the paper executor polls through the same code.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import requests
from hyperliquid.api import API
from hyperliquid.info import Info
from hyperliquid.utils.constants import MAINNET_API_URL, TESTNET_API_URL
from hyperliquid.utils.error import ClientError, ServerError

from harness import store as st
from harness.cli import redact
from harness.errors import DataError
from harness.market import INTERVALS
from harness.snapshots import CTX_COLUMNS, book_frame, book_snapshots, empty_books

WEIGHT_LIMIT_PER_MINUTE = 1_200  # Hyperliquid's per-IP limit (HYPERLIQUID.md)
WEIGHT_BUDGET_PER_MINUTE = 1_000  # what the sync allows itself
REQUEST_WEIGHT = 20
CANDLES_PER_WEIGHT = 60
FUNDING_ROWS_PER_WEIGHT = 20
BOOK_WEIGHT = 2  # l2Book is one of the info requests of weight 2
CANDLE_WINDOW = 5_000  # candles per interval the API keeps
FUNDING_PAGE_ROWS = 500  # max rows per funding response
REFETCH_BARS = 3  # trailing stored bars fetched again on every sync (late fixes land)
HOUR_MS = 3_600_000


class WeightBudget:
    """Sliding 60 s window of request weights; `acquire` waits until a request fits."""

    def __init__(self, per_minute: int = WEIGHT_BUDGET_PER_MINUTE,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.per_minute, self.clock, self.sleep = per_minute, clock, sleep
        self.window: deque[tuple[float, int]] = deque()
        self.spent = 0

    def in_window(self) -> int:
        now = self.clock()
        while self.window and self.window[0][0] <= now - 60.0:
            self.window.popleft()
        return sum(w for _, w in self.window)

    def acquire(self, weight: int) -> None:
        weight = min(weight, self.per_minute)
        while self.in_window() + weight > self.per_minute:
            self.sleep(max(self.window[0][0] + 60.0 - self.clock(), 0.01))
        self.window.append((self.clock(), weight))
        self.spent += weight


class HyperliquidClient:
    """The SDK `Info` client behind the weight budget and retries, with paged fetches.

    Constructing it fetches `meta` and `spotMeta` once (2 requests) and hands them to
    `Info(base_url, skip_ws=True, meta=..., spot_meta=...)`. The paper executor reuses it.
    """

    def __init__(self, base_url: str | None = None, testnet: bool = False, *,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, max_tries: int = 6,
                 backoff: float = 1.0, timeout: float = 30.0,
                 weight_per_minute: int = WEIGHT_BUDGET_PER_MINUTE) -> None:
        self.base_url = (base_url or (TESTNET_API_URL if testnet else MAINNET_API_URL)).rstrip("/")
        self.shown_url = redact(self.base_url)  # what messages and reports name
        self.budget = WeightBudget(weight_per_minute, clock, sleep)
        self.sleep, self.max_tries, self.backoff = sleep, max_tries, backoff
        self.requests = self.retries = 0
        self.newest_open: dict[str, int] = {}  # interval -> newest candle open the server showed
        api = API(self.base_url, timeout=timeout)
        self.meta = self.call("meta", REQUEST_WEIGHT, api.post, "/info", {"type": "meta"})
        spot_meta = self.call("spotMeta", REQUEST_WEIGHT, api.post, "/info", {"type": "spotMeta"})
        try:
            self.info = Info(self.base_url, skip_ws=True, meta=self.meta, spot_meta=spot_meta,
                             timeout=timeout)
        except (KeyError, TypeError) as exc:
            raise DataError(f"Hyperliquid at {self.shown_url}: unexpected meta/spotMeta "
                            f"({exc!r}); is the base URL a Hyperliquid API?") from None

    def call(self, what: str, weight: int, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args) within the budget, retrying 429 / 5xx / connection errors / timeouts."""
        last = ""
        for attempt in range(self.max_tries):
            self.budget.acquire(weight)
            self.requests += 1
            try:
                return fn(*args)
            except ClientError as exc:
                if exc.status_code != 429:
                    raise DataError(
                        f"Hyperliquid {what} at {self.shown_url}: HTTP {exc.status_code} "
                        f"{exc.error_message}; check the coin, interval and base URL"
                    ) from None
                last = "HTTP 429 (rate limited)"
            except ServerError as exc:
                last = f"HTTP {exc.status_code} {str(exc.message)[:80]}"
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = type(exc).__name__
            if attempt + 1 < self.max_tries:
                self.retries += 1
                self.sleep(min(self.backoff * 2**attempt, 60.0))
        raise DataError(
            f"Hyperliquid {what} at {self.shown_url} failed after {self.max_tries} tries (last: "
            f"{last}); wait a few minutes and re-run: the sync resumes from the last stored bar"
        )

    def perps(self, include_delisted: bool = False) -> list[str]:
        """Perp names in `meta` order, without delisted ones unless asked."""
        try:
            return [u["name"] for u in self.meta["universe"]
                    if include_delisted or not u.get("isDelisted", False)]
        except (KeyError, TypeError, AttributeError):
            raise DataError(f"Hyperliquid meta: unexpected answer {str(self.meta)[:120]}") from None

    def candles(self, coin: str, interval: str, start_ms: int, now_ms: int) -> tuple[pd.DataFrame, str]:
        """CLOSED candles opening at or after start_ms (store schema) and a note (history no
        longer served; the server's newest candle is old). Pages by the last open time.

        Closed is the server's word, not the local clock's: a candle is closed when its own
        close time `T` is before the open of the newest candle the server has shown for this
        interval (that newest one may still be open; a lagging server's open candle is never
        stored as closed). Rows repeated inside a page are kept once (the last).
        """
        step = INTERVALS[interval] * 1000
        start = start_ms - start_ms % step
        cursor, rows = start, {}
        what = f"candleSnapshot {coin} {interval}"
        while cursor + step <= now_ms:  # some closed candle may still be missing
            expected = min(CANDLE_WINDOW, (now_ms - cursor) // step + 1)
            page = _as_list(self.call(what, REQUEST_WEIGHT + math.ceil(expected / CANDLES_PER_WEIGHT),
                                      self.info.candles_snapshot, coin, interval, cursor, now_ms),
                            what, "t")
            fresh = {int(r["t"]): r for r in page if int(r["t"]) >= cursor}
            if not fresh:
                break
            rows.update(fresh)
            cursor = max(fresh) + step
        newest = max(rows, default=None)
        if newest is not None:
            self.newest_open[interval] = max(self.newest_open.get(interval, newest), newest)
        latest = self.newest_open.get(interval)
        closed = [rows[t] for t in sorted(rows) if _close_ms(rows[t], step) < latest]
        notes = []
        oldest_served = now_ms - now_ms % step - (CANDLE_WINDOW - 1) * step
        if closed and start < int(closed[0]["t"]) <= oldest_served:  # not a later listing
            notes.append(f"history before {_utc(int(closed[0]['t']))} not served (the API keeps "
                         f"{CANDLE_WINDOW:,} candles)")
        behind = now_ms - now_ms % step - step  # the newest bar that has closed by the clock
        if newest is None:
            notes.append(f"the server has no candle since {_utc(start)}: it lags or the coin is "
                         "halted; re-run later")
        elif newest < behind:
            notes.append(f"the server's newest candle opened {_utc(newest)}, "
                         f"{(now_ms - newest - step) / 3_600_000:.1f} h before the clock's last "
                         "close: it lags or the coin is halted")
        return _candle_frame(closed, coin, interval), "; ".join(notes)

    def funding(self, coin: str, start_ms: int, now_ms: int) -> pd.DataFrame:
        """Funding records from start_ms to now_ms (store schema, ts NOT yet floored), paged by
        last time + 1 ms, duplicates dropped."""
        cursor, rows, seen = start_ms, [], set()
        what = f"fundingHistory {coin}"
        while cursor <= now_ms:
            expected = min(FUNDING_PAGE_ROWS, (now_ms - cursor) // HOUR_MS + 1)
            page = _as_list(self.call(what, REQUEST_WEIGHT + math.ceil(expected / FUNDING_ROWS_PER_WEIGHT),
                                      self.info.funding_history, coin, cursor, now_ms), what, "time")
            fresh = [r for r in page if int(r["time"]) not in seen]
            seen.update(int(r["time"]) for r in fresh)
            rows.extend(fresh)
            if not fresh or len(page) < FUNDING_PAGE_ROWS:
                break
            cursor = max(int(r["time"]) for r in fresh) + 1
        return _funding_frame(sorted(rows, key=lambda r: int(r["time"])), coin)


    def asset_ctxs(self, clock_ms: Callable[[], int]) -> pd.DataFrame:
        """Every listed perp's context now (asset_ctxs_1h schema), stamped with `clock_ms()`
        when the answer arrived (the API gives no time); DataError on a malformed or partial
        answer (fewer contexts than perps)."""
        answer = self.call("metaAndAssetCtxs", REQUEST_WEIGHT, self.info.meta_and_asset_ctxs)
        return _ctx_frame(answer, clock_ms(), self.shown_url)

    def l2_book(self, coin: str) -> pd.DataFrame:
        """The coin's L2 book now (`books` rows, 20 levels a side at most, imbalances added)."""
        what = f"l2Book {coin}"
        answer = self.call(what, BOOK_WEIGHT, self.info.l2_snapshot, coin)
        try:
            if answer["coin"] != coin or len(answer["levels"]) != 2:
                raise ValueError("expected the coin and two sides of levels")
            bids, asks = ([(float(lv["px"]), float(lv["sz"])) for lv in side]
                          for side in answer["levels"])
            time_ns = int(answer["time"]) * 1_000_000
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"Hyperliquid {what} at {self.shown_url}: unexpected answer "
                            f"({type(exc).__name__}: {exc}) {str(answer)[:100]}; nothing was "
                            "recorded: re-run later") from None
        return book_frame(coin, time_ns, bids, asks)


def _ctx_frame(answer: Any, time_ms: int, url: str) -> pd.DataFrame:
    def num(x: Any) -> float:
        return float("nan") if x is None else float(x)

    try:
        universe, ctxs = answer[0]["universe"], answer[1]
        if len(universe) != len(ctxs):
            raise ValueError(f"{len(universe)} perps but {len(ctxs)} contexts (a partial answer)")
        rows = []
        for u, c in zip(universe, ctxs, strict=True):
            if u.get("isDelisted", False):
                continue
            impact = c.get("impactPxs") or (None, None)
            if len(impact) != 2:
                raise ValueError(f"{u['name']}: impactPxs {impact!r} is not [bid, ask]")
            rows.append((u["name"], float(c["openInterest"]), num(c.get("markPx")),
                         float(c["oraclePx"]), num(c.get("midPx")), num(c.get("premium")),
                         float(c["funding"]), float(c["dayNtlVlm"]), num(impact[0]),
                         num(impact[1])))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise DataError(f"Hyperliquid metaAndAssetCtxs at {url}: unexpected answer "
                        f"({type(exc).__name__}: {exc}); nothing was recorded: re-run later") from None
    frame = pd.DataFrame(rows, columns=["coin"] + list(CTX_COLUMNS[3:]))
    stamp = pd.Timestamp(time_ms, unit="ms", tz="UTC").as_unit("ns")
    frame.insert(1, "ts", pd.DatetimeIndex([stamp.floor("h")] * len(frame)))
    frame.insert(2, "time", pd.DatetimeIndex([stamp] * len(frame)))
    return frame


@dataclass(frozen=True)
class BookRecord:
    coin: str
    added: bool  # False: this hour's snapshot was already stored
    time: pd.Timestamp
    levels: tuple[int, int]  # (bid, ask) levels recorded
    imbalance_5: float
    imbalance_20: float


@dataclass(frozen=True)
class SnapshotReport:
    time: pd.Timestamp  # of the asset contexts
    contexts: int  # coins in the answer
    contexts_added: int  # coins whose snapshot of this hour is new
    books: tuple[BookRecord, ...]


def record_snapshots(store: str | Path, client: HyperliquidClient, book_coins: list[str],
                     clock_ms: Callable[[], int], coins: list[str] | None = None) -> SnapshotReport:
    """Fetch the asset contexts (of `coins`, default every listed perp) and the books of
    `book_coins`, then validate and write them together (harness.store.upsert_snapshots)."""
    ctx = client.asset_ctxs(clock_ms)
    if coins is not None:
        ctx = ctx[ctx["coin"].isin(coins)].reset_index(drop=True)
    parts = [client.l2_book(c) for c in book_coins]
    books = pd.concat(parts, ignore_index=True) if parts else empty_books()
    now = pd.Timestamp(clock_ms(), unit="ms", tz="UTC")
    ctx_added, book_added = st.upsert_snapshots(store, ctx, books, f"Hyperliquid {client.shown_url}",
                                                now)
    snaps = book_snapshots(books)
    records = tuple(BookRecord(r.coin, book_added.get(r.coin, 0) > 0, r.time,
                               (int(r.bid_levels), int(r.ask_levels)), float(r.imbalance_5),
                               float(r.imbalance_20)) for r in snaps.itertuples(index=False))
    t = ctx["time"].iloc[0] if len(ctx) else now
    return SnapshotReport(t, len(ctx), sum(1 for v in ctx_added.values() if v), records)


@dataclass(frozen=True)
class CoinSync:
    coin: str
    candles_added: int
    funding_added: int
    first_new: pd.Timestamp | None  # open time of the first candle added
    last_bar: pd.Timestamp | None  # newest closed candle fetched
    note: str = ""  # history lost outside the 5,000-candle window; a server whose newest is old
    candles_fixed: int = 0  # stored candles the re-fetched window replaced with other values


@dataclass(frozen=True)
class SyncReport:
    base_url: str
    interval: str
    coins: tuple[CoinSync, ...]
    requests: int
    retries: int
    weight: int  # weight reserved (an upper bound of what Hyperliquid counted)
    snapshots: SnapshotReport | None = None  # with contexts=True

    @property
    def candles_added(self) -> int:
        return sum(c.candles_added for c in self.coins)

    @property
    def funding_added(self) -> int:
        return sum(c.funding_added for c in self.coins)


def _ms(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000)


def _utc(ms: int) -> pd.Timestamp:
    return pd.Timestamp(ms, unit="ms", tz="UTC")


def _close_ms(row: dict, step: int) -> int:
    """A candle's own close time: its `T` (the last ms of the bar), else open + interval - 1."""
    try:
        return int(row["T"])
    except (KeyError, TypeError, ValueError):
        return int(row["t"]) + step - 1


def _since_ms(since) -> int | None:
    if since is None:
        return None
    try:
        t = pd.Timestamp(since)
    except (ValueError, TypeError):
        raise DataError(f"since={since!r} is not a date; use e.g. 2024-09-01") from None
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return _ms(t)


def _start(stored: pd.Timestamp | None, step_ms: int, since_ms: int | None, default_ms: int,
           refetch: int = 0) -> int:
    """Where a coin's fetch starts: `refetch` rows before the row after the last stored one
    (the trailing window fetched again), or `since` when later, or the default."""
    start = _ms(stored) + step_ms - refetch * step_ms if stored is not None else None
    if since_ms is not None and (start is None or since_ms > start):
        start = since_ms
    return default_ms if start is None else start


def _fixed(store: str | Path, table: str, coin: str, fresh: pd.DataFrame, keys: tuple[str, ...]) -> int:
    """How many fetched rows differ from the stored rows of the same time (late fixes)."""
    if not len(fresh) or not st.partition_path(store, table, coin).is_file():
        return 0
    old = st.read_parquet(st.partition_path(store, table, coin)).set_index("ts")
    new = fresh.set_index("ts")
    both = new.index.intersection(old.index)
    if not len(both):
        return 0
    a, b = old.loc[both, list(keys)].to_numpy(float), new.loc[both, list(keys)].to_numpy(float)
    return int((~((a == b) | (np.isnan(a) & np.isnan(b)))).any(axis=1).sum())


def _candle_frame(rows: list[dict], coin: str, interval: str) -> pd.DataFrame:
    try:
        frame = pd.DataFrame({
            "coin": [coin] * len(rows),
            "ts": pd.to_datetime([int(r["t"]) for r in rows], unit="ms", utc=True).as_unit("ns"),
            **{name: [float(r[key]) for r in rows] for name, key in
               (("open", "o"), ("high", "h"), ("low", "l"), ("close", "c"), ("volume", "v"))},
        })
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"Hyperliquid candleSnapshot {coin} {interval}: unexpected row format "
                        f"({type(exc).__name__}: {exc}); is the base URL a Hyperliquid API?") from None
    return frame


def _funding_frame(rows: list[dict], coin: str) -> pd.DataFrame:
    try:
        return pd.DataFrame({
            "coin": [coin] * len(rows),
            "ts": pd.to_datetime([int(r["time"]) for r in rows], unit="ms", utc=True).as_unit("ns"),
            "funding_rate": [float(r["fundingRate"]) for r in rows],
            "premium": [float(r["premium"]) if r.get("premium") is not None else float("nan")
                        for r in rows],
        })
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"Hyperliquid fundingHistory {coin}: unexpected row format "
                        f"({type(exc).__name__}: {exc}); is the base URL a Hyperliquid API?") from None


def _as_list(page: Any, what: str, key: str) -> list[dict]:
    if not isinstance(page, list) or not all(isinstance(r, dict) and key in r for r in page):
        raise DataError(f"Hyperliquid {what}: expected a list of rows with {key!r}, got "
                        f"{str(page)[:120]}; is the base URL a Hyperliquid API?")
    return page


def sync(store: str | Path, coins: list[str], interval: str = "1h", funding: bool = True,
         since=None, base_url: str | None = None, testnet: bool = False,
         progress: Callable[[int, int, str], None] | None = None, *, contexts: bool = False,
         book_coins: list[str] = (),
         now_ms: Callable[[], int] | None = None, sleep: Callable[[float], None] = time.sleep,
         clock: Callable[[], float] = time.monotonic, max_tries: int = 6, backoff: float = 1.0,
         timeout: float = 30.0, weight_per_minute: int = WEIGHT_BUDGET_PER_MINUTE,
         refetch: int = REFETCH_BARS) -> SyncReport:
    """Fetch closed candles (and funding) for `coins` (["all"]: every listed perp) into `store`;
    with `contexts`, first one snapshot of the asset contexts and of the books of `book_coins`.

    The last `refetch` stored bars (and funding hours) are fetched again and replace what is
    stored, so a bar the server corrected or filled late lands. progress(done, total, coin)
    is called after each coin. now_ms, sleep and clock are injectable for tests; everything
    else follows the module doc.
    """
    if refetch < 0:
        raise DataError(f"refetch must be >= 0 bars, got {refetch}")
    if interval not in INTERVALS:
        raise DataError(f"unknown interval {interval!r}: use one of {', '.join(INTERVALS)}")
    if not coins and not contexts:
        raise DataError("no coins given; pass e.g. --coins BTC,ETH or --coins all (or --contexts)")
    since = _since_ms(since)
    clock_now = now_ms or (lambda: int(time.time() * 1000))
    client = HyperliquidClient(base_url, testnet, sleep=sleep, clock=clock, max_tries=max_tries,
                               backoff=backoff, timeout=timeout,
                               weight_per_minute=weight_per_minute)
    listed = client.perps()
    known = set(client.perps(include_delisted=True))

    def check(wanted: list[str]) -> list[str]:
        unknown = [c for c in wanted if c not in known]
        if unknown:
            raise DataError(f"unknown coin {unknown[0]!r} on {client.shown_url}; listed perps "
                            f"include {', '.join(listed[:10])} ({len(listed)} in all)")
        return list(dict.fromkeys(wanted))

    names = listed if [c.lower() for c in coins] == ["all"] else check(list(coins))
    snapshots = (record_snapshots(store, client, check(list(book_coins)), clock_now)
                 if contexts else None)

    step = INTERVALS[interval] * 1000
    table = st.candles_table(interval)
    done: list[CoinSync] = []
    for i, coin in enumerate(names):
        now = clock_now()
        default = now - now % step - (CANDLE_WINDOW - 1) * step  # the oldest bar served
        stored = st.last_ts(store, table, coin)
        c_start = _start(stored, step, since, default, refetch)
        bars, note = client.candles(coin, interval, c_start, now)
        fixed = _fixed(store, table, coin, bars, ("open", "high", "low", "close", "volume"))
        added = st.upsert_candles(store, interval, bars, f"Hyperliquid candleSnapshot {coin} "
                                  f"{interval}", replace=True).get(coin, 0)
        f_added = 0
        if funding:
            f_start = _start(st.last_ts(store, st.FUNDING_TABLE, coin), HOUR_MS, since,
                             min(c_start, default), refetch)
            f_added = st.upsert_funding(store, client.funding(coin, f_start, now),
                                        f"Hyperliquid fundingHistory {coin}",
                                        replace=True).get(coin, 0)
        new = bars if stored is None else bars[bars["ts"] > stored]
        done.append(CoinSync(
            coin=coin, candles_added=added, funding_added=f_added, candles_fixed=fixed,
            first_new=new["ts"].iloc[0] if len(new) else None,
            last_bar=bars["ts"].iloc[-1] if len(bars) else None,
            note=note,
        ))
        if progress:
            progress(i + 1, len(names), coin)
    return SyncReport(base_url=client.shown_url, interval=interval, coins=tuple(done),
                      requests=client.requests, retries=client.retries, weight=client.budget.spent,
                      snapshots=snapshots)
