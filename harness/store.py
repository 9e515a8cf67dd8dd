"""The local parquet store: `<store>/hyperliquid/<table>/coin=<COIN>/data.parquet`.

Tables: `candles_<interval>`, `funding_1h`, and the recorded snapshots `asset_ctxs_1h` and
`books` (harness.snapshots: one per coin and hour, keyed by (coin, ts) like the others).

Upserts are idempotent by (coin, ts) and existing rows win on conflict: the sync never stores a
still-open candle, so a stored candle is closed and final, and a stored funding record is a
payment that happened. Keeping them means re-running a sync or an import can only add history,
never rewrite it. Every file is written atomically (temp file in the same folder, fsync,
os.replace), so a killed sync leaves each partition either old or new, never half-written.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harness.atomic import atomic_write_parquet
from harness.errors import DataError
from harness.market import INTERVALS
from harness.snapshots import (
    BOOK_COLUMNS,
    CTX_COLUMNS,
    IMBALANCE_DEPTHS,
    validate_asset_ctxs,
    validate_books,
)
from harness.validate import (
    CANDLE_COLUMNS,
    FUNDING_COLUMNS,
    validate_candles,
    validate_funding,
)

FUNDING_TABLE = "funding_1h"
CTX_TABLE = "asset_ctxs_1h"
BOOK_TABLE = "books"
PARTITION_FILE = "data.parquet"
WRITE_THREADS = 8

CANDLE_SCHEMA = pa.schema(
    [("coin", pa.string()), ("ts", pa.timestamp("ns", tz="UTC"))]
    + [(c, pa.float64()) for c in CANDLE_COLUMNS[2:]]
)
FUNDING_SCHEMA = pa.schema(
    [("coin", pa.string()), ("ts", pa.timestamp("ns", tz="UTC"))]
    + [(c, pa.float64()) for c in FUNDING_COLUMNS[2:]]
)
_KEY = [("coin", pa.string()), ("ts", pa.timestamp("ns", tz="UTC")),
        ("time", pa.timestamp("ns", tz="UTC"))]
CTX_SCHEMA = pa.schema(_KEY + [(c, pa.float64()) for c in CTX_COLUMNS[3:]])
BOOK_SCHEMA = pa.schema(_KEY + [("level", pa.int64()), ("side", pa.string()),
                                ("price", pa.float64()), ("size", pa.float64())]
                        + [(f"imbalance_{d}", pa.float64()) for d in IMBALANCE_DEPTHS])
assert tuple(BOOK_SCHEMA.names) == BOOK_COLUMNS and tuple(CTX_SCHEMA.names) == CTX_COLUMNS


def schema_of(table: str) -> pa.Schema:
    return {FUNDING_TABLE: FUNDING_SCHEMA, CTX_TABLE: CTX_SCHEMA,
            BOOK_TABLE: BOOK_SCHEMA}.get(table, CANDLE_SCHEMA)


def candles_table(interval: str) -> str:
    if interval not in INTERVALS:
        raise DataError(f"unknown interval {interval!r}: use one of {', '.join(INTERVALS)}")
    return f"candles_{interval}"


def table_dir(store: str | Path, table: str) -> Path:
    return Path(store) / "hyperliquid" / table


def partition_path(store: str | Path, table: str, coin: str) -> Path:
    if not coin or "/" in coin or "\\" in coin or "\x00" in coin or coin in (".", ".."):
        raise DataError(f"coin name {coin!r} cannot be stored as a folder name; rename the coin")
    return table_dir(store, table) / f"coin={coin}" / PARTITION_FILE


def read_parquet(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """A parquet file as a DataFrame, or a DataError saying which file is unreadable and why."""
    return read_arrow(path, columns).to_pandas()


def read_arrow(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    try:
        return pq.read_table(path, columns=columns).replace_schema_metadata(None)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(
            f"{path}: cannot read it as parquet ({type(exc).__name__}: {exc}); the file is "
            "corrupt or not parquet: replace it (a store partition: delete it and re-run the "
            "sync or import that wrote it)"
        ) from None



def stored_coins(store: str | Path, table: str) -> list[str]:
    root = table_dir(store, table)
    if not root.is_dir():
        return []
    return sorted(p.name[5:] for p in root.iterdir()
                  if p.name.startswith("coin=") and (p / PARTITION_FILE).is_file())


def stored_intervals(store: str | Path) -> list[str]:
    return [iv for iv in INTERVALS if stored_coins(store, candles_table(iv))]


def _read_table(store: str | Path, table: str, coins: list[str] | None) -> pd.DataFrame:
    names = stored_coins(store, table) if coins is None else coins
    parts = [read_arrow(partition_path(store, table, c)) for c in names
             if partition_path(store, table, c).is_file()]
    schema = schema_of(table)
    if not parts:
        return schema.empty_table().to_pandas()
    try:
        return pa.concat_tables(parts).to_pandas()
    except pa.ArrowInvalid as exc:
        raise DataError(f"{table_dir(store, table)}: partitions have different columns ({exc}); "
                        "a file was written by something else: re-import or re-sync it") from None


def read_candles(store: str | Path, interval: str, coins: list[str] | None = None) -> pd.DataFrame:
    """Stored candles (all coins, or these) as one raw frame; validate before use."""
    return _read_table(store, candles_table(interval), coins)


def read_funding(store: str | Path, coins: list[str] | None = None) -> pd.DataFrame:
    return _read_table(store, FUNDING_TABLE, coins)


def read_asset_ctxs(store: str | Path, coins: list[str] | None = None) -> pd.DataFrame:
    return _read_table(store, CTX_TABLE, coins)


def read_books(store: str | Path, coins: list[str] | None = None) -> pd.DataFrame:
    return _read_table(store, BOOK_TABLE, coins)


def last_ts(store: str | Path, table: str, coin: str) -> pd.Timestamp | None:
    """Open time of the newest stored row of a coin (None when nothing is stored)."""
    path = partition_path(store, table, coin)
    if not path.is_file():
        return None
    ts = read_parquet(path, columns=["ts"])["ts"]
    return None if ts.empty else ts.max()


@dataclass(frozen=True)
class PendingWrite:
    """One partition's merged contents, computed before anything is written."""

    path: Path
    table: pa.Table
    added: int
    changed: bool  # the partition differs from what is stored (rows added or replaced)


def _ts_of(table: pa.Table) -> np.ndarray:
    return table.column("ts").cast(pa.int64()).to_numpy()


def _plan(store: str | Path, table: str, frame: pd.DataFrame, schema: pa.Schema,
          replace: bool = False) -> dict[str, PendingWrite]:
    """Merge a validated frame (sorted by coin, ts) with the stored partitions, in memory.
    Stored rows win over new rows of the same ts, unless `replace`."""
    if frame.empty:
        return {}
    codes, coins = pd.factorize(frame["coin"], sort=False)
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    ends = np.r_[starts[1:], len(frame)]
    new_all = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    plans = {}
    for coin, s, e in zip(coins, starts, ends, strict=True):
        path = partition_path(store, table, coin)
        new = new_all.slice(s, e - s)
        if not path.is_file():
            plans[coin] = PendingWrite(path, new, int(e - s), True)
            continue
        old = pa.Table.from_pandas(read_parquet(path), schema=schema, preserve_index=False)
        old_ts, new_ts = _ts_of(old), _ts_of(new)
        fresh = ~np.isin(new_ts, old_ts)
        if replace:
            stale = np.isin(old_ts, new_ts)
            changed = bool(fresh.any()) or not old.filter(pa.array(stale)).to_pandas().equals(
                new.filter(pa.array(~fresh)).to_pandas())  # NaN == NaN here, unlike Arrow
            merged = pa.concat_tables([old.filter(pa.array(~stale)), new])
        else:
            changed = bool(fresh.any())
            merged = pa.concat_tables([old, new.filter(pa.array(fresh))])
        if not changed:
            plans[coin] = PendingWrite(path, old, 0, False)
            continue
        merged = merged.take(pa.array(np.argsort(_ts_of(merged), kind="stable")))
        plans[coin] = PendingWrite(path, merged, int(fresh.sum()), True)
    return plans


def _write(plans: dict[str, PendingWrite]) -> dict[str, int]:
    """Write the changed partitions; threads overlap the fsync waits of many small files."""
    todo = [p for p in plans.values() if p.changed]
    if len(todo) > 1:
        with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
            list(pool.map(lambda p: atomic_write_parquet(p.table, p.path), todo))
    elif todo:
        atomic_write_parquet(todo[0].table, todo[0].path)
    return {coin: p.added for coin, p in plans.items()}


def upsert_candles(store: str | Path, interval: str, df: pd.DataFrame,
                   source: str = "candles to store", replace: bool = False) -> dict[str, int]:
    """Validate and add candles; returns rows added per coin (0 for rows already stored).
    With `replace`, a row for a stored (coin, ts) replaces it (the source corrected a bar)."""
    if len(df) == 0:
        return {}
    frame = validate_candles(df, source, interval).frame
    return _write(_plan(store, candles_table(interval), frame, CANDLE_SCHEMA, replace))


def upsert_funding(store: str | Path, df: pd.DataFrame, source: str = "funding to store",
                   replace: bool = False) -> dict[str, int]:
    """Validate (floors ts to the hour) and add funding; returns rows added per coin.
    With `replace`, a record for a stored (coin, hour) replaces it."""
    if len(df) == 0:
        return {}
    frame = validate_funding(df, source).frame
    return _write(_plan(store, FUNDING_TABLE, frame, FUNDING_SCHEMA, replace))


def upsert_snapshots(store: str | Path, contexts: pd.DataFrame, books: pd.DataFrame,
                     source: str = "snapshots to store", now: pd.Timestamp | None = None
                     ) -> tuple[dict[str, int], dict[str, int]]:
    """Validate both frames and merge both tables in memory before writing either, so a bad
    snapshot leaves the store unchanged; returns rows added per coin (contexts, books).
    A snapshot already stored for its coin and hour is kept (the first recorded wins)."""
    ctx = validate_asset_ctxs(contexts, f"{source} (asset contexts)", now)
    book = validate_books(books, f"{source} (books)", now)
    plans = (_plan(store, CTX_TABLE, ctx, CTX_SCHEMA), _plan(store, BOOK_TABLE, book, BOOK_SCHEMA))
    return _write(plans[0]), _write(plans[1])


@dataclass(frozen=True)
class ImportedTable:
    table: str
    source: Path
    rows: int
    coins: int
    added: int


def dataset_files(path: str | Path) -> dict[str, Path]:
    """Table name -> parquet file in a dataset folder laid out like ../shared/data/hyperliquid."""
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder; point at a dataset folder holding "
                        "candles_<interval>.parquet and funding_1h.parquet")
    files = {}
    for f in sorted(folder.glob("*.parquet")):
        name = f.stem
        if name == FUNDING_TABLE or (name.startswith("candles_") and name[8:] in INTERVALS):
            files[name] = f
    return files


def import_dataset(path: str | Path, store: str | Path,
                   progress: Callable[[str], None] | None = None) -> tuple[ImportedTable, ...]:
    """Import a dataset folder into the store, all or nothing.

    Every file is read and validated and every stored partition it touches is read and merged
    in memory first; only when all of that succeeded are the changed partitions written. A
    failed import therefore leaves the store byte-for-byte unchanged.
    """
    files = dataset_files(path)
    if not files:
        raise DataError(f"{path}: no candles_<interval>.parquet or {FUNDING_TABLE}.parquet "
                        "here; point at a folder laid out like ../shared/data/hyperliquid")
    note = progress or (lambda _msg: None)
    staged: list[tuple[ImportedTable, dict[str, PendingWrite]]] = []
    for table, file in files.items():
        note(f"validating {file.name}")
        raw = read_parquet(file)
        if table == FUNDING_TABLE:
            frame = validate_funding(raw, str(file)).frame
            schema = FUNDING_SCHEMA
        else:
            frame = validate_candles(raw, str(file), table[8:]).frame
            schema = CANDLE_SCHEMA
        plans = _plan(store, table, frame, schema)
        added = sum(p.added for p in plans.values())
        staged.append((ImportedTable(table, file, len(raw), len(plans), added), plans))
    for info, plans in staged:
        note(f"writing {info.table}")
        _write(plans)
    return tuple(info for info, _ in staged)
