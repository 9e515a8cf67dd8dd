"""Where closed candles come from: a replay of stored data, or Hyperliquid polled through the SDK.

A feed hands the engine `Tick`s: the feed's clock and the bars that closed since the last one,
each bar with its candles and the funding records that belong to it. A bar is handed over once,
complete or not (a coin without a candle is a gap: unlisted, never invented). Neither feed ever
needs a private key: the Info endpoint is public. The live feed also records, with each batch
of bars it hands over, one snapshot of its coins' asset contexts and L2 books
(harness.snapshots), which the engine writes to the ledger and the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from hyperliquid.utils.constants import MAINNET_API_URL, TESTNET_API_URL

from executor.window import CANDLE_COLS, FUNDING_COLS, empty_candles, empty_funding, market_rows
from harness.cli import redact
from harness.errors import DataError
from harness.hl_sync import HyperliquidClient
from harness.market import interval_seconds
from harness.snapshots import empty_books, validate_asset_ctxs, validate_books
from harness.sources import load_market
from harness.validate import validate_candles, validate_funding

HOUR_MS = 3_600_000
EXECUTOR_WEIGHT_PER_MINUTE = 200  # leaves the hourly `sweep data sync` most of the 1,200


@dataclass(frozen=True)
class BarRows:
    ts: pd.Timestamp  # bar open
    candles: pd.DataFrame  # coin, ts, open, high, low, close, volume
    funding: pd.DataFrame  # coin, ts (hour), funding_rate, premium: the records stamped in
    # (open, close] of this bar (a record stamped H pays for the hour ending at H)
    now: pd.Timestamp  # the feed's clock when it handed the bar over


@dataclass(frozen=True)
class Snapshot:
    """Validated asset contexts and books of the feed's coins (store schemas)."""

    contexts: pd.DataFrame
    books: pd.DataFrame


@dataclass(frozen=True)
class Tick:
    now: pd.Timestamp
    bars: tuple[BarRows, ...] = ()
    error: str | None = None
    snapshot: Snapshot | None = None


def _ts(value, name: str) -> pd.Timestamp:
    try:
        t = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise DataError(f"--{name} {value!r} is not a date; use e.g. 2025-03-01 or 2025-03-01T12:00Z") from None
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


class ReplayFeed:
    """Plays a dataset folder, a store, a candles file or the embedded default, bar by bar.

    The clock of a bar is its close; `speed` X plays X times faster than real time (0: as fast
    as possible). Warm-up bars before `start` come from the same source.
    """

    kind = "replay"

    def __init__(self, data: str | Path, interval: str, coins: tuple[str, ...], start, end,
                 warmup_bars: int, speed: float = 0.0, store: str | Path = "data",
                 market_start: pd.Timestamp | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = interval
        self.step = pd.Timedelta(seconds=interval_seconds(interval))
        t0, t1 = _ts(start, "start"), _ts(end, "end")
        if t1 <= t0:
            raise DataError(f"--end {t1} is not after --start {t0}: give a later --end")
        if speed < 0:
            raise DataError(f"--speed must be >= 0 (0 plays as fast as possible), got {speed}")
        warm = market_start if market_start is not None else t0 - warmup_bars * self.step
        self.market = load_market(data, interval, list(coins), start=warm, end=t1, store=store)
        self.source, self.synthetic = self.market.label, self.market.synthetic
        self.first = int(self.market.index.searchsorted(t0, side="left"))
        if self.first >= self.market.n_bars:
            raise DataError(f"{self.source} has no {interval} bars between {t0} and {t1}")
        self.speed, self.sleep = speed, sleep

    @property
    def first_bar(self) -> pd.Timestamp:
        return self.market.index[self.first]

    @property
    def n_bars(self) -> int:
        return self.market.n_bars - self.first

    def history(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Warm-up rows: every bar before the first one to trade."""
        parts = [market_rows(self.market, t) for t in range(self.first)]
        if not parts:
            return empty_candles(), empty_funding()
        return (pd.concat([p[0] for p in parts], ignore_index=True),
                pd.concat([p[1] for p in parts], ignore_index=True))

    def ticks(self, after: pd.Timestamp | None) -> Iterator[Tick]:
        start = self.first
        if after is not None:
            start = max(start, int(self.market.index.searchsorted(after, side="right")))
        pause = self.step.total_seconds() / self.speed if self.speed else 0.0
        for t in range(start, self.market.n_bars):
            if pause:
                self.sleep(pause)
            ts = self.market.index[t]
            candles, funding = market_rows(self.market, t)
            now = ts + self.step
            yield Tick(now=now, bars=(BarRows(ts, candles, funding, now),))


@dataclass
class _Pending:
    """Fetched rows of bars not handed over yet, and where each coin's next request starts."""

    candles: dict[tuple[str, int], tuple] = field(default_factory=dict)  # (coin, open ms) -> row
    funding: dict[tuple[str, int], tuple] = field(default_factory=dict)  # (coin, hour ms) -> row
    candle_cursor: dict[str, int] = field(default_factory=dict)  # next open time to ask, ms
    funding_cursor: dict[str, int] = field(default_factory=dict)  # next funding time to ask, ms


class HyperliquidFeed:
    """Polls closed candles and funding through harness.hl_sync.HyperliquidClient.

    That client is the SDK's `Info(base_url, skip_ws=True)` behind the weight budget and the
    retries the data sync uses (HTTP 429, 5xx, connection errors and timeouts back off; after
    `max_tries` the poll reports an error and the next one tries again). A bar is handed over
    once it has closed and every coin either has its candle, already has a later one (a gap),
    or `grace` seconds passed since the close. Records arriving for a bar already handed over are
    dropped: a processed bar is final.
    """

    kind = "hyperliquid"

    def __init__(self, interval: str, coins: tuple[str, ...], base_url: str | None = None,
                 testnet: bool = False, poll_seconds: float = 20.0, grace_seconds: float = 120.0,
                 now_ms: Callable[[], int] | None = None,
                 sleep: Callable[[float], None] = time.sleep, max_tries: int = 4,
                 backoff: float = 1.0, timeout: float = 10.0,
                 weight_per_minute: int = EXECUTOR_WEIGHT_PER_MINUTE) -> None:
        self.interval = interval
        self.step_ms = interval_seconds(interval) * 1000
        self.coins = tuple(coins)
        self.url = (base_url or (TESTNET_API_URL if testnet else MAINNET_API_URL)).rstrip("/")
        self.shown_url = redact(self.url)  # in the ledger's settings, events and messages
        self.source, self.synthetic = f"Hyperliquid {self.shown_url}", False
        self.poll_seconds, self.grace_ms = poll_seconds, int(grace_seconds * 1000)
        self.now_ms = now_ms or (lambda: int(time.time() * 1000))
        self.sleep = sleep
        self._client_kw = dict(sleep=sleep, max_tries=max_tries, backoff=backoff, timeout=timeout,
                               weight_per_minute=weight_per_minute)
        self.client: HyperliquidClient | None = None
        self.pending = _Pending()

    def connect(self) -> None:
        """Fetch meta once and check the coins are perps there (DataError otherwise)."""
        client = HyperliquidClient(self.url, **self._client_kw)
        known = set(client.perps(include_delisted=True))
        unknown = [c for c in self.coins if c not in known]
        if unknown:
            raise DataError(f"coin {unknown[0]!r} is not a perp on {self.shown_url}; fix the candidates "
                            "file or --coins")
        self.client = client

    @property
    def last_closed(self) -> pd.Timestamp:
        """Open time of the newest bar that has closed now."""
        now = self.now_ms()
        return pd.Timestamp((now - now % self.step_ms) - self.step_ms, unit="ms", tz="UTC")

    def history(self, start: pd.Timestamp, end: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Closed candles opening in [start, end) and their funding (the warm-up)."""
        if self.client is None:
            self.connect()
        s, e = _ms(start), _ms(end)
        now = min(self.now_ms(), e)
        candles, funding = [], []
        for coin in self.coins:
            frame, _ = self.client.candles(coin, self.interval, s, now)
            candles.append(frame[frame["ts"] < end])
            # the bars' records: stamped (floored to the hour) in (start, end]; times carry ms jitter
            funding.append(self.client.funding(coin, s + HOUR_MS, e + HOUR_MS - 1))
        return (_valid_candles(pd.concat(candles, ignore_index=True), self.interval, self.shown_url),
                _valid_funding(pd.concat(funding, ignore_index=True), self.shown_url))

    def _poll(self, after_ms: int, now: int) -> None:
        """Fetch what is new; rows are validated before any is kept (a bad answer is re-asked)."""
        p = self.pending
        for coin in self.coins:
            start = p.candle_cursor.get(coin, after_ms + self.step_ms)
            frame = _valid_candles(self.client.candles(coin, self.interval, start, now)[0],
                                   self.interval, self.shown_url)
            for row in frame.itertuples(index=False):
                t = _ms(row.ts)
                if t > after_ms:
                    p.candles[(coin, t)] = tuple(row)
                p.candle_cursor[coin] = max(p.candle_cursor.get(coin, 0), t + self.step_ms)
        for coin in self.coins:
            start = p.funding_cursor.get(coin, after_ms + self.step_ms + 1)
            raw = self.client.funding(coin, start, now)
            for row in _valid_funding(raw, self.shown_url).itertuples(index=False):  # ts on the hour
                p.funding[(coin, _ms(row.ts))] = tuple(row)
            if len(raw):
                p.funding_cursor[coin] = _ms(raw["ts"].max()) + 1

    def _ready(self, after_ms: int, now: int) -> list[int]:
        out, t = [], after_ms + self.step_ms
        latest = {c: max((k[1] for k in self.pending.candles if k[0] == c), default=-1) for c in self.coins}
        paid = {c: max((k[1] for k in self.pending.funding if k[0] == c), default=-1) for c in self.coins}
        while t + self.step_ms <= now:  # a bar is complete with its candles and its closing record
            complete = all(((c, t) in self.pending.candles or latest[c] > t)
                           and paid[c] >= t + self.step_ms for c in self.coins)
            if not complete and now < t + self.step_ms + self.grace_ms:
                break
            out.append(t)
            t += self.step_ms
        return out

    def _bar(self, t: int, now: pd.Timestamp) -> BarRows:
        p = self.pending
        crows = [p.candles.pop((c, t)) for c in self.coins if (c, t) in p.candles]
        keys = sorted(k for k in p.funding if t < k[1] <= t + self.step_ms)
        frows = [p.funding.pop(k) for k in keys]
        candles = pd.DataFrame(crows, columns=list(CANDLE_COLS)) if crows else empty_candles()
        funding = pd.DataFrame(frows, columns=list(FUNDING_COLS)) if frows else empty_funding()
        return BarRows(pd.Timestamp(t, unit="ms", tz="UTC"), candles, funding, now)

    def snapshot(self) -> Snapshot:
        """The asset contexts and L2 books of the feed's coins now (a DataError when an answer
        is malformed: nothing of it is kept)."""
        ctx = self.client.asset_ctxs(self.now_ms)
        ctx = ctx[ctx["coin"].isin(self.coins)].reset_index(drop=True)
        books = [self.client.l2_book(c) for c in self.coins]
        now = pd.Timestamp(self.now_ms(), unit="ms", tz="UTC")
        where = f"Hyperliquid at {self.url}"
        return Snapshot(validate_asset_ctxs(ctx, f"{where} (asset contexts)", now),
                        validate_books(pd.concat(books, ignore_index=True) if books else empty_books(),
                                       f"{where} (books)", now))

    def _drop_late(self, after_ms: int) -> None:
        p = self.pending
        for k in [k for k in p.candles if k[1] <= after_ms]:
            del p.candles[k]
        for k in [k for k in p.funding if k[1] <= after_ms + self.step_ms]:
            del p.funding[k]

    def ticks(self, after: pd.Timestamp | None) -> Iterator[Tick]:
        """Forever: poll when a bar can have closed, hand over the ready bars, sleep."""
        after_ms = _ms(after) if after is not None else _ms(self.last_closed)
        while True:
            now = self.now_ms()
            now_ts = pd.Timestamp(now, unit="ms", tz="UTC")
            if now >= after_ms + 2 * self.step_ms:  # the next bar has closed: ask for it
                try:
                    if self.client is None:
                        self.connect()
                    self._poll(after_ms, now)
                    bars = tuple(self._bar(t, now_ts) for t in self._ready(after_ms, now))
                except DataError as exc:
                    yield Tick(now=now_ts, error=str(exc))
                    self.sleep(self.poll_seconds)
                    continue
                snap, error = None, None
                if bars:
                    after_ms = _ms(bars[-1].ts)
                    self._drop_late(after_ms)
                    try:
                        snap = self.snapshot()
                    except DataError as exc:  # the bars still trade; the snapshot is retried next bar
                        error = f"snapshot not recorded: {exc}"
                yield Tick(now=now_ts, bars=bars, error=error, snapshot=snap)
            else:
                yield Tick(now=now_ts)
            wait = (after_ms + 2 * self.step_ms - self.now_ms()) / 1000.0
            self.sleep(min(self.poll_seconds, wait) if wait > 0 else self.poll_seconds)


def _ms(ts: pd.Timestamp) -> int:
    return int(pd.Timestamp(ts).value // 1_000_000)


def _valid_candles(df: pd.DataFrame, interval: str, url: str) -> pd.DataFrame:
    if not len(df):
        return empty_candles()
    return validate_candles(df, f"Hyperliquid candleSnapshot at {url}", interval).frame


def _valid_funding(df: pd.DataFrame, url: str) -> pd.DataFrame:
    if not len(df):
        return empty_funding()
    out = validate_funding(df, f"Hyperliquid fundingHistory at {url}").frame
    out["premium"] = out["premium"].astype(np.float64)
    return out
