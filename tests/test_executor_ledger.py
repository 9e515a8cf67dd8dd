"""The ledger: WAL, one writer, schema versions with migrations, all-or-nothing transactions."""

from __future__ import annotations

import sqlite3

import pytest

from executor.ledger import MIGRATIONS, SCHEMA_VERSION, TABLES, Ledger, LedgerError


def test_new_ledger_is_wal_at_the_current_version(tmp_path):
    with Ledger.open(tmp_path / "p.sqlite") as led:
        assert led.scalar("PRAGMA journal_mode") == "wal"
        assert led.get("schema_version") == str(SCHEMA_VERSION) == str(len(MIGRATIONS))
        names = {r[0] for r in led.con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert set(TABLES) <= names


def test_migrations_apply_once_in_order_and_a_newer_ledger_is_refused(tmp_path):
    path = tmp_path / "p.sqlite"
    with Ledger.open(path) as led:
        with led.transaction():
            led.event("start", "v1 row")
    v2 = tuple(MIGRATIONS) + (("ALTER TABLE events ADD COLUMN source TEXT DEFAULT 'v1'",
                               "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)"),)
    with Ledger.open(path, migrations=v2) as led:
        assert led.get("schema_version") == str(len(v2))
        assert led.frame("SELECT message, source FROM events").values.tolist() == [["v1 row", "v1"]]
    with Ledger.open(path, migrations=v2) as led:  # nothing to do the second time
        assert led.get("schema_version") == str(len(v2))
    with pytest.raises(LedgerError, match="newer than this executor"):
        Ledger.open(path)
    with pytest.raises(LedgerError, match=f"v{len(v2)}"):
        Ledger.open_readonly(path)


def test_a_failed_transaction_leaves_nothing(tmp_path):
    with Ledger.open(tmp_path / "p.sqlite") as led:
        with pytest.raises(RuntimeError):
            with led.transaction():
                led.event("start", "half")
                led.set("last_ts", "2025-01-01T00:00:00Z")
                raise RuntimeError("killed mid-bar")
        assert led.scalar("SELECT COUNT(*) FROM events") == 0
        assert led.get("last_ts") is None


def test_one_writer_many_readers(tmp_path):
    path = tmp_path / "p.sqlite"
    with Ledger.open(path):
        with pytest.raises(LedgerError, match="one writer per ledger"):
            Ledger.open(path)
        with Ledger.open_readonly(path) as ro:
            assert ro.get("schema_version") == str(SCHEMA_VERSION)
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                ro.con.execute("INSERT INTO events (wall, kind, message) VALUES ('x', 'y', 'z')")
    with Ledger.open(path):  # the lock went with the writer
        pass
