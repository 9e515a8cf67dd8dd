"""The paper ledger: one SQLite file in WAL mode, one writer, a schema version with migrations.

Every closed candle is processed in ONE transaction (its candles, decisions, orders, fills,
positions, funding, equity and the `bars` row that marks it done), so a killed executor either
did a bar completely or not at all, and a restart resumes at the first bar without a `bars` row.
Times are ISO-8601 UTC text ("2025-03-01T13:00:00Z"): sortable, and readable in any SQLite
client. One writer is enforced with an exclusive lock on `<ledger>.lock`.

`Ledger` is the only code that speaks SQL to a ledger (the schema is executor/ledger_schema.py):
the engine and the status report call its typed methods (open_positions, accepted_decisions,
record_fill, ...) with the rows of executor/records.py. A file is checked to be a paper ledger of a version this executor reads
(`identify`) before anything is locked, switched to WAL or migrated.
"""

from __future__ import annotations

import fcntl
import math
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from executor.ledger_schema import MIGRATIONS, SCHEMA_VERSION, TABLES
from executor.records import (
    BarDone,
    Decision,
    Entry,
    Exit,
    ExitDecision,
    Fill,
    Order,
    Position,
    Session,
    ShadowTrade,
)
from harness.errors import HarnessError
from harness.snapshots import CTX_VALUES

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "TABLES", "Ledger", "LedgerError"]


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


# ---- identity --------------------------------------------------------------------------------

def identify(path: str | os.PathLike, newest: int = SCHEMA_VERSION) -> int | None:
    """The schema version of the ledger at `path` (None: no file; 0: an empty database), read
    without changing the file; LedgerError when it is not a paper ledger of versions 1..newest."""
    path = Path(path)
    if not path.exists():
        if not path.parent.is_dir():
            raise LedgerError(f"ledger directory {path.parent} does not exist: create it "
                              f"(mkdir -p {path.parent}) or pass --ledger in an existing folder")
        return None
    if not path.is_file():
        raise LedgerError(f"{path} is not a file: pass --ledger PATH of a paper ledger (or a new one)")
    if path.stat().st_size == 0:
        return 0
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot read {path}: {exc}") from None
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return 0
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() \
            if "meta" in tables else None
    except sqlite3.DatabaseError as exc:
        raise LedgerError(f"{path} is not a SQLite database ({exc}): pass --ledger PATH of a paper "
                          "ledger, or a new path") from None
    finally:
        con.close()
    if row is None:
        raise LedgerError(f"{path} is a SQLite file of another program (tables "
                          f"{', '.join(sorted(tables)[:5])}{', ...' if len(tables) > 5 else ''}; no "
                          "schema_version): it is left untouched; pass a new --ledger path")
    try:
        version = int(row[0])
    except (TypeError, ValueError):
        raise LedgerError(f"{path}: schema_version {row[0]!r} is not a version number, so this is "
                          "not a ledger the executor wrote; pass a new --ledger path") from None
    if not 1 <= version <= newest:
        raise LedgerError(f"{path} has ledger schema v{version}, newer than this executor "
                          f"(v{newest}): upgrade the executor or use another --ledger"
                          if version > newest else
                          f"{path} has ledger schema v{version}: not a ledger the executor wrote")
    return version


def read_meta(path: str | os.PathLike, key: str) -> str | None:
    """One meta value of an identified ledger, read without changing the file."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
    try:
        row = con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot read {path}: {exc}") from None
    finally:
        con.close()
    return None if row is None else row[0]


class Ledger:
    """A connection to one ledger file; `Ledger.open` migrates and locks, `open_readonly` reads."""

    def __init__(self, path: Path, con: sqlite3.Connection, lock_fd: int | None) -> None:
        self.path = path
        self.con = con
        self._lock_fd = lock_fd

    # ---- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, migrations: Sequence[Sequence[str]] = MIGRATIONS) -> Ledger:
        """Open (or create) for writing: identity check, exclusive lock, WAL, migrations."""
        path = Path(path)
        identify(path, len(migrations))
        lock_path = path.with_name(path.name + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
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
            identify(path, len(migrations))  # again under the lock: nobody changed it meanwhile
            con = sqlite3.connect(path, isolation_level=None, timeout=30.0)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")  # WAL: survives a killed process; the feed
            # re-delivers what an OS crash could drop, and bars are idempotent
            con.execute("PRAGMA foreign_keys=ON")
        except BaseException as exc:
            os.close(fd)
            if isinstance(exc, sqlite3.Error):
                raise LedgerError(f"cannot open ledger {path}: {exc}") from None
            raise
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
        version = identify(path, newest=10**9)
        if not version:
            raise LedgerError(f"{path} is an empty database, not a paper ledger: run "
                              f"`python -m executor paper --ledger {path} ...` first")
        if version > SCHEMA_VERSION:
            raise LedgerError(f"{path} has ledger schema v{version}, newer than this executor "
                              f"(v{SCHEMA_VERSION}): upgrade the executor")
        if version < SCHEMA_VERSION:
            raise LedgerError(f"{path} has ledger schema v{version}, this executor reads "
                              f"v{SCHEMA_VERSION}: run `python -m executor paper` on it once to migrate")
        try:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=30.0)
        except sqlite3.Error as exc:
            raise LedgerError(f"{path} is not a readable ledger: {exc}") from None
        return cls(path, con, None)

    def _migrate(self, migrations: Sequence[Sequence[str]]) -> None:
        version = self.version()
        for v in range(version, len(migrations)):
            with self.transaction():
                for stmt in migrations[v]:
                    self.con.execute(stmt)
                self.set("schema_version", v + 1)

    def version(self) -> int:
        if not self.con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone():
            return 0
        return int(self.get("schema_version", "0"))

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

    # ---- generic reads (sweep's paper_* views, tests) -------------------------------------------
    def frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        cur = self.con.execute(sql, params)
        cols = [d[0] for d in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=cols)

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.con.execute(sql, params).fetchone()
        return None if row is None else row[0]

    # ---- market rows -------------------------------------------------------------------------
    def add_market_rows(self, candles: pd.DataFrame | None, funding: pd.DataFrame | None) -> None:
        """Candles and funding records (once per (coin, ts): a replayed bar adds nothing)."""
        if candles is not None and len(candles):
            self.con.executemany(
                "INSERT OR IGNORE INTO candles (coin, ts, open, high, low, close, volume) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                zip(candles["coin"].astype(str), iso_many(candles["ts"]),
                    *(candles[k].to_numpy(np.float64).tolist()
                      for k in ("open", "high", "low", "close", "volume")), strict=True))
        if funding is not None and len(funding):
            prem = [None if not np.isfinite(p) else p
                    for p in funding["premium"].to_numpy(np.float64).tolist()]
            self.con.executemany(
                "INSERT OR IGNORE INTO funding_rates (coin, ts, funding_rate, premium) VALUES (?, ?, ?, ?)",
                zip(funding["coin"].astype(str), iso_many(funding["ts"]),
                    funding["funding_rate"].to_numpy(np.float64).tolist(), prem, strict=True))

    def market_rows(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Every stored candle and funding record (ts as UTC datetimes, values as floats)."""
        c = self.frame("SELECT coin, ts, open, high, low, close, volume FROM candles")
        f = self.frame("SELECT coin, ts, funding_rate, premium FROM funding_rates")
        return (_with_ts(c, ("open", "high", "low", "close", "volume")),
                _with_ts(f, ("funding_rate", "premium")))

    def newest_candle(self) -> pd.Timestamp | None:
        v = self.scalar("SELECT MAX(ts) FROM candles")
        return parse(v) if v else None

    # ---- sessions, bars, equity --------------------------------------------------------------
    def start_session(self, session: Session, reason: str) -> None:
        self.con.execute("INSERT INTO sessions (id, start_ts, initial_equity, reason) VALUES (?, ?, ?, ?)",
                         (session.id, iso(session.start), session.initial_equity, reason))

    def last_session(self) -> Session | None:
        row = self.con.execute(
            "SELECT id, start_ts, initial_equity FROM sessions ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else Session(int(row[0]), parse(row[1]), float(row[2]))

    def record_bar(self, bar: BarDone) -> None:
        """The bar's equity row and the `bars` row that marks it done."""
        dd = 1.0 - bar.equity / bar.peak if bar.peak > 0 else 0.0
        self.con.execute(
            "INSERT INTO equity (ts, session, equity, n_open, peak, drawdown) VALUES (?, ?, ?, ?, ?, ?)",
            (bar.ts, bar.session, bar.equity, bar.n_open, bar.peak, dd))
        self.con.execute(
            "INSERT INTO bars (ts, clock, session, n_candles, stale, kill_file, candidates, "
            "n_live, n_accepted, equity, n_open) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (bar.ts, bar.clock, bar.session, bar.n_candles, bar.stale, bar.kill_file,
             bar.candidates, bar.n_live, bar.n_accepted, bar.equity, bar.n_open))

    def last_bar(self) -> dict[str, Any] | None:
        row = self.con.execute("SELECT ts, clock, equity, n_open, stale, candidates, session FROM bars "
                               "ORDER BY ts DESC LIMIT 1").fetchone()
        keys = ("ts", "clock", "equity", "n_open", "stale", "candidates", "session")
        return None if row is None else dict(zip(keys, row, strict=True))

    def n_bars(self) -> int:
        return int(self.scalar("SELECT COUNT(*) FROM bars"))

    def last_equity(self) -> float | None:
        v = self.scalar("SELECT equity FROM equity ORDER BY ts DESC LIMIT 1")
        return None if v is None else float(v)

    def peak_equity(self, session: int) -> float | None:
        v = self.scalar("SELECT MAX(equity) FROM equity WHERE session = ?", (session,))
        return None if v is None else float(v)

    def equity_at_or_before(self, ts: pd.Timestamp) -> float | None:
        v = self.scalar("SELECT equity FROM equity WHERE ts <= ? ORDER BY ts DESC LIMIT 1", (iso(ts),))
        return None if v is None else float(v)

    def equity_series(self) -> pd.Series:
        eq = self.frame("SELECT ts, equity FROM equity ORDER BY ts")
        return pd.Series(eq["equity"].astype(float).to_numpy(),
                         index=pd.DatetimeIndex(pd.to_datetime(eq["ts"], utc=True)), name="equity")

    # ---- positions and fills -----------------------------------------------------------------
    def positions(self, session: int) -> dict[tuple[str, str], Position]:
        """The session's positions by (coin, entry_ts)."""
        rows = self.con.execute(
            "SELECT id, coin, entry_ts, status, partial_taken, funding, book, side FROM positions "
            "WHERE session = ?", (session,)).fetchall()
        return {(r[1], r[2]): Position(int(r[0]), r[1], r[2], r[3], int(r[4]), float(r[5]), r[6], int(r[7]))
                for r in rows}

    def open_positions(self, session: int | None = None) -> list[Position]:
        """Open positions (of one session, or of all)."""
        where, args = ("AND session = ?", (session,)) if session is not None else ("", ())
        rows = self.con.execute(
            "SELECT id, coin, entry_ts, status, partial_taken, funding, book, side FROM positions "
            f"WHERE status = 'open' {where} ORDER BY entry_ts, coin", args).fetchall()
        return [Position(int(r[0]), r[1], r[2], r[3], int(r[4]), float(r[5]), r[6], int(r[7])) for r in rows]

    def n_open(self, session: int | None = None) -> int:
        where, args = ("AND session = ?", (session,)) if session is not None else ("", ())
        return int(self.scalar(f"SELECT COUNT(*) FROM positions WHERE status = 'open' {where}", args))

    def open_position(self, entry: Entry) -> int:
        cur = self.con.execute(
            "INSERT INTO positions (session, coin, side, book, strategy, bucket, signal_ts, entry_ts, "
            "entry_price, size, notional, stop_distance, status, partial_taken, fees, funding) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', 0, ?, 0.0)", astuple(entry))
        return int(cur.lastrowid)

    def mark_position(self, pid: int, funding: float, partial_taken: int, unrealized: float) -> None:
        """An open position's running funding, partial flag and unrealized PnL at this bar."""
        self.con.execute("UPDATE positions SET funding = ?, partial_taken = ?, unrealized = ? WHERE id = ?",
                         (funding, partial_taken, unrealized, pid))

    def add_fee(self, pid: int, fee: float) -> None:
        self.con.execute("UPDATE positions SET fees = fees + ? WHERE id = ?", (fee, pid))

    def close_position(self, pid: int, exit: Exit) -> None:
        self.con.execute(
            "UPDATE positions SET status = 'closed', partial_taken = ?, fees = ?, funding = ?, "
            "unrealized = NULL, exit_ts = ?, exit_price = ?, exit_reason = ?, pnl = ?, r_multiple = ? "
            "WHERE id = ?", (*astuple(exit), pid))

    def record_fill(self, fill: Fill) -> None:
        self.con.execute(
            "INSERT INTO fills (ts, bar_ts, position_id, coin, side, kind, reason, qty, price, fee, "
            "slippage_bps) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", astuple(fill))

    def record_funding(self, ts: str, pid: int, coin: str, amount: float) -> None:
        self.con.execute("INSERT INTO funding (ts, position_id, coin, amount) VALUES (?, ?, ?, ?)",
                         (ts, pid, coin, amount))

    def closed_r_multiples(self, book: str, bucket: str) -> np.ndarray:
        """R of a bucket's closed positions in exit order (its kill criteria read these)."""
        rows = self.con.execute("SELECT r_multiple FROM positions WHERE status = 'closed' AND book = ? "
                                "AND bucket = ? ORDER BY exit_ts, id", (book, bucket)).fetchall()
        return np.array([float(r[0]) for r in rows], dtype=np.float64)

    def open_positions_report(self) -> pd.DataFrame:
        return self.frame(
            "SELECT id, coin, CASE side WHEN 1 THEN 'long' ELSE 'short' END AS side, strategy, bucket, "
            "entry_ts, entry_price, size, notional, stop_distance, partial_taken, funding, unrealized "
            "FROM positions WHERE status = 'open' ORDER BY entry_ts, coin")

    def closed_trades(self) -> pd.DataFrame:
        """bucket, pnl and exit time (UTC) of every closed position, in exit order."""
        t = self.frame("SELECT bucket, pnl, exit_ts FROM positions WHERE status = 'closed' ORDER BY exit_ts")
        t["exit_ts"] = pd.to_datetime(t["exit_ts"], utc=True)
        t["pnl"] = t["pnl"].astype(float)
        return t

    # ---- decisions and orders ----------------------------------------------------------------
    def record_decisions(self, rows: Iterable[Decision]) -> None:
        self.con.executemany(
            "INSERT INTO decisions (ts, coin, book, kind, strategy, side, stop, target, score, session, "
            "regime, vol_bucket, setup, hold, trail, bucket, accepted, reason) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def record_exits(self, rows: Iterable[ExitDecision]) -> None:
        self.con.executemany(
            "INSERT OR IGNORE INTO decisions (ts, coin, book, kind, strategy, side, accepted, reason) "
            "VALUES (?, ?, ?, 'exit', ?, 0, 1, ?)", rows)

    def accepted_decisions(self, since: str) -> pd.DataFrame:
        """Accepted live decisions from `since` on, best score first within a (ts, coin) cell."""
        return self.frame(
            "SELECT ts, coin, book, strategy, bucket, side, stop, target, score, session, regime, "
            "vol_bucket, setup, hold, trail FROM decisions WHERE kind = 'live' AND accepted = 1 "
            "AND ts >= ? ORDER BY ts, coin, score DESC, book", (since,))

    def accepted_exits(self, since: str) -> pd.DataFrame:
        return self.frame("SELECT ts, coin FROM decisions WHERE kind = 'exit' AND accepted = 1 "
                          "AND ts >= ?", (since,))

    def n_accepted_at(self, ts: str) -> int:
        return int(self.scalar("SELECT COUNT(*) FROM decisions WHERE kind = 'live' AND accepted = 1 "
                               "AND ts = ?", (ts,)))

    def add_order(self, ts: str, coin: str, book: str, strategy: str, bucket: str, side: int,
                  score: float, stop: float) -> None:
        self.con.execute("INSERT INTO orders (ts, coin, book, strategy, bucket, side, score, stop, status) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
                         (ts, coin, book, strategy, bucket, side, score, stop))

    def fill_order(self, signal_ts: str, coin: str, book: str, fill_ts: str, pid: int) -> None:
        self.con.execute("UPDATE orders SET status = 'filled', fill_ts = ?, position_id = ? "
                         "WHERE ts = ? AND coin = ? AND book = ?", (fill_ts, pid, signal_ts, coin, book))

    def pending_orders(self, before: str) -> list[Order]:
        rows = self.con.execute("SELECT id, ts, coin, book FROM orders WHERE status = 'pending' AND ts < ?",
                                (before,)).fetchall()
        return [Order(int(r[0]), r[1], r[2], r[3]) for r in rows]

    def mark_unfilled(self, order_id: int, reason: str) -> None:
        self.con.execute("UPDATE orders SET status = 'unfilled', reason = ? WHERE id = ?", (reason, order_id))

    # ---- shadow trades -----------------------------------------------------------------------
    def record_shadow_trades(self, rows: Iterable[ShadowTrade]) -> None:
        """Closed shadow trades, once per (strategy, coin, entry_ts, side)."""
        self.con.executemany(
            "INSERT OR IGNORE INTO shadow_trades (strategy, coin, side, book, session, regime, "
            "vol_bucket, entry_ts, exit_ts, r_multiple, pnl, fees, funding, exit_reason, friction) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    # ---- recorded asset contexts and books ---------------------------------------------------
    def record_snapshot(self, contexts: pd.DataFrame, books: pd.DataFrame) -> None:
        """A feed's asset contexts and books, once per coin and hour (NaN stored as NULL)."""
        def floats(col: pd.Series) -> list[float | None]:
            return [v if math.isfinite(v) else None for v in col.to_numpy(np.float64).tolist()]

        if len(contexts):
            self.con.executemany(
                f"INSERT OR IGNORE INTO asset_ctxs (coin, ts, time, {', '.join(CTX_VALUES)}) "
                f"VALUES ({', '.join('?' * (3 + len(CTX_VALUES)))})",
                zip(contexts["coin"].astype(str), iso_many(contexts["ts"]),
                    _iso_ms(contexts["time"]), *(floats(contexts[c]) for c in CTX_VALUES),
                    strict=True))
        if len(books):
            self.con.executemany(
                "INSERT OR IGNORE INTO books (coin, ts, time, level, side, price, size, "
                "imbalance_5, imbalance_20) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                zip(books["coin"].astype(str), iso_many(books["ts"]), _iso_ms(books["time"]),
                    books["level"].astype(int).tolist(), books["side"].astype(str),
                    *(books[c].to_numpy(np.float64).tolist()
                      for c in ("price", "size", "imbalance_5", "imbalance_20")), strict=True))


def _iso_ms(values) -> list[str]:
    return [t.isoformat(timespec="milliseconds") + "Z"
            for t in pd.DatetimeIndex(values).tz_convert("UTC").tz_localize(None)]


def _with_ts(df: pd.DataFrame, float_cols: tuple[str, ...]) -> pd.DataFrame:
    df = df.copy()
    df["ts"] = pd.to_datetime(df["ts"], utc=True).astype("datetime64[ns, UTC]")
    for c in float_cols:
        df[c] = df[c].astype(np.float64)
    return df
