"""The paper executor's ledgers as results views: paper_positions, paper_fills, ... (registered
in sweep/results_schema.py, so `sweep sql` and `results.connect()` from a notebook both see them).

The executor registers each ledger it writes in `<results>/paper_ledgers.txt` (schemas.ledgers). DuckDB cannot
read SQLite here without a downloaded extension, so each view is the table of every registered
ledger, read with SQLite in read-only mode (safe while the executor writes: WAL), with a
`ledger` column, as of the moment of connecting: in `sweep sql` (an in-memory connection) the
frame itself, in results.duckdb a snapshot written atomically to
`<results>/.paper/<table>.snapshot` (Parquet). Times become TIMESTAMPs.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pyarrow as pa

from harness.atomic import atomic_write_parquet
from schemas.ledgers import ledger_paths

SNAPSHOT_DIR = ".paper"
PAPER_TABLES = ("decisions", "orders", "fills", "positions", "funding", "equity", "bars",
                "sessions", "events")
TIME_COLUMNS = ("ts", "clock", "wall", "start_ts", "signal_ts", "entry_ts", "exit_ts", "fill_ts", "bar_ts")


def read_ledger_table(path: Path, table: str) -> pd.DataFrame | None:
    """One table of a paper ledger, read-only (safe while the executor writes); None if absent."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
    except sqlite3.Error:
        return None
    try:
        if not con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)).fetchone():
            return None
        cur = con.execute(f'SELECT * FROM "{table}"')
        df = pd.DataFrame(cur.fetchall(), columns=[d[0] for d in cur.description])
    except sqlite3.Error:
        return None
    finally:
        con.close()
    df.insert(0, "ledger", str(path))
    return df


def ledger_frame(results_dir: Path, table: str) -> pd.DataFrame | None:
    """`table` of every registered ledger, times as UTC timestamps (None: no ledger has it)."""
    frames = [f for f in (read_ledger_table(p, table) for p in ledger_paths(results_dir)) if f is not None]
    if not frames:
        return None
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    for col in TIME_COLUMNS:
        if col in df.columns:
            df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601")
    return df


def snapshot_sql(results_dir: Path, table: str) -> str | None:
    """Snapshot `table` of every registered ledger; the SELECT behind its view (None: no ledger)."""
    df = ledger_frame(results_dir, table)
    if df is None:
        return None
    folder = Path(results_dir) / SNAPSHOT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{table}.snapshot"
    arrow = pa.Table.from_pandas(df, preserve_index=False)
    arrow = arrow.cast(pa.schema([pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f
                                  for f in arrow.schema]))
    atomic_write_parquet(arrow, path)
    return f"SELECT * FROM read_parquet('{str(path.resolve()).replace(chr(39), chr(39) * 2)}')"
