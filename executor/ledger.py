"""The paper ledger: one SQLite file in WAL mode, one writer, a schema version with migrations.

Every closed candle is processed in ONE transaction (its candles, decisions, orders, fills,
positions, funding, equity and the `bars` row that marks it done), so a killed executor either
did a bar completely or not at all, and a restart resumes at the first bar without a `bars` row.
Times are ISO-8601 UTC text ("2025-03-01T13:00:00Z"): sortable, and readable in any SQLite
client. One writer is enforced with an exclusive lock on `<ledger>.lock`.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import HarnessError

SCHEMA_VERSION = 3

# MIGRATIONS[i] takes a ledger from schema version i to i + 1 (0 is an empty file).
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE candles (coin TEXT NOT NULL, ts TEXT NOT NULL, open REAL NOT NULL,
            high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL, volume REAL NOT NULL,
            PRIMARY KEY (coin, ts)) WITHOUT ROWID""",
        """CREATE TABLE funding_rates (coin TEXT NOT NULL, ts TEXT NOT NULL,
            funding_rate REAL NOT NULL, premium REAL, PRIMARY KEY (coin, ts)) WITHOUT ROWID""",
        """CREATE TABLE sessions (id INTEGER PRIMARY KEY, start_ts TEXT NOT NULL,
            initial_equity REAL NOT NULL, reason TEXT NOT NULL)""",
        """CREATE TABLE bars (ts TEXT PRIMARY KEY, clock TEXT NOT NULL, session INTEGER NOT NULL,
            n_candles INTEGER NOT NULL, stale INTEGER NOT NULL, kill_file INTEGER NOT NULL,
            candidates TEXT NOT NULL, n_live INTEGER NOT NULL, n_accepted INTEGER NOT NULL,
            equity REAL NOT NULL, n_open INTEGER NOT NULL)""",
        """CREATE TABLE decisions (ts TEXT NOT NULL, coin TEXT NOT NULL, book TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('shadow', 'live', 'exit')), strategy TEXT NOT NULL,
            side INTEGER NOT NULL, stop REAL, target REAL, score REAL, session TEXT, regime TEXT,
            vol_bucket TEXT, setup INTEGER, hold INTEGER, trail REAL, bucket TEXT,
            accepted INTEGER NOT NULL, reason TEXT NOT NULL,
            PRIMARY KEY (ts, coin, book, kind))""",
        """CREATE TABLE orders (id INTEGER PRIMARY KEY, ts TEXT NOT NULL, coin TEXT NOT NULL,
            book TEXT NOT NULL, strategy TEXT NOT NULL, bucket TEXT NOT NULL, side INTEGER NOT NULL,
            score REAL NOT NULL, stop REAL NOT NULL, status TEXT NOT NULL, reason TEXT,
            fill_ts TEXT, position_id INTEGER, UNIQUE (ts, coin, book))""",
        """CREATE TABLE positions (id INTEGER PRIMARY KEY, session INTEGER NOT NULL,
            coin TEXT NOT NULL, side INTEGER NOT NULL, book TEXT NOT NULL, strategy TEXT NOT NULL,
            bucket TEXT NOT NULL, signal_ts TEXT NOT NULL, entry_ts TEXT NOT NULL,
            entry_price REAL NOT NULL, size REAL NOT NULL, notional REAL NOT NULL,
            stop_distance REAL NOT NULL, status TEXT NOT NULL, partial_taken INTEGER NOT NULL,
            fees REAL NOT NULL, funding REAL NOT NULL, unrealized REAL, exit_ts TEXT,
            exit_price REAL, exit_reason TEXT, pnl REAL, r_multiple REAL,
            UNIQUE (session, coin, entry_ts))""",
        """CREATE TABLE fills (id INTEGER PRIMARY KEY, ts TEXT NOT NULL, bar_ts TEXT NOT NULL,
            position_id INTEGER NOT NULL, coin TEXT NOT NULL, side INTEGER NOT NULL,
            kind TEXT NOT NULL, reason TEXT NOT NULL, qty REAL NOT NULL, price REAL NOT NULL,
            fee REAL NOT NULL, UNIQUE (position_id, kind))""",
        """CREATE TABLE funding (ts TEXT NOT NULL, position_id INTEGER NOT NULL,
            coin TEXT NOT NULL, amount REAL NOT NULL, PRIMARY KEY (ts, position_id))""",
        """CREATE TABLE equity (ts TEXT PRIMARY KEY, session INTEGER NOT NULL,
            equity REAL NOT NULL, n_open INTEGER NOT NULL, peak REAL NOT NULL,
            drawdown REAL NOT NULL)""",
        """CREATE TABLE events (id INTEGER PRIMARY KEY, wall TEXT NOT NULL, clock TEXT,
            kind TEXT NOT NULL, message TEXT NOT NULL)""",
        "CREATE INDEX decisions_kind ON decisions (kind, accepted, ts)",
        "CREATE INDEX positions_status ON positions (status, session)",
    ),
    (  # v2: the closed trades of the shadow signals (what the loose net would have done)
        """CREATE TABLE shadow_trades (strategy TEXT NOT NULL, coin TEXT NOT NULL,
            side INTEGER NOT NULL, book TEXT NOT NULL, session TEXT NOT NULL, regime TEXT NOT NULL,
            vol_bucket TEXT NOT NULL, entry_ts TEXT NOT NULL, exit_ts TEXT NOT NULL,
            r_multiple REAL NOT NULL, pnl REAL NOT NULL, fees REAL NOT NULL, funding REAL NOT NULL,
            exit_reason TEXT NOT NULL, friction TEXT NOT NULL,
            PRIMARY KEY (strategy, coin, entry_ts, side))""",
    ),
    (  # v3 (harness v2): the slippage each fill paid, as the kernel booked it
        "ALTER TABLE fills ADD COLUMN slippage_bps REAL",
    ),
)
TABLES = ("meta", "candles", "funding_rates", "sessions", "bars", "decisions", "orders",
          "positions", "fills", "funding", "equity", "events", "shadow_trades")


class LedgerError(HarnessError):
    """A ledger that cannot be opened or written as asked."""


def iso(ts: pd.Timestamp | int) -> str:
    """The ledger's time format; an int is nanoseconds since the epoch."""
    t = pd.Timestamp(ts, tz="UTC") if isinstance(ts, int) else pd.Timestamp(ts)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_many(values) -> list[str]:
    """`iso` of many times at once (datetime64 or Timestamps)."""
    ns = pd.DatetimeIndex(values).as_unit("ns").asi8.view("datetime64[ns]").astype("datetime64[s]")
    return [s + "Z" for s in np.datetime_as_string(ns, unit="s")]


def parse(text: str) -> pd.Timestamp:
    return pd.Timestamp(text).tz_convert("UTC")


def now_wall() -> str:
    return pd.Timestamp.now(tz="UTC").isoformat()


class Ledger:
    """A connection to one ledger file; `Ledger.open` migrates and locks, `open_readonly` reads."""

    def __init__(self, path: Path, con: sqlite3.Connection, lock_fd: int | None) -> None:
        self.path = path
        self.con = con
        self._lock_fd = lock_fd

    # ---- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, migrations: Sequence[Sequence[str]] = MIGRATIONS) -> Ledger:
        """Open (or create) for writing: exclusive lock, WAL, migrations to the latest version."""
        path = Path(path)
        if not path.parent.is_dir():
            raise LedgerError(f"ledger directory {path.parent} does not exist: create it "
                              f"(mkdir -p {path.parent}) or pass --ledger in an existing folder")
        lock_path = path.with_name(path.name + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LedgerError(f"cannot create the lock file {lock_path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise LedgerError(f"another executor (pid {other}) is writing {path}: one writer per "
                              "ledger; stop it first or use another --ledger") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            con = sqlite3.connect(path, isolation_level=None, timeout=30.0)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")  # WAL: survives a killed process; the feed
            # re-delivers what an OS crash could drop, and bars are idempotent
            con.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            os.close(fd)
            raise LedgerError(f"cannot open ledger {path}: {exc}") from None
        ledger = cls(path, con, fd)
        try:
            ledger._migrate(migrations)
        except BaseException:
            ledger.close()
            raise
        return ledger

    @classmethod
    def open_readonly(cls, path: str | os.PathLike) -> Ledger:
        path = Path(path)
        if not path.is_file():
            raise LedgerError(f"no ledger at {path}: run `python -m executor paper --ledger {path} ...` first")
        try:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=30.0)
            version = _version(con)
        except sqlite3.Error as exc:
            raise LedgerError(f"{path} is not a readable ledger: {exc}") from None
        if version != SCHEMA_VERSION:
            con.close()
            raise LedgerError(f"{path} has ledger schema v{version}, this executor reads "
                              f"v{SCHEMA_VERSION}: run `python -m executor paper` on it once to migrate")
        return cls(path, con, None)

    def _migrate(self, migrations: Sequence[Sequence[str]]) -> None:
        version = _version(self.con)
        target = len(migrations)
        if version > target:
            raise LedgerError(f"{self.path} has ledger schema v{version}, newer than this executor "
                              f"(v{target}): upgrade the executor or use another --ledger")
        for v in range(version, target):
            with self.transaction():
                for stmt in migrations[v]:
                    self.con.execute(stmt)
                self.con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                                 (str(v + 1),))

    def close(self) -> None:
        try:
            self.con.close()
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- writing -----------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; any exception rolls the whole transaction back."""
        self.con.execute("BEGIN IMMEDIATE")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def event(self, kind: str, message: str, clock: pd.Timestamp | None = None) -> None:
        """An operator-facing event (inside the caller's transaction when one is open)."""
        self.con.execute("INSERT INTO events (wall, clock, kind, message) VALUES (?, ?, ?, ?)",
                         (now_wall(), iso(clock) if clock is not None else None, kind, message))

    # ---- meta --------------------------------------------------------------------------------
    def get(self, key: str, default: str | None = None) -> str | None:
        row = self.con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    def set(self, key: str, value: Any) -> None:
        self.con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(value)))

    # ---- reading -----------------------------------------------------------------------------
    def frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        cur = self.con.execute(sql, params)
        cols = [d[0] for d in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=cols)

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.con.execute(sql, params).fetchone()
        return None if row is None else row[0]


def _version(con: sqlite3.Connection) -> int:
    has_meta = con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
    if not has_meta:
        return 0
    row = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return int(row[0]) if row else 0
