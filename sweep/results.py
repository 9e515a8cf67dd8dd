"""Results tables (DESIGN section 8): append-only Parquet batches plus DuckDB views over them.

Layout: `<results>/<table>/<batch>.parquet`, one file per finished batch, written atomically
(temp file, fsync, rename), so a killed writer loses at most the batch in flight and readers
never see half a file. `<results>/results.duckdb` holds one view per table, refreshed on every
`connect()`. Every table and view is registered here, so a notebook's `connect()` sees them all
(the executor's ledgers as paper_* views too); a table's schema is its documentation
(`python -m sweep sql --schema`).

Rows of a dependent table (`commit_with="trials"`) are visible only once the `trials` file of
their batch exists: `trials` is written last, so it is the batch's commit marker.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from harness.atomic import atomic_write_parquet
from harness.errors import ConfigError, HarnessError
from harness.folds import Folds
from sweep.ledger_views import PAPER_TABLES, ledger_frame, snapshot_sql

DEFAULT_RESULTS = Path("results")
DB_NAME = "results.duckdb"

# type key -> (arrow type, duckdb type)
TYPES: dict[str, tuple[pa.DataType, str]] = {
    "str": (pa.string(), "VARCHAR"),
    "json": (pa.string(), "VARCHAR"),
    "int": (pa.int64(), "BIGINT"),
    "float": (pa.float64(), "DOUBLE"),
    "bool": (pa.bool_(), "BOOLEAN"),
    "ts": (pa.timestamp("us", tz="UTC"), "TIMESTAMP WITH TIME ZONE"),
    "date": (pa.date32(), "DATE"),
}

Column = tuple[str, str, str]  # name, type key, meaning

PROVENANCE: tuple[Column, ...] = (
    ("run_id", "str", "one invocation of a command (uuid hex)"),
    ("harness_hash", "str", "harness.manifest.harness_hash(): rows of different hashes never mix"),
    ("data_fingerprint", "str", "Market.fingerprint of the data evaluated"),
    ("sim_model_version", "str", "friction model tag, e.g. friction_v4_partial_trail_liq"),
    ("git_commit", "str", "HEAD of the repository, 'unknown' outside git"),
    ("seed", "int", "the run's seed"),
)
BATCH: Column = ("batch", "str", "the batch file this row was written in")


class ResultsError(HarnessError):
    """A results folder or table that cannot be read or written as asked."""


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    doc: str
    extra_ok: bool = False  # extra columns (e.g. flattened params) pass through untyped
    commit_with: str | None = None  # visible only when that table has the same batch
    latest_by: tuple[tuple[str, ...], str] | None = None  # (key, order): the view keeps the last

    @property
    def names(self) -> list[str]:
        return [c[0] for c in self.columns]


TABLES: dict[str, Table] = {}
VIEWS: dict[str, tuple[Callable[[Path], str | None], Callable[[Path], pd.DataFrame | None]]] = {}


def register_table(name: str, columns: Sequence[Column], doc: str, *, provenance: bool = True,
                   extra_ok: bool = False, commit_with: str | None = None,
                   latest_by: tuple[tuple[str, ...], str] | None = None) -> Table:
    """Declare a table: provenance and batch columns are prepended unless provenance=False."""
    cols = (PROVENANCE + (BATCH,) if provenance else ()) + tuple(columns)
    for c in cols:
        if c[1] not in TYPES:
            raise ConfigError(f"table {name}: column {c[0]} has unknown type {c[1]!r} ({', '.join(TYPES)})")
    table = Table(name, cols, doc, extra_ok, commit_with, latest_by)
    TABLES[name] = table
    return table


def register_view(name: str, sql: Callable[[Path], str | None],
                  frame: Callable[[Path], pd.DataFrame | None]) -> None:
    """A view that is not a Parquet table (e.g. the executor's ledger): in results.duckdb it is
    sql(results_dir) (a SELECT over a snapshot file), in an in-memory connection the frame
    frame(results_dir) itself (nothing written); None from either: no view."""
    VIEWS[name] = (sql, frame)


RUNS = register_table("runs", (
    ("command", "str", "run | scan | noise"),
    ("strategy", "str", "registered strategy name"),
    ("study", "str", "Optuna study name (run), or scan:/noise: label"),
    ("sampler", "str", "tpe | cmaes | random | nsga2 | scan | noise"),
    ("search_space", "json", "param -> distribution, as searched"),
    ("interval", "str", "bar interval"),
    ("data_label", "str", "data source; SYNTHETIC (...) for the embedded default"),
    ("coins", "str", "the --coins asked for, comma-separated (empty: every coin of the data)"),
    ("data_locator", "json", "where the market is: source, interval, coins, first and last bar "
                             "(sweep.results.data_locator); promote reloads it from this"),
    ("mode", "str", "live | shadow thresholds"),
    ("n_coins", "int", "coins in the market"),
    ("n_bars", "int", "bars in the market (lockbox included)"),
    ("folds", "json", "walk-forward folds in bars (harness.folds.Folds) and `given`: the lengths as typed (bar counts or durations)"),
    ("detail", "str", "intrabar detail interval (--detail), empty: adverse first everywhere"),
    ("trials_target", "int", "finished trials the study runs to (run), candidates (scan)"),
    ("jobs", "int", "worker processes"),
    ("storage", "str", "Optuna storage: a journal as an absolute path, or an RDB URL with the "
                       "password masked (promote and leaderboard count its finished trials)"),
    ("code_hash", "str", "hash of strategies/ and sweep/space.py (sweep.study_identity.code_hash())"),
    ("git_dirty", "bool", "uncommitted changes in the work tree"),
    ("argv", "str", "the command line, passwords and tokens masked"),
    ("status", "str", "running | finished | interrupted | failed | killed (the process died "
                      "while running; marked by the next `sweep run` on its host)"),
    ("owner", "str", "host:pid:start time of the process that wrote the row"),
    ("summary", "json", "run: best, causality (checked | cached); scan: kept value; noise: std/min/max of score"),
    ("started_at", "ts", "UTC"),
    ("finished_at", "ts", "UTC, null while running"),
    ("updated_at", "ts", "UTC; the view keeps the newest row per run_id"),
), "One row per command invocation (latest status).", latest_by=(("run_id",), "updated_at"))

TRIALS = register_table("trials", (
    ("command", "str", "run | scan"),
    ("strategy", "str", "registered strategy name"),
    ("study", "str", "Optuna study name; (study, trial) is unique"),
    ("trial", "int", "Optuna trial number (scan: candidate index)"),
    ("status", "str", "complete | rejected | failed"),
    ("rejected", "str", "hard-rejection reason (or error for failed), null when scored"),
    ("score", "float", "walk-forward score; -inf when rejected, NaN when failed"),
    ("objective", "float", "value told to the sampler: score, or the unrejected score of a "
                           "rejected trial (ranked below passing trials by constraints)"),
    ("worst_fold", "float", "lowest per-fold score"),
    ("fold_scores", "json", "list of per-fold scores"),
    ("folds", "json", "list of per-fold metric dicts"),
    ("params", "json", "all parameters (p_<name> columns hold them flattened)"),
    ("kept", "bool", "scan: the candidate value that was kept"),
    ("min_trades", "int", "closed OOS trades the score requires (harness.metrics.MIN_TRADES); "
                          "fewer is rejected"),
    ("duration_s", "float", "evaluation wall time of this trial (batch time / batch size)"),
    ("finished_at", "ts", "UTC"),
), "One row per evaluated parameter set. Also base_<m> and stress_<m> for every field of "
   "harness.metrics.Metrics (annualized, max_dd, sharpe, calmar, n_trades, ...), p_<param>, and "
   "regime_model: the per-coin regime model(s) a regime gate fitted on the folds' train windows "
   "('' when the gate is off or the strategy has none; absent in rows written before it).",
    extra_ok=True)

TRIAL_RETURNS = register_table("trial_returns", (
    ("study", "str", "as in trials"),
    ("trial", "int", "as in trials"),
    ("date", "date", "UTC day"),
    ("ret", "float", "daily out-of-sample return of equity (base friction)"),
), "Daily OOS returns per trial, long format (for DSR, effective N and PBO).",
    commit_with="trials")

TRADES = register_table("trades", (
    ("study", "str", "as in trials"),
    ("trial", "int", "as in trials"),
), "Closed out-of-sample trades of each trial (base friction): every column of the harness "
   "trade record (strategy, coin, side, entry_ts, exit_ts, r_multiple, pnl, fees, funding, "
   "exit_reason, session, regime, vol_bucket, ...).", extra_ok=True, commit_with="trials")

register_table("promotions", (
    ("generated_at", "ts", "UTC time of the promote run (run_id is its id)"),
    ("out", "str", "the candidates file written"),
    ("strategy", "str", "bucket: strategy"),
    ("side", "str", "bucket: long | short"),
    ("session", "str", "bucket: session of the decision bar"),
    ("regime", "str", "bucket: BTC regime"),
    ("vol_bucket", "str", "bucket: ATR(14)/ATR(100) bucket"),
    ("promoted", "bool", "every gate held"),
    ("failed_gate", "str", "first failed gate: n | t | p | dsr | spa | oos_loss | stress | lockbox "
                           "(null: promoted)"),
    ("failed_value", "float", "the number that failed (null: not a number)"),
    ("threshold", "float", "the threshold it failed"),
    ("reason", "str", "why, with the numbers and by how much"),
    ("n", "int", "closed OOS trades, one per (coin, entry_ts, side)"),
    ("mean_r", "float", "mean R per trade"),
    ("t_stat", "float", "t-stat of R"),
    ("p_value", "float", "one-sided p of mean R > 0"),
    ("p_corrected", "float", "after the correction over the run's examined buckets"),
    ("correction", "str", "holm | bh"),
    ("m_tests", "int", "buckets examined in the run (the correction's m)"),
    ("win_rate", "float", "share of trades with R > 0"),
    ("sharpe", "float", "daily-R Sharpe of the bucket, annualized with 365 days"),
    ("max_dd_r", "float", "max drawdown of cumulative R"),
    ("trial_sharpe", "float", "the selected trial's OOS Sharpe (study level)"),
    ("dsr", "float", "DSR of the selected trial, N effective"),
    ("spa_p", "float", "Hansen's SPA p over the study's trials"),
    ("p_oos_loss", "float", "CSCV: share of splits where the in-sample best loses OOS"),
    ("pbo", "float", "PBO of the study (CSCV), reported"),
    ("n_trials", "int", "trials in the ledger for the strategy and harness hash"),
    ("n_trials_effective", "float", "effective N of the study"),
    ("stress_mean_r", "float", "mean R under fee stress (null: not reached)"),
    ("lockbox_n", "int", "the bucket's lockbox trades (null: not reached)"),
    ("lockbox_mean_r", "float", "their mean R"),
    ("lockbox_mde", "float", "smallest negative mean R the lockbox test would catch (80% power)"),
    ("lockbox_side_n", "int", "the candidate's lockbox trades on the bucket's side"),
    ("lockbox_side_mean_r", "float", "their mean R"),
    ("study", "str", "study of the bucket's best-ranked trial (its params)"),
    ("trial", "int", "that trial's number"),
    ("pooled_trials", "int", "top trials that contributed trades"),
    ("n_shadow", "int", "paper shadow trades pooled into n (current friction)"),
    ("coins", "json", "coins the bucket traded"),
), "One row per bucket `sweep promote` considered, promoted or not, with the first failed gate.")

register_table("lockbox_touches", (
    ("touched_at", "ts", "UTC time, written BEFORE the lockbox is evaluated (run_id: the promote run)"),
    ("strategy", "str", "candidate: strategy"),
    ("params_hash", "str", "candidate: sha256 of its params JSON (16 hex)"),
    ("study", "str", "the trial whose params these are"),
    ("trial", "int", "its number"),
    ("params", "json", "the params"),
    ("lockbox_start", "ts", "first lockbox bar (open time)"),
    ("lockbox_end", "ts", "last lockbox bar (open time)"),
), "Every lockbox read, logged before it happens: one per candidate (strategy, params, harness, "
   "data, friction), ever.")

register_table("lockbox_reads", (
    ("read_at", "ts", "UTC time the result was logged (run_id: the promote run)"),
    ("strategy", "str", "candidate: strategy"),
    ("params_hash", "str", "candidate: params hash"),
    ("n", "int", "closed lockbox trades, every coin and bucket"),
    ("trades", "json", "those trades: coin, side, session, regime, vol_bucket, entry_ts, exit_ts, r"),
), "What each lockbox read found; later promote runs reuse it instead of reading again.")

CAUSALITY = register_table("causality", (
    ("run_id", "str", "the command that ran the gate (sweep run, scan, noise or check)"),
    ("strategy", "str", "registered strategy name"),
    ("code_hash", "str", "sweep.study.code_hash(strategy): its module and what it imports from strategies/"),
    ("gate", "str", "hash of the gate's own code (sweep/causality.py): a new gate re-checks"),
    ("harness_hash", "str", "harness.manifest.harness_hash()"),
    ("data_fingerprint", "str", "Market.fingerprint of the whole market the sample was cut from"),
    ("data_label", "str", "data source"),
    ("interval", "str", "bar interval"),
    ("n_coins", "int", "coins in the sample (all of the market's)"),
    ("n_bars", "int", "bars in the sample (the last bars before the lockbox)"),
    ("cuts", "int", "cut bars per parameter set, about half on bars that signal"),
    ("param_sets", "int", "the defaults plus sets sampled from the search space"),
    ("signals", "int", "signalling cells compared (both modes, every set)"),
    ("passed", "bool", "no array at or before any cut changed"),
    ("failure", "str", "the first difference (array, bar, coin, cut, mode, params), null when passed"),
    ("seconds", "float", "wall time of the gate"),
    ("git_commit", "str", "HEAD of the repository"),
    ("checked_at", "ts", "UTC"),
), "One row per causality gate run; a verdict is reused for the same strategy code, data, "
   "harness and gate (the cache `sweep run` consults before its first trial).", provenance=False)

for _paper in PAPER_TABLES:  # the executor's ledgers, snapshotted when a connection opens
    register_view(f"paper_{_paper}", partial(snapshot_sql, table=_paper),
                  partial(ledger_frame, table=_paper))


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


# Trials compare only within one group: the same harness hash, friction model, data and
# walk-forward fold layout. The leaderboard ranks each group on its own; the incumbent is looked
# up in the caller's group.
COMPARABLE = ("harness_hash", "sim_model_version", "data_fingerprint", "fold_layout")
FOLD_FIELDS = tuple(f.name for f in dataclasses.fields(Folds))


def fold_layout_sql(json_expr: str) -> str:
    """The fold layout (the Folds in bars) of a JSON value such as runs.folds, as one comparable
    value: the same SQL applied to a stored record and to a Folds passed as JSON."""
    pairs = ", ".join(f"'{f}', json_extract({json_expr}, '$.{f}')" for f in FOLD_FIELDS)
    return f"CAST(json_object({pairs}) AS VARCHAR)"


def comparable_trials_sql() -> str:
    """Trials that did not fail, each with its run's `data_label` and `fold_layout`."""
    return (f"SELECT t.*, r.data_label, {fold_layout_sql('r.folds')} AS fold_layout FROM trials t "
            "LEFT JOIN runs r USING (run_id) WHERE t.status <> 'failed'")

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
