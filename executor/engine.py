"""The per-candle loop: parity with the backtest by construction.

There is no second position state machine here. On every newly closed candle the engine
1. appends the candle to its window (warm-up included) and rebuilds the Market;
2. runs the harness kernel (harness.simulate, v4) over [session start, now] on the signals it
   ACCEPTED so far, read back from the ledger, and diffs the kernel's trades against the ledger:
   new fills, closed positions, funding and the equity row are appended;
3. asks every book for its signals at the new bar with the same strategy code as the backtest:
   each shadow signal becomes a `shadow` decision, each live one a `live` decision, accepted
   when it matches a promoted bucket and no guard blocks it (recorded with the reason).

The Market gets one empty (unlisted) bar after `now`: the kernel closes what is still open on
that bar, at the last close, as `end_of_data`, so the real last bar is marked, not liquidated,
and those trades are the open positions (their entries are real, their exits are not).
Decisions at bar t fill at t+1 and cannot change the kernel's result up to t, so the kernel runs
before they are made and the exits of bar t can be restricted to positions open at its close.

Shadow trades (what the loose net would have done, evidence for `sweep promote`): after step 3,
each active book's shadow signals of this session (the Signals step 3 already generated, not
masked by buckets or guards; the cell of bar t itself dropped, it fills at t+1) go through the
same kernel, friction and SimConfig, alone, over [session start, now]; its closed trades are
added to `shadow_trades` once (key: strategy, coin, entry_ts, side; two books of one strategy:
the first book's). The run is skipped on a bar where nothing can close or open: no shadow trade
was open after the previous run and the book had no shadow signal at t - 1 (after a restart the
first bar always runs). Retired books record no shadow trades.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from executor.books import TRADED_FRICTION, Book, Loaded, bucket_key
from executor.feeds import BarRows
from executor.ledger import Ledger, LedgerError, iso, iso_many, parse
from executor.risk import KillSwitch, bucket_kill, is_stale
from executor.window import Window
from harness import kernel_layout as L
from harness.errors import ConfigError
from harness.manifest import harness_hash
from harness.market import Market, interval_seconds
from harness.signals import REGIMES, SESSIONS, SIDES, VOL_BUCKETS, Signals
from harness.simulate import SimConfig, simulate

FRICTION = TRADED_FRICTION
SIDE_OF = {"long": 1, "short": -1}


@dataclass(frozen=True)
class Settings:
    """What a ledger was started with; a restart must agree with it."""

    interval: str
    coins: tuple[str, ...]  # the universe, sorted (bar and coin indices never shift)
    market_start: pd.Timestamp  # first warm-up bar
    first_bar: pd.Timestamp  # first bar traded
    sim: SimConfig
    feed: str
    source: str
    synthetic: bool
    harness: str
    friction: str = FRICTION.version
    detail: str | None = None  # intrabar detail interval of a replay

    def to_json(self) -> str:
        d = asdict(self)
        d["market_start"], d["first_bar"] = iso(self.market_start), iso(self.first_bar)
        d["coins"] = list(self.coins)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        d = json.loads(text)
        return cls(**dict(d, coins=tuple(d["coins"]), market_start=parse(d["market_start"]),
                          first_bar=parse(d["first_bar"]), sim=SimConfig(**d["sim"])))


@dataclass(frozen=True)
class Session:
    id: int
    start: pd.Timestamp
    initial_equity: float


@dataclass(frozen=True)
class Outcome:
    trades: pd.DataFrame | None  # None: the fast path (flat, nothing pending) skipped the kernel
    fills: pd.DataFrame | None  # the kernel's fill status of every accepted signal of the session
    equity: float
    killed: bool
    halts: int


class _Row(dict):
    """A trade record with attribute access."""

    __getattr__ = dict.__getitem__


def _f(v: Any) -> float:
    return float("nan") if v is None else float(v)


class Engine:
    def __init__(self, ledger: Ledger, loaded: Loaded, settings: Settings, kill: KillSwitch,
                 detail: Market | None = None) -> None:
        self.ledger, self.settings, self.kill = ledger, settings, kill
        self.detail = detail
        self.step = pd.Timedelta(seconds=interval_seconds(settings.interval))
        self.coins = settings.coins
        self.coin_idx = {c: i for i, c in enumerate(self.coins)}
        self.window = Window(settings.interval, self.coins, settings.market_start,
                             f"paper ledger {ledger.path} ({settings.source})", settings.synthetic)
        c = ledger.frame("SELECT coin, ts, open, high, low, close, volume FROM candles")
        f = ledger.frame("SELECT coin, ts, funding_rate, premium FROM funding_rates")
        self.window.add(_with_ts(c), _with_ts(f, float_cols=("funding_rate", "premium")))
        last = ledger.get("last_ts")
        self.last_ts = parse(last) if last else None
        newest = ledger.get("newest_candle")
        self.newest_candle = parse(newest) if newest else (
            parse(ledger.scalar("SELECT MAX(ts) FROM candles")) if len(c) else None)
        self.n_warm = self._row(settings.first_bar)
        self._fitted: dict[str, Any] = {}
        self.retired: dict[str, Book] = {}
        self.loaded = loaded
        self._check_universe(loaded)
        self.session = self._load_session()
        eq = ledger.scalar("SELECT equity FROM equity ORDER BY ts DESC LIMIT 1")
        self.last_equity = float(eq) if eq is not None else self.session.initial_equity
        peak = ledger.scalar("SELECT MAX(equity) FROM equity WHERE session = ?", (self.session.id,))
        self.peak = max(float(peak) if peak is not None else 0.0, self.session.initial_equity)
        self.last_tick: pd.Timestamp | None = None  # the feed's clock at its last tick
        self.feed_error: str | None = None
        self.feed_stale = False
        self._shadow_open: dict[str, bool] = {}  # book id -> a shadow trade open after its last run

    # ---- creating or resuming a ledger -------------------------------------------------------
    @classmethod
    def start(cls, ledger: Ledger, loaded: Loaded, settings: Settings, kill: KillSwitch,
              history: Any = None, detail: Market | None = None) -> Engine:
        """Resume the ledger, or initialise it with `settings` and the warm-up `history()` rows.

        Refuses (one line) a ledger started with other settings: its past would not replay.
        """
        stored = ledger.get("settings")
        if stored is not None:
            old = Settings.from_json(stored)
            keys = ("interval", "sim", "feed", "harness", "friction", "detail") + (
                ("market_start", "first_bar") if settings.feed == "replay" else ())
            diffs = [k for k in keys if getattr(old, k) != getattr(settings, k)]
            if diffs:
                k = diffs[0]
                fix = ("its past would not replay under this harness: use a new --ledger"
                       if k in ("harness", "friction") else "pass the same options or use a new --ledger")
                raise LedgerError(f"{ledger.path} was started with {k}={_show(getattr(old, k))}, "
                                  f"now {_show(getattr(settings, k))}: {fix}")
            settings = old
            with ledger.transaction():
                ledger.event("resume", f"resumed after {ledger.get('last_ts') or 'no bar'}")
        else:
            candles, funding = history() if history is not None else (None, None)
            with ledger.transaction():
                ledger.set("settings", settings.to_json())
                ledger.set("harness_hash", settings.harness)
                if candles is not None:
                    _insert_rows(ledger, candles, funding)
                ledger.con.execute("INSERT INTO sessions (id, start_ts, initial_equity, reason) "
                                   "VALUES (1, ?, ?, 'start')",
                                   (iso(settings.first_bar), settings.sim.initial_equity))
                ledger.event("start", f"new ledger: {settings.feed} {settings.interval} on "
                             f"{', '.join(settings.coins)}, first bar {iso(settings.first_bar)}")
        engine = cls(ledger, loaded, settings, kill, detail)
        if ledger.get("kill_pending") == "1":  # killed before the file could be written
            engine._write_kill_file()
        return engine

    def _load_session(self) -> Session:
        row = self.ledger.con.execute(
            "SELECT id, start_ts, initial_equity FROM sessions ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            raise LedgerError(f"{self.ledger.path} has no session: it was not started by the executor")
        return Session(int(row[0]), parse(row[1]), float(row[2]))

    def _check_universe(self, loaded: Loaded) -> None:
        if loaded.interval != self.settings.interval:
            raise ConfigError(f"candidates trade {loaded.interval} bars; this ledger runs "
                              f"{self.settings.interval}: use a new --ledger")
        outside = sorted(set(loaded.coins) - set(self.coins))
        if outside:
            raise ConfigError(f"candidates trade {', '.join(outside)}, outside this ledger's coins "
                              f"({', '.join(self.coins)}): use a new --ledger for a new universe")

    def reload(self, loaded: Loaded) -> None:
        """New candidates (SIGHUP): books that lose all buckets keep closing their positions."""
        self._check_universe(loaded)
        new_ids = {b.id for b in loaded.books}
        for b in self.loaded.books:
            if b.id not in new_ids:
                self.retired[b.id] = b
        for i in new_ids:
            self.retired.pop(i, None)
        self.loaded = loaded
        with self.ledger.transaction():
            self.ledger.event("reload", f"candidates {loaded.path} sha {loaded.sha}: "
                              f"{loaded.n_buckets} bucket(s) in {len(loaded.books)} book(s)",
                              self.last_ts)

    # ---- geometry ----------------------------------------------------------------------------
    def _row(self, ts: pd.Timestamp) -> int:
        return int((ts - self.settings.market_start) // self.step)

    @property
    def next_bar(self) -> pd.Timestamp:
        return self.last_ts + self.step if self.last_ts is not None else self.settings.first_bar

    # ---- the loop ----------------------------------------------------------------------------
    def process(self, bar: BarRows) -> int:
        """Process a newly closed bar (and any empty bars before it); 0 when already done."""
        if bar.ts < self.next_bar:
            return 0
        done = 0
        while self.next_bar < bar.ts:  # bars no coin traded in: processed as gaps
            self._process(BarRows(self.next_bar, bar.candles.iloc[:0], bar.funding.iloc[:0], bar.now))
            done += 1
        self._process(bar)
        return done + 1

    def _process(self, bar: BarRows) -> None:
        ts = bar.ts
        t = self._row(ts)
        n_real = t + 1
        kill_file = self.kill.present()
        newest = ts if len(bar.candles) else self.newest_candle
        stale = is_stale(newest, bar.now, self.step)
        led = self.ledger
        with led.transaction():
            _insert_rows(led, bar.candles, bar.funding)
            self.window.add(bar.candles, bar.funding, bar=ts)
            self._maybe_new_session(ts, kill_file)
            market = self.window.market(n_real + 1)  # + the empty bar after now
            out = self._kernel(market, n_real, ts)
            open_now = self._apply(out, market, n_real, ts)
            n_live, n_acc, shadows = self._decide(market, n_real, ts, open_now, kill_file, stale)
            self._shadow_trades(market, n_real, shadows)
            self.peak = max(self.peak, out.equity)
            led.con.execute(
                "INSERT INTO equity (ts, session, equity, n_open, peak, drawdown) VALUES (?, ?, ?, ?, ?, ?)",
                (iso(ts), self.session.id, out.equity, len(open_now), self.peak,
                 1.0 - out.equity / self.peak if self.peak > 0 else 0.0))
            led.con.execute(
                "INSERT INTO bars (ts, clock, session, n_candles, stale, kill_file, candidates, "
                "n_live, n_accepted, equity, n_open) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (iso(ts), iso(bar.now), self.session.id, len(bar.candles), int(stale), int(kill_file),
                 self.loaded.sha, n_live, n_acc, out.equity, len(open_now)))
            self._risk_events(out, ts)
            led.set("last_ts", iso(ts))
            if newest is not None:
                led.set("newest_candle", iso(newest))
        self.last_ts, self.newest_candle, self.last_equity = ts, newest, out.equity
        if led.get("kill_pending") == "1":
            self._write_kill_file()

    # ---- sessions and risk events ------------------------------------------------------------
    def _maybe_new_session(self, ts: pd.Timestamp, kill_file: bool) -> None:
        """After the kernel's kill switch: a new session once a person removed the file."""
        if self.ledger.get("killed_session") != str(self.session.id) or kill_file:
            return
        n_open = self.ledger.scalar("SELECT COUNT(*) FROM positions WHERE status = 'open'")
        if n_open:
            return
        s = Session(self.session.id + 1, ts, self.last_equity)
        self.ledger.con.execute("INSERT INTO sessions (id, start_ts, initial_equity, reason) "
                                "VALUES (?, ?, ?, 'kill switch file removed')",
                                (s.id, iso(ts), s.initial_equity))
        self.ledger.event("session", f"session {s.id} starts at {iso(ts)} with equity "
                          f"{s.initial_equity:.2f}: the kill-switch file was removed", ts)
        self.session, self.peak = s, s.initial_equity

    def _risk_events(self, out: Outcome, ts: pd.Timestamp) -> None:
        led = self.ledger
        sid = str(self.session.id)
        if out.killed and led.get("killed_session") != sid:
            led.set("killed_session", sid)
            led.set("kill_pending", "1")
            led.set("kill_message", f"drawdown kill switch tripped at the close of {iso(ts)}: "
                    f"equity {out.equity:.2f}, peak {self.peak:.2f} "
                    f"(limit {self.settings.sim.kill_drawdown:.0%}); positions flattened")
            led.event("kill_switch", led.get("kill_message"), ts)
        seen = int(led.get(f"halts_seen:{sid}", "0"))
        if out.halts > seen:
            led.set(f"halts_seen:{sid}", out.halts)
            led.set("daily_halt_day", ts.strftime("%Y-%m-%d"))
            led.event("daily_halt", f"daily loss halt at the close of {iso(ts)}: no new entries "
                      "until 00:00 UTC", ts)

    def _write_kill_file(self) -> None:
        self.kill.write(self.ledger.get("kill_message", "drawdown kill switch"))
        with self.ledger.transaction():
            self.ledger.set("kill_pending", "0")
            self.ledger.event("kill_file", f"wrote {self.kill.path}", self.last_ts)

    # ---- the kernel and the diff -------------------------------------------------------------
    def _kernel(self, market: Market, n_real: int, ts: pd.Timestamp) -> Outcome:
        led = self.ledger
        sid = self.session.id
        s_idx = self._row(self.session.start)
        n_open = led.scalar("SELECT COUNT(*) FROM positions WHERE status = 'open' AND session = ?", (sid,))
        pending = led.scalar("SELECT COUNT(*) FROM decisions WHERE kind = 'live' AND accepted = 1 "
                             "AND ts = ?", (iso(ts - self.step),))
        halts = int(led.get(f"halts_seen:{sid}", "0"))
        killed = led.get("killed_session") == str(sid)
        if not n_open and (not pending or ts - self.step < self.session.start):
            # flat, nothing to fill: the kernel would only repeat the last equity
            eq = self.last_equity if ts > self.session.start else self.session.initial_equity
            return Outcome(None, None, eq, killed, halts)
        sig = self._accepted(market, s_idx)
        cfg = replace(self.settings.sim, initial_equity=self.session.initial_equity)
        res = simulate(market, sig, FRICTION, cfg, segments=[(s_idx, n_real + 1)],
                       detail=self.detail)
        equity = res.equity(0)
        st = res.seg_stats[0, 0]
        return Outcome(res.trades(0), res.fill_status(0), float(equity.iloc[-2]),
                       bool(st[L.S_KILLED] > 0), int(st[L.S_HALTS]))

    def _accepted(self, market: Market, s_idx: int) -> Signals:
        """The accepted decisions of this session as one Signals (highest score per cell)."""
        led = self.ledger
        start = iso(self.session.start)
        sig = Signals.empty(market, "paper")
        d = led.frame(
            "SELECT ts, coin, book, strategy, bucket, side, stop, target, score, session, regime, "
            "vol_bucket, setup, hold, trail FROM decisions WHERE kind = 'live' AND accepted = 1 "
            "AND ts >= ? ORDER BY ts, coin, score DESC, book", (start,))
        d = d.drop_duplicates(["ts", "coin"], keep="first")
        self._winners = {(ts, coin): (book, strat, bucket) for ts, coin, book, strat, bucket in zip(
            d["ts"], d["coin"], d["book"], d["strategy"], d["bucket"], strict=True)}
        if len(d):
            r, c = self._cells(d)
            sig.direction[r, c] = d["side"].to_numpy(np.int8)
            sig.stop[r, c] = d["stop"].astype(float).to_numpy()
            sig.target[r, c] = d["target"].map(_f).to_numpy(np.float64)
            sig.score[r, c] = d["score"].astype(float).to_numpy()
            sig.session[r, c] = [SESSIONS.index(x) for x in d["session"]]
            sig.regime[r, c] = [REGIMES.index(x) for x in d["regime"]]
            sig.vol_bucket[r, c] = [VOL_BUCKETS.index(x) for x in d["vol_bucket"]]
            sig.setup[r, c] = d["setup"].to_numpy(np.int64)
            sig.hold[r, c] = d["hold"].to_numpy(np.int32)
            sig.trail[r, c] = d["trail"].map(_f).to_numpy(np.float64)
        x = led.frame("SELECT ts, coin FROM decisions WHERE kind = 'exit' AND accepted = 1 AND ts >= ?",
                      (start,))
        if len(x):
            sig.exit[self._cells(x)] = True
        return sig

    def _cells(self, d: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(bar, coin) indices of ledger rows with ts and coin columns."""
        ts = pd.DatetimeIndex(pd.to_datetime(d["ts"], utc=True)).as_unit("ns").asi8
        start = self.settings.market_start.as_unit("ns").value
        rows = (ts - start) // self.step.value
        return rows.astype(np.int64), np.array([self.coin_idx[x] for x in d["coin"]], dtype=np.int64)

    def _apply(self, out: Outcome, market: Market, n_real: int, ts: pd.Timestamp) -> dict[str, tuple[int, str]]:
        """Append what the kernel did since the last bar; return {coin: (side, book)} open now."""
        led = self.ledger
        sid = self.session.id
        known = {(r["coin"], r["entry_ts"]): _Row(r) for r in led.frame(
            "SELECT id, coin, entry_ts, status, partial_taken, funding, book, side, size FROM positions "
            "WHERE session = ?", (sid,)).to_dict("records")}
        open_now: dict[str, tuple[int, str]] = {}
        seen_open: set[int] = set()
        if out.trades is not None:
            trades = out.trades
            done = {k for k, r in known.items() if r.status == "closed"}
            keys = list(zip(trades["coin"], iso_many(trades["entry_ts"]), strict=True))
            todo = trades[[k not in done for k in keys]]
            for tr in todo.to_dict("records"):
                tr = _Row(tr)
                key = (tr.coin, iso(tr.entry_ts))
                is_open = tr.exit_reason == "end_of_data" and tr.exit_bar == n_real
                pos = known.get(key)
                if pos is None:
                    pid, book = self._open_position(tr, ts)
                    partial_before, funding_before = 0, 0.0
                else:
                    pid, book = int(pos.id), pos.book
                    partial_before, funding_before = int(pos.partial_taken), float(pos.funding)
                delta = float(tr.funding) - funding_before
                if delta != 0.0:
                    led.con.execute("INSERT INTO funding (ts, position_id, coin, amount) VALUES (?, ?, ?, ?)",
                                    (iso(ts), pid, tr.coin, delta))
                if tr.partial_taken and not partial_before:
                    self._partial_fill(tr, pid, ts)
                if is_open:
                    seen_open.add(pid)
                    open_now[tr.coin] = (int(tr.side), book)
                    led.con.execute("UPDATE positions SET funding = ?, partial_taken = ?, unrealized = ? "
                                    "WHERE id = ?", (float(tr.funding), int(tr.partial_taken), float(tr.pnl), pid))
                else:
                    self._close_position(tr, pid, ts)
        if out.trades is None:
            still = led.frame("SELECT coin, side, book FROM positions WHERE status = 'open' AND session = ?", (sid,))
            open_now = {r["coin"]: (int(r["side"]), r["book"]) for r in still.to_dict("records")}
        else:
            ids = {int(r[0]) for r in led.con.execute(
                "SELECT id FROM positions WHERE status = 'open' AND session = ?", (sid,))}
            if ids != seen_open:
                raise LedgerError(f"{led.path}: the kernel and the ledger disagree on the open positions "
                                  f"at {iso(ts)}; was the ledger edited by hand?")
        self._resolve_orders(ts, out.fills)
        return open_now

    def _open_position(self, tr: Any, ts: pd.Timestamp) -> tuple[int, str]:
        led = self.ledger
        signal_ts = iso(self.settings.market_start + int(tr.signal_bar) * self.step)
        book, strategy, bucket = self._winners.get((signal_ts, tr.coin), ("?", "?", "?"))
        cur = led.con.execute(
            "INSERT INTO positions (session, coin, side, book, strategy, bucket, signal_ts, entry_ts, "
            "entry_price, size, notional, stop_distance, status, partial_taken, fees, funding) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', 0, ?, 0.0)",
            (self.session.id, tr.coin, int(tr.side), book, strategy, bucket, signal_ts,
             iso(tr.entry_ts), float(tr.entry_price), float(tr.size), float(tr.notional),
             float(tr.stop_distance), float(tr.entry_fee)))
        pid = int(cur.lastrowid)
        self._fill(iso(tr.entry_ts), ts, pid, tr.coin, int(tr.side), "entry", "signal", tr.size,
                   tr.entry_price, tr.entry_fee, tr.entry_slippage_bps)
        led.con.execute("UPDATE orders SET status = 'filled', fill_ts = ?, position_id = ? "
                        "WHERE ts = ? AND coin = ? AND book = ?",
                        (iso(tr.entry_ts), pid, signal_ts, tr.coin, book))
        return pid, book

    def _fill(self, when: str, ts: pd.Timestamp, pid: int, coin: str, side: int, kind: str,
              reason: str, qty: Any, price: Any, fee: Any, slippage_bps: Any) -> None:
        """One fill as the kernel booked it (price with slippage, fee, slippage paid)."""
        self.ledger.con.execute(
            "INSERT INTO fills (ts, bar_ts, position_id, coin, side, kind, reason, qty, price, fee, "
            "slippage_bps) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (when, iso(ts), pid, coin, side, kind, reason, float(qty), float(price), float(fee),
             float(slippage_bps)))

    def _partial_fill(self, tr: Any, pid: int, ts: pd.Timestamp) -> None:
        self._fill(iso(tr.partial_ts), ts, pid, tr.coin, -int(tr.side), "partial", "partial",
                   tr.partial_qty, tr.partial_price, tr.partial_fee, tr.partial_slippage_bps)
        self.ledger.con.execute("UPDATE positions SET fees = fees + ? WHERE id = ?",
                                (float(tr.partial_fee), pid))

    def _close_position(self, tr: Any, pid: int, ts: pd.Timestamp) -> None:
        self._fill(iso(tr.exit_ts), ts, pid, tr.coin, -int(tr.side), "exit", tr.exit_reason,
                   tr.exit_qty, tr.exit_price, tr.exit_fee, tr.exit_slippage_bps)
        self.ledger.con.execute(
            "UPDATE positions SET status = 'closed', partial_taken = ?, fees = ?, funding = ?, "
            "unrealized = NULL, exit_ts = ?, exit_price = ?, exit_reason = ?, pnl = ?, r_multiple = ? "
            "WHERE id = ?",
            (int(tr.partial_taken), float(tr.fees), float(tr.funding), iso(tr.exit_ts),
             float(tr.exit_price), tr.exit_reason, float(tr.pnl), float(tr.r_multiple), pid))

    def _resolve_orders(self, ts: pd.Timestamp, fills: pd.DataFrame | None) -> None:
        """Orders decided before this bar that did not fill at its open: the kernel says why."""
        led = self.ledger
        rows = led.frame("SELECT id, ts, coin, book FROM orders WHERE status = 'pending' AND ts < ?",
                         (iso(ts),))
        if not len(rows):
            return
        status = {}
        if fills is not None:
            at = self.settings.market_start + fills["signal_bar"].to_numpy() * self.step
            status = dict(zip(zip(iso_many(at), fills["coin"], strict=True), fills["status"],
                              strict=True))
        for r in map(_Row, rows.to_dict("records")):
            winner = self._winners.get((r.ts, r.coin)) if fills is not None else None
            if winner is not None and winner[0] != r.book:
                why = f"lost to book {winner[0]} (higher score on the coin)"
            else:
                why = status.get((r.ts, r.coin), "outside_session")
            led.con.execute("UPDATE orders SET status = 'unfilled', reason = ? WHERE id = ?", (why, int(r.id)))

    # ---- decisions ---------------------------------------------------------------------------
    def _fit(self, book: Book, market: Market) -> Any:
        if book.id not in self._fitted:
            self._fitted[book.id] = book.strategy.fit(market.slice(0, self.n_warm), book.params)
        return self._fitted[book.id]

    def _decide(self, market: Market, n_real: int, ts: pd.Timestamp,
                open_now: dict[str, tuple[int, str]], kill_file: bool,
                stale: bool) -> tuple[int, int, list[tuple[Book, Signals]]]:
        """Shadow, live and exit decisions at bar ts; returns (live signals, accepted, the active
        books' shadow Signals over the window)."""
        real = market.slice(0, n_real)
        t = n_real - 1
        guard = "kill_switch" if kill_file or self.ledger.get("killed_session") == str(self.session.id) \
            else "stale_feed" if stale else None
        n_live = n_acc = 0
        rows, exits, shadows = [], [], []
        books = [(b, True) for b in self.loaded.books] + [(b, False) for b in self.retired.values()]
        for book, active in books:
            fitted = self._fit(book, real)
            live = book.strategy.generate(real, book.params, "live", fitted)
            if active:
                shadow = book.strategy.generate(real, book.params, "shadow", fitted)
                shadows.append((book, shadow))
                for c in np.flatnonzero(shadow.direction[t]):
                    rows.append(self._row_of(shadow, book, t, c, ts, "shadow", None, 0, "shadow"))
                for c in np.flatnonzero(live.direction[t]):
                    n_live += 1
                    tags = _tags(live, t, c)
                    coin = self.coins[c]
                    bucket = book.match(coin, *tags)
                    if bucket is None:
                        reason = "no_bucket"
                    elif guard:
                        reason = guard
                    else:
                        reason = self._bucket_killed(book, bucket) or "accepted"
                    ok = reason == "accepted"
                    n_acc += ok
                    rows.append(self._row_of(live, book, t, c, ts, "live", bucket, int(ok), reason))
                    side = int(live.direction[t, c])
                    if ok:
                        self.ledger.con.execute(
                            "INSERT INTO orders (ts, coin, book, strategy, bucket, side, score, stop, status) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
                            (iso(ts), coin, book.id, book.name, bucket_key(bucket), side,
                             float(live.score[t, c]), float(live.stop[t, c])))
                    elif bucket is not None and open_now.get(coin, (0,))[0] == -side:
                        # a blocked reversal still closes the open position (no new entry)
                        exits.append((iso(ts), coin, book.id, book.name, "reversal_blocked"))
            for c in np.flatnonzero(live.exit[t]):
                coin = self.coins[c]
                if open_now.get(coin, (0, ""))[1] == book.id:
                    exits.append((iso(ts), coin, book.id, book.name, "strategy_exit"))
        self.ledger.con.executemany(
            "INSERT INTO decisions (ts, coin, book, kind, strategy, side, stop, target, score, session, "
            "regime, vol_bucket, setup, hold, trail, bucket, accepted, reason) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self.ledger.con.executemany(
            "INSERT OR IGNORE INTO decisions (ts, coin, book, kind, strategy, side, accepted, reason) "
            "VALUES (?, ?, ?, 'exit', ?, 0, 1, ?)", exits)
        return n_live, n_acc, shadows

    def _shadow_trades(self, market: Market, n_real: int, shadows: list[tuple[Book, Signals]]) -> None:
        """Run the kernel on each book's shadow signals of this session; add its closed trades."""
        s_idx, t = self._row(self.session.start), n_real - 1
        cfg = replace(self.settings.sim, initial_equity=self.session.initial_equity)
        for book, shadow in shadows:
            fresh = t - 1 >= s_idx and bool(shadow.direction[t - 1].any())
            if not (fresh or self._shadow_open.get(book.id, True)):
                continue
            sig = Signals.empty(market, shadow.strategy)
            for name in sig.array_names():
                getattr(sig, name)[:n_real] = getattr(shadow, name)
            sig.direction[t:] = 0  # bar t's signals fill at t + 1: the next bar's run
            res = simulate(market, sig, FRICTION, cfg, segments=[(s_idx, n_real + 1)],
                           detail=self.detail)
            trades = res.trades(0)
            is_open = (trades["exit_reason"] == "end_of_data") & (trades["exit_bar"] == n_real)
            self._shadow_open[book.id] = bool(is_open.any())
            done = trades[~is_open.to_numpy()]
            if not len(done):
                continue
            self.ledger.con.executemany(
                "INSERT OR IGNORE INTO shadow_trades (strategy, coin, side, book, session, regime, "
                "vol_bucket, entry_ts, exit_ts, r_multiple, pnl, fees, funding, exit_reason, friction) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                zip([book.name] * len(done), done["coin"].astype(str), done["side"].astype(int).tolist(),
                    [book.id] * len(done), done["session"].astype(str), done["regime"].astype(str),
                    done["vol_bucket"].astype(str), iso_many(done["entry_ts"]), iso_many(done["exit_ts"]),
                    *(done[k].astype(float).tolist() for k in ("r_multiple", "pnl", "fees", "funding")),
                    done["exit_reason"].astype(str), [FRICTION.version] * len(done), strict=True))

    def _row_of(self, sig: Signals, book: Book, t: int, c: int, ts: pd.Timestamp, kind: str,
                bucket: Any, accepted: int, reason: str) -> tuple:
        tgt, trail = float(sig.target[t, c]), float(sig.trail[t, c])
        return (iso(ts), self.coins[c], book.id, kind, book.name, int(sig.direction[t, c]),
                float(sig.stop[t, c]), None if math.isnan(tgt) else tgt, float(sig.score[t, c]),
                *_tags(sig, t, c)[1:], int(sig.setup[t, c]), int(sig.hold[t, c]),
                None if math.isnan(trail) else trail,
                bucket_key(bucket) if bucket is not None else None, accepted, reason)

    def _bucket_killed(self, book: Book, bucket: Any) -> str | None:
        r = self.ledger.frame("SELECT r_multiple FROM positions WHERE status = 'closed' AND book = ? "
                              "AND bucket = ? ORDER BY exit_ts, id", (book.id, bucket_key(bucket)))
        why = bucket_kill(r["r_multiple"].astype(float).to_numpy(), bucket.kill)
        return f"bucket_kill: {why}" if why else None


def _tags(sig: Signals, t: int, c: int) -> tuple[str, str, str, str]:
    """(side, session, regime, vol_bucket) names of a signal cell."""
    return (SIDES[int(sig.direction[t, c])], SESSIONS[sig.session[t, c]], REGIMES[sig.regime[t, c]],
            VOL_BUCKETS[sig.vol_bucket[t, c]])


def _insert_rows(led: Ledger, candles: pd.DataFrame, funding: pd.DataFrame) -> None:
    if candles is not None and len(candles):
        led.con.executemany(
            "INSERT OR IGNORE INTO candles (coin, ts, open, high, low, close, volume) VALUES (?, ?, ?, ?, ?, ?, ?)",
            zip(candles["coin"].astype(str), iso_many(candles["ts"]), *(candles[k].to_numpy(np.float64).tolist()
                for k in ("open", "high", "low", "close", "volume")), strict=True))
    if funding is not None and len(funding):
        prem = [None if not np.isfinite(p) else p for p in funding["premium"].to_numpy(np.float64).tolist()]
        led.con.executemany(
            "INSERT OR IGNORE INTO funding_rates (coin, ts, funding_rate, premium) VALUES (?, ?, ?, ?)",
            zip(funding["coin"].astype(str), iso_many(funding["ts"]),
                funding["funding_rate"].to_numpy(np.float64).tolist(), prem, strict=True))


def _with_ts(df: pd.DataFrame, float_cols: tuple[str, ...] = ("open", "high", "low", "close", "volume")) -> pd.DataFrame:
    df = df.copy()
    df["ts"] = pd.to_datetime(df["ts"], utc=True).astype("datetime64[ns, UTC]")
    for c in float_cols:
        df[c] = df[c].astype(np.float64)
    return df


def _show(v: Any) -> str:
    if isinstance(v, pd.Timestamp):
        return iso(v)
    if isinstance(v, tuple):
        return ",".join(map(str, v))
    return str(v)


def settings_for(loaded: Loaded, extra_coins: tuple[str, ...], market_start: pd.Timestamp,
                 first_bar: pd.Timestamp, sim: SimConfig, feed: str, source: str,
                 synthetic: bool, detail: str | None = None) -> Settings:
    coins = tuple(sorted(set(loaded.coins) | set(extra_coins) | {"BTC"}))
    return Settings(interval=loaded.interval, coins=coins, market_start=market_start,
                    first_bar=first_bar, sim=sim, feed=feed, source=source, synthetic=synthetic,
                    harness=harness_hash(), detail=detail)


def default_kill_file(ledger: Path) -> Path:
    return ledger.with_name(ledger.name + ".KILL")
