"""Results tables (DESIGN section 8): append-only Parquet batches plus DuckDB views over them.

Layout: `<results>/<table>/<batch>.parquet`, one file per finished batch, written atomically
(temp file, fsync, rename), so a killed writer loses at most the batch in flight and readers
never see half a file. `<results>/results.duckdb` holds one view per table, refreshed on every
`connect()`. Every table and view is declared in sweep/results_schema.py, so a notebook's
`connect()` sees them all (the executor's ledgers as paper_* views too); a table's schema is its
documentation (`python -m sweep sql --schema`).

Rows of a dependent table (`commit_with="trials"`) are visible only once the `trials` file of
their batch exists: `trials` is written last, so it is the batch's commit marker.
"""

from __future__ import annotations

import json
import math
import subprocess
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from harness.atomic import atomic_write_parquet
from harness.errors import ConfigError, HarnessError
from sweep.results_schema import TABLES, TYPES, VIEWS, Table

DEFAULT_RESULTS = Path("results")
DB_NAME = "results.duckdb"


class ResultsError(HarnessError):
    """A results folder or table that cannot be read or written as asked."""


def data_locator(data: str | Path | None, market: Any) -> str:
    """JSON naming exactly the market a run evaluated, so `sweep promote` can load it again:
    the source as `load_market` takes it (an absolute path, or "embedded"), the interval, the
    coins and the first and last bar open times."""
    if market.synthetic:
        source = "embedded"
    else:
        source = str(Path("data" if data is None else data).resolve())
    return to_json({"source": source, "interval": market.interval, "coins": list(market.coins),
                    "start": market.index[0].isoformat(), "end": market.index[-1].isoformat()})

def _table(name: str) -> Table:
    if name not in TABLES:
        raise ConfigError(f"unknown results table {name!r}: registered are {', '.join(sorted(TABLES))}")
    return TABLES[name]


def new_id() -> str:
    return uuid.uuid4().hex


def now() -> pd.Timestamp:
    return pd.Timestamp(datetime.now(UTC))


@lru_cache(maxsize=1)
def git_state() -> tuple[str, bool]:
    """(HEAD commit, dirty) of the repository holding this package; ('unknown', False) outside git."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return "unknown", False
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", False




def _to_arrow(spec: Table, df: pd.DataFrame) -> pa.Table:
    missing = [c for c in spec.names if c not in df.columns]
    if missing:
        raise ConfigError(f"results table {spec.name}: batch lacks column(s) {', '.join(missing)}")
    extra = [c for c in df.columns if c not in spec.names]
    if extra and not spec.extra_ok:
        raise ConfigError(
            f"results table {spec.name}: unknown column(s) {', '.join(map(str, extra))}; "
            "declare them in register_table"
        )
    arrays, fields = [], []
    for name, kind, _ in spec.columns:
        typ = TYPES[kind][0]
        try:
            arr = pa.array(df[name], from_pandas=True)
            if kind == "ts" and not pa.types.is_timestamp(arr.type) and arr.null_count < len(arr):
                raise pa.ArrowInvalid(f"expected timestamps, got {arr.type}")
            arr = arr.cast(typ, safe=kind != "ts")
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise ConfigError(f"results table {spec.name}: column {name} is not {kind}: {exc}") from None
        arrays.append(arr)
        fields.append(pa.field(name, typ))
    for name in extra:
        arr = pa.array(df[name], from_pandas=True)
        if pa.types.is_null(arr.type):
            arr = arr.cast(pa.string())
        arrays.append(arr)
        fields.append(pa.field(str(name), arr.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def write_batch(results_dir: Path | str, table: str, df: pd.DataFrame, batch: str | None = None) -> Path | None:
    """Append one batch to `table` atomically; returns the file (None for an empty batch).

    `batch` names the file; dependent tables (trades, trial_returns) pass the same batch as the
    trials rows they belong to, and must be written before them.
    """
    spec = _table(table)
    if df is None or len(df) == 0:
        return None
    if "batch" in spec.names and "batch" not in df.columns:
        df = df.assign(batch=batch or new_id())
    batch = batch or (str(df["batch"].iloc[0]) if "batch" in df.columns else new_id())
    folder = Path(results_dir) / table
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResultsError(f"cannot create results folder {folder}: {exc.strerror}; pass a writable --results") from None
    stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
    path = folder / f"{stamp}-{batch[:12]}-{uuid.uuid4().hex[:6]}.parquet"
    atomic_write_parquet(_to_arrow(spec, df), path)
    return path


def _glob(results_dir: Path, name: str) -> str | None:
    folder = results_dir / name
    if folder.is_dir() and any(folder.glob("*.parquet")):
        return str(folder.resolve() / "*.parquet").replace("'", "''")
    return None


def _empty_select(spec: Table) -> str:
    cols = ", ".join(f'CAST(NULL AS {TYPES[k][1]}) AS "{n}"' for n, k, _ in spec.columns)
    return f"SELECT {cols} WHERE false"


def view_sql(results_dir: Path, name: str) -> str | None:
    """The SELECT behind a table's view (None when it has no files and no declared schema)."""
    spec = TABLES.get(name)
    glob = _glob(results_dir, name)
    if glob is None:
        return _empty_select(spec) if spec else None
    sql = f"SELECT * FROM read_parquet('{glob}', union_by_name=true)"
    if spec and spec.commit_with:
        marker = _glob(results_dir, spec.commit_with)
        if marker is None:
            return _empty_select(spec)
        sql += f" WHERE batch IN (SELECT batch FROM read_parquet('{marker}', union_by_name=true))"
    if spec and spec.latest_by:
        key, order = spec.latest_by
        sql += f" QUALIFY row_number() OVER (PARTITION BY {', '.join(key)} ORDER BY {order} DESC) = 1"
    return sql


def table_names(results_dir: Path) -> list[str]:
    """Registered tables plus any folder of Parquet batches (tables of modules not imported)."""
    names = set(TABLES)
    if results_dir.is_dir():
        names |= {p.name for p in results_dir.iterdir() if p.is_dir() and any(p.glob("*.parquet"))}
    return sorted(names)


def _create_views(con: duckdb.DuckDBPyConnection, results_dir: Path, in_memory: bool) -> None:
    for name in table_names(results_dir):
        sql = view_sql(results_dir, name)
        if sql:
            con.execute(f'CREATE OR REPLACE VIEW "{name}" AS {sql}')
    for name, (sql_fn, frame_fn) in VIEWS.items():
        if in_memory:
            df = frame_fn(results_dir)
            if df is not None:
                con.register(name, df)
        elif (sql := sql_fn(results_dir)) is not None:
            con.execute(f'CREATE OR REPLACE VIEW "{name}" AS {sql}')


def connect(results_dir: Path | str = DEFAULT_RESULTS, persist: bool = True) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with a view per table.

    With persist, the views are (re)written into `<results>/results.duckdb` so any DuckDB client
    can open it; when another process holds that file, an in-memory connection with the same
    views is returned instead.
    """
    results_dir = Path(results_dir)
    con = None
    if persist:
        try:
            results_dir.mkdir(parents=True, exist_ok=True)
            con = duckdb.connect(str(results_dir / DB_NAME))
        except (duckdb.IOException, OSError):
            con = None
    in_memory = con is None
    if in_memory:
        con = duckdb.connect()
    try:
        _create_views(con, results_dir, in_memory)
    except duckdb.Error as exc:
        con.close()
        raise ResultsError(f"cannot read the results tables in {results_dir}: {exc}".splitlines()[0]) from None
    return con


def connect_readonly(results_dir: Path | str = DEFAULT_RESULTS) -> duckdb.DuckDBPyConnection:
    """A connection for questions from outside (`sweep sql`) that can read the results tables
    and change nothing: an in-memory catalog of fresh views (nothing is written, not even
    results.duckdb), file access limited to the results folder, extensions neither installed
    nor loaded, and the configuration locked. Run only what `select_statement` lets through."""
    results_dir = Path(results_dir)
    root = str(results_dir.resolve()).replace("'", "''") + "/"
    con = duckdb.connect(config={"autoinstall_known_extensions": False,
                                 "autoload_known_extensions": False})
    try:
        con.execute(f"SET allowed_directories = ['{root}']")
        con.execute("SET enable_external_access = false")
        _create_views(con, results_dir, in_memory=True)
        con.execute("SET lock_configuration = true")
    except duckdb.Error as exc:
        con.close()
        raise ResultsError(f"cannot read the results tables in {results_dir}: {exc}".splitlines()[0]) from None
    return con


def select_statement(sql: str) -> Any:
    """The one SELECT in `sql` (DESCRIBE, SHOW, SUMMARIZE and FROM-first queries are SELECTs),
    parsed without touching any database; ResultsError naming what was refused otherwise."""
    try:
        with duckdb.connect() as parser:
            statements = parser.extract_statements(sql)
    except duckdb.Error as exc:
        raise ResultsError(f"query failed: {str(exc).splitlines()[0]}") from None
    if len(statements) != 1:
        raise ResultsError(f"give one statement, got {len(statements)}: sweep sql runs a single "
                           "SELECT")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise ResultsError(f"sweep sql is read-only: {kind.name} statements are refused; ask with "
                           "SELECT (or DESCRIBE, SHOW, SUMMARIZE)")
    return statements[0]


def query(results_dir: Path | str, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
    """Run one query against an in-memory connection (safe while other processes write)."""
    con = connect(results_dir, persist=False)
    try:
        return con.execute(sql, params or []).df()
    except duckdb.Error as exc:
        raise ResultsError(f"query failed: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()


def has_rows(results_dir: Path | str, table: str) -> bool:
    return _glob(Path(results_dir), table) is not None


def to_json(obj: Any) -> str:
    """Strict, stable JSON (sorted keys); non-finite floats become "nan", "inf", "-inf"."""
    return json.dumps(jsonable(obj), sort_keys=True, allow_nan=False)


def jsonable(obj: Any) -> Any:
    """Plain JSON types; exact floats; non-finite floats as "nan", "inf", "-inf"; NULL as null."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [jsonable(v) for v in obj]
    if obj is None or obj is pd.NaT or obj is pd.NA:
        return None
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, (pd.Timestamp, datetime)):
        return obj.isoformat()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def schema_frame(name: str | None = None) -> pd.DataFrame:
    """The documented schema: table, column, type, meaning."""
    rows = []
    for tname in ([name] if name else sorted(TABLES)):
        spec = _table(tname)
        rows += [(tname, n, TYPES[k][1] + (" (JSON)" if k == "json" else ""), doc) for n, k, doc in spec.columns]
        if spec.extra_ok:
            rows.append((tname, "...", "", "further columns, see the table's doc"))
    return pd.DataFrame(rows, columns=["table", "column", "type", "meaning"])
