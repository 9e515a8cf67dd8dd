"""The results tables' schemas (DESIGN section 8), in one place: every table and view with its
columns and their meaning (`python -m sweep sql --schema` prints them), the provenance every row
carries, and which trials are comparable. sweep/results.py writes and reads them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
import pyarrow as pa

from harness.errors import ConfigError
from harness.folds import Folds
from sweep.ledger_views import PAPER_TABLES, ledger_frame, snapshot_sql

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
