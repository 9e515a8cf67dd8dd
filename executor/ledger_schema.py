"""The paper ledger's schema: the migrations that build it, one per version.

MIGRATIONS[i] takes a ledger from schema version i to i + 1 (0 is an empty file); the
version is `meta.schema_version`. executor/ledger.py applies them.
"""

from __future__ import annotations

SCHEMA_VERSION = 4

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
    (  # v4: the recorded asset contexts and L2 books of the ledger's coins (harness.snapshots)
        """CREATE TABLE asset_ctxs (coin TEXT NOT NULL, ts TEXT NOT NULL, time TEXT NOT NULL,
            open_interest REAL NOT NULL, mark_px REAL, oracle_px REAL NOT NULL, mid_px REAL,
            premium REAL, funding REAL NOT NULL, day_ntl_vlm REAL NOT NULL, impact_bid_px REAL,
            impact_ask_px REAL, PRIMARY KEY (coin, ts)) WITHOUT ROWID""",
        """CREATE TABLE books (coin TEXT NOT NULL, ts TEXT NOT NULL, time TEXT NOT NULL,
            level INTEGER NOT NULL, side TEXT NOT NULL, price REAL NOT NULL, size REAL NOT NULL,
            imbalance_5 REAL NOT NULL, imbalance_20 REAL NOT NULL,
            PRIMARY KEY (coin, ts, side, level)) WITHOUT ROWID""",
    ),
)
TABLES = ("meta", "candles", "funding_rates", "sessions", "bars", "decisions", "orders",
          "positions", "fills", "funding", "equity", "events", "shadow_trades", "asset_ctxs",
          "books")
