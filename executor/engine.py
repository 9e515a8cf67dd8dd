"""The per-candle loop: parity with the backtest by construction.

There is no second position state machine here. On every newly closed candle the engine
1. appends the candle to its window (warm-up included) and rebuilds the Market;
2. runs the harness kernel (harness.simulate) over [session start, now] on the signals it
   ACCEPTED so far, read back from the ledger, and diffs the kernel's trades against the ledger:
   new fills, closed positions, funding and the equity row are appended (executor/kernel_sync.py);
3. asks every book for its signals at the new bar with the same strategy code as the backtest
   (executor/decisions.py), and runs the shadow signals through the kernel too
   (executor/shadow.py).

The Market gets one empty (unlisted) bar after `now`: the kernel closes what is still open on
that bar, at the last close, as `end_of_data`, so the real last bar is marked, not liquidated,
and those trades are the open positions (their entries are real, their exits are not).
Decisions at bar t fill at t+1 and cannot change the kernel's result up to t, so the kernel runs
before they are made and the exits of bar t can be restricted to positions open at its close.
All of a bar happens in one ledger transaction.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from executor import kernel_sync
from executor.books import Book, Loaded
from executor.decisions import decide
from executor.feeds import BarRows, Snapshot
from executor.ledger import Ledger, LedgerError, iso, parse
from executor.records import BarDone, Session
from executor.risk import KillSwitch, is_stale
from executor.settings import Settings, check_restart, check_universe, default_kill_file
from executor.shadow import record_shadow_trades
from executor.window import Window
from harness import store as st
from harness.errors import HarnessError
from harness.market import Market

History = tuple[pd.DataFrame, pd.DataFrame]  # warm-up candles and funding records


class Engine:
    def __init__(self, ledger: Ledger, loaded: Loaded, settings: Settings,
                 detail: Market | None = None) -> None:
        self.ledger, self.settings, self.detail = ledger, settings, detail
        self.kill = KillSwitch(Path(settings.kill_file) if settings.kill_file
                               else default_kill_file(ledger.path))
        self.step = settings.step
        self.coins = settings.coins
        self.window = Window(settings.interval, self.coins, settings.market_start,
                             f"paper ledger {ledger.path} ({settings.source})", settings.synthetic)
        self.window.add(*ledger.market_rows())
        last = ledger.get("last_ts")
        self.last_ts = parse(last) if last else None
        newest = ledger.get("newest_candle")
        self.newest_candle = parse(newest) if newest else ledger.newest_candle()
        self.n_warm = settings.row(settings.first_bar)
        self._fitted: dict[str, Any] = {}
        self.retired: dict[str, Book] = {}
        self.loaded = loaded
        check_universe(loaded, self.settings)
        session = ledger.last_session()
        if session is None:
            raise LedgerError(f"{ledger.path} has no session: it was not started by the executor")
        self.session = session
        eq = ledger.last_equity()
        self.last_equity = eq if eq is not None else session.initial_equity
        self.peak = max(ledger.peak_equity(session.id) or 0.0, session.initial_equity)
        self.last_tick: pd.Timestamp | None = None  # the feed's clock at its last tick
        self.feed_error: str | None = None
        self.feed_stale = False
        self._shadow_open: dict[str, bool] = {}  # book id -> a shadow trade open after its last run

    # ---- creating or resuming a ledger -------------------------------------------------------
    @classmethod
    def start(cls, ledger: Ledger, loaded: Loaded, settings: Settings, history: History | None = None,
              detail: Market | None = None) -> Engine:
        """Resume the ledger, or initialise it with `settings` and the warm-up `history` rows.

        Refuses (one line) a ledger started with other settings: its past would not replay.
        """
        stored = ledger.get("settings")
        if stored is not None:
            old = Settings.from_json(stored, str(ledger.path))
            check_restart(ledger.path, old, settings)
            with ledger.transaction():
                if not old.kill_file:  # a ledger from before the kill file was kept: keep it now
                    old = replace(old, kill_file=settings.kill_file)
                    ledger.set("settings", old.to_json())
                ledger.event("resume", f"resumed after {ledger.get('last_ts') or 'no bar'}")
            settings = old
        else:
            with ledger.transaction():
                ledger.set("settings", settings.to_json())
                ledger.set("harness_hash", settings.harness)
                if history is not None:
                    ledger.add_market_rows(*history)
                ledger.start_session(Session(1, settings.first_bar, settings.sim.initial_equity), "start")
                ledger.event("start", f"new ledger: {settings.feed} {settings.interval} on "
                             f"{', '.join(settings.coins)}, first bar {iso(settings.first_bar)}")
        engine = cls(ledger, loaded, settings, detail)
        if ledger.get("kill_pending") == "1":  # killed before the file could be written
            engine._write_kill_file()
        return engine

    def reload(self, loaded: Loaded) -> None:
        """New candidates (SIGHUP): books that lose all buckets keep closing their positions."""
        check_universe(loaded, self.settings)
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
        return self.settings.row(ts)

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
        n_real = self._row(ts) + 1
        kill_file = self.kill.present()
        newest = ts if len(bar.candles) else self.newest_candle
        stale = is_stale(newest, bar.now, self.step)
        led = self.ledger
        with led.transaction():
            led.add_market_rows(bar.candles, bar.funding)
            self.window.add(bar.candles, bar.funding, bar=ts)
            self._maybe_new_session(ts, kill_file)
            market = self.window.market(n_real + 1)  # + the empty bar after now
            out = kernel_sync.run_kernel(led, self.settings, self.session, market, n_real, ts,
                                         self.last_equity, self.detail)
            open_now = kernel_sync.apply(led, self.settings, self.session, out, n_real, ts)
            guard = ("kill_switch" if kill_file or led.get("killed_session") == str(self.session.id)
                     else "stale_feed" if stale else None)
            real = market.slice(0, n_real)
            books = [(b, True) for b in self.loaded.books] + [(b, False) for b in self.retired.values()]
            decided = decide(led, self.coins, books, lambda b: self._fit(b, real), real, ts,
                             open_now, guard)
            record_shadow_trades(led, self.settings, self.session, market, n_real, decided.shadows,
                                 self._shadow_open, self.detail)
            self.peak = max(self.peak, out.equity)
            led.record_bar(BarDone(iso(ts), iso(bar.now), self.session.id, len(bar.candles),
                                   int(stale), int(kill_file), self.loaded.sha, decided.n_live,
                                   decided.n_accepted, out.equity, len(open_now), self.peak))
            self._risk_events(out, ts)
            led.set("last_ts", iso(ts))
            if newest is not None:
                led.set("newest_candle", iso(newest))
        self.last_ts, self.newest_candle, self.last_equity = ts, newest, out.equity
        if led.get("kill_pending") == "1":
            self._write_kill_file()

    def _fit(self, book: Book, market: Market) -> Any:
        if book.id not in self._fitted:
            self._fitted[book.id] = book.strategy.fit(market.slice(0, self.n_warm), book.params)
        return self._fitted[book.id]

    def record_snapshot(self, snap: Snapshot, store: str) -> None:
        """The feed's asset contexts and books into the ledger and the store (one per coin and
        hour: a snapshot already there is kept). A store that cannot be written is an event,
        not a stop: the ledger keeps the snapshot."""
        led = self.ledger
        with led.transaction():
            led.record_snapshot(snap.contexts, snap.books)
        try:
            st.upsert_snapshots(store, snap.contexts, snap.books, f"paper ledger {led.path}")
        except (HarnessError, OSError) as exc:
            with led.transaction():
                led.event("snapshot_store_error", f"store {store}: {exc}", self.last_ts)

    # ---- sessions and risk events ------------------------------------------------------------
    def _maybe_new_session(self, ts: pd.Timestamp, kill_file: bool) -> None:
        """After the kernel's kill switch: a new session once a person removed the file."""
        if self.ledger.get("killed_session") != str(self.session.id) or kill_file:
            return
        if self.ledger.n_open():
            return
        s = Session(self.session.id + 1, ts, self.last_equity)
        self.ledger.start_session(s, "kill switch file removed")
        self.ledger.event("session", f"session {s.id} starts at {iso(ts)} with equity "
                          f"{s.initial_equity:.2f}: the kill-switch file was removed", ts)
        self.session, self.peak = s, s.initial_equity

    def _risk_events(self, out: kernel_sync.Outcome, ts: pd.Timestamp) -> None:
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
