"""The promotion gate (DESIGN sections 7 and 9, issue 6): which buckets may trade, and why.

Its default answer is nothing. A bucket (strategy, side, session, regime, vol_bucket) is
promoted only when every gate holds, checked in this order; the first failure is recorded:

  n        closed OOS trades >= min_trades
  t        t-stat of the per-trade R >= min_t (Harvey, Liu & Zhu)
  dsr      Deflated Sharpe of the bucket's daily R >= min_dsr with N = every trial in the
           ledger for the strategy and harness hash (the effective N is reported, not gated)
  pbo      PBO of the study, CSCV over trial_returns, <= max_pbo
  stress   the contributing trials re-run and reproduce their recorded results, and the bucket's
           mean R stays > 0 with fees and slippage x stress_mult
  lockbox  on the lockbox: >= lockbox_min_trades trades, mean R > 0, and not significantly below
           the OOS mean (one-sided Welch t-test, p >= lockbox_alpha)

Choices made here, each towards "nothing":
- Evidence: the closed OOS trades of the top K trials of each strategy; a trade several of them
  made (same coin, entry time, side) counts once, with the best-ranked trial's R.
- Eligible trials: the current harness hash and friction version (the issue's rule), a
  live-threshold run, and data whose fingerprint we can reproduce (fee stress and the lockbox
  re-run the trial on it). One market and one fold layout per strategy: the best trial's.
  Others are listed as skipped, with the reason.
- Fee stress is re-evaluated: the trades table holds base-friction trades only. Before that,
  each contributing trial is re-run at base friction and must reproduce its recorded score,
  trade count and final equity, so a strategy edited since the sweep cannot borrow the old
  code's evidence.
- Paper shadow trades (the executor's `shadow_trades`, the closed trades of the loose shadow
  signals, kernel-simulated) are pooled into the evidence: read read-only from every ledger in
  `<results>/paper_ledgers.txt`, only rows under the current friction version, one per
  (strategy, coin, entry_ts, side) across ledgers, and none that repeats an OOS trade. They join
  a bucket that OOS trades already made (same five tags) on the coins those trades traded, and
  count toward n, mean R, t, win rate, max drawdown, the lockbox comparison and the kill
  criteria. They do not touch DSR, Sharpe or PBO (study-level, from the trials' daily OOS
  returns) nor the fee stress (re-runs of the trials). `n_shadow` records how many were pooled.
- The lockbox is read only for buckets that passed every other gate, with the params of the
  best-ranked trial that traded the bucket (the params that go live), on the coins the bucket
  traded. Every read is appended to `lockbox_touches` before anything else is written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.evaluate import Evaluation, evaluate
from harness.folds import Folds, folds_from_record
from harness.friction import DEFAULT_FRICTION, Friction, get_friction
from harness.manifest import harness_hash
from harness.market import Market
from harness.signals import REGIMES, SESSIONS, SIDES, VOL_BUCKETS
from schemas.candidates import (
    SCHEMA_VERSION,
    Bucket,
    Candidates,
    Evidence,
    Gates,
    LockboxResult,
    StressResult,
    write_candidates,
)
from schemas.ledgers import ledger_paths
from strategies.base import get_strategy, make_params, registry
from sweep import results
from sweep.promote_stats import (
    BucketStats,
    KillSpec,
    StudyStats,
    bucket_stats,
    first_failure,
    fmt,
    kill_criteria,
    lockbox_verdict,
    study_stats,
)

BUCKET_KEY = ("strategy", "side", "session", "regime", "vol_bucket")
TRADE_KEY = ("coin", "entry_ts", "side")  # one economic trade within a strategy
REPRO_FIELDS = ("score", "base_n_trades", "base_final_equity")
REPRO_RTOL = 1e-9

results.register_table("promotions", (
    ("generated_at", "ts", "UTC time of the promote run (run_id is its id)"),
    ("out", "str", "the candidates file written"),
    ("strategy", "str", "bucket: strategy"),
    ("side", "str", "bucket: long | short"),
    ("session", "str", "bucket: session of the decision bar"),
    ("regime", "str", "bucket: BTC regime"),
    ("vol_bucket", "str", "bucket: ATR(14)/ATR(100) bucket"),
    ("promoted", "bool", "every gate held"),
    ("failed_gate", "str", "first failed gate: n | t | dsr | pbo | stress | lockbox (null: promoted)"),
    ("reason", "str", "why, with the numbers"),
    ("n", "int", "closed OOS trades, one per (coin, entry_ts, side)"),
    ("mean_r", "float", "mean R per trade"),
    ("t_stat", "float", "t-stat of R"),
    ("win_rate", "float", "share of trades with R > 0"),
    ("sharpe", "float", "daily-R Sharpe, annualized with 365 days"),
    ("max_dd_r", "float", "max drawdown of cumulative R"),
    ("dsr", "float", "DSR with N = ledger trials (gated)"),
    ("dsr_effective", "float", "DSR with the effective N"),
    ("n_trials", "int", "trials in the ledger for the strategy and harness hash"),
    ("n_trials_effective", "float", "effective N of the study"),
    ("pbo", "float", "PBO of the study (CSCV)"),
    ("stress_mean_r", "float", "mean R under fee stress (null: not reached)"),
    ("lockbox_n", "int", "lockbox trades in the bucket (null: not reached)"),
    ("lockbox_mean_r", "float", "their mean R"),
    ("lockbox_p", "float", "one-sided Welch p: lockbox mean below the OOS mean"),
    ("study", "str", "study of the bucket's best-ranked trial (its params)"),
    ("trial", "int", "that trial's number"),
    ("pooled_trials", "int", "top trials that contributed trades"),
    ("n_shadow", "int", "paper shadow trades pooled into n (current friction)"),
    ("coins", "json", "coins the bucket traded"),
), "One row per bucket `sweep promote` considered, promoted or not, with the first failed gate.")

results.register_table("lockbox_touches", (
    ("touched_at", "ts", "UTC time of the read (run_id: the promote run)"),
    ("strategy", "str", "bucket: strategy"),
    ("side", "str", "bucket: side"),
    ("session", "str", "bucket: session"),
    ("regime", "str", "bucket: regime"),
    ("vol_bucket", "str", "bucket: vol bucket"),
    ("study", "str", "the trial evaluated on the lockbox"),
    ("trial", "int", "its number"),
    ("params", "json", "its params"),
    ("lockbox_start", "ts", "first lockbox bar (open time)"),
    ("lockbox_end", "ts", "last lockbox bar (open time)"),
    ("n", "int", "lockbox trades in the bucket"),
    ("mean_r", "float", "their mean R"),
    ("welch_t", "float", "Welch t of lockbox vs OOS R"),
    ("welch_p", "float", "one-sided p (lockbox below OOS)"),
    ("passed", "bool", "the lockbox gate held"),
    ("prior_touches", "int", "earlier reads of this bucket on this harness and data"),
), "Every lockbox evaluation: only `sweep promote` reads the lockbox, and each read is logged.")


class PromoteError(HarnessError):
    """Results or options the gate cannot work with (the message says which, and the fix)."""


@dataclass(frozen=True, order=True)
class TrialRef:
    study: str
    trial: int

    def __str__(self) -> str:
        return f"{self.study}#{self.trial}"


@dataclass(frozen=True)
class Skip:
    strategy: str
    n: int  # trials skipped for this reason
    reason: str


@dataclass(frozen=True)
class BucketResult:
    strategy: str
    side: str
    session: str
    regime: str
    vol_bucket: str
    stats: BucketStats
    coins: tuple[str, ...]
    trials: tuple[TrialRef, ...]  # contributing top trials, best-ranked first
    failed: str | None  # first failed gate; None when promoted
    reason: str
    stress: StressResult | None = None
    lockbox: LockboxResult | None = None
    n_shadow: int = 0  # paper shadow trades pooled into the evidence

    @property
    def promoted(self) -> bool:
        return self.failed is None

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.strategy, self.side, self.session, self.regime, self.vol_bucket)


@dataclass(frozen=True)
class PromotionReport:
    promote_id: str
    candidates: Candidates
    buckets: tuple[BucketResult, ...]
    skipped: tuple[Skip, ...]
    studies: dict[str, StudyStats]
    out: Path
    lockbox_touches: int


Progress = Callable[[str, int], None]  # (what is being evaluated, evaluations done)


# ------------------------------------------------------------------------ trades

def normalize_trades(df: pd.DataFrame) -> pd.DataFrame:
    """Trade rows with tag names (side long/short, SESSIONS, REGIMES, VOL_BUCKETS) and R as `r`."""
    need = ["coin", "side", "entry_ts", "exit_ts", "session", "regime", "vol_bucket", "r_multiple"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise PromoteError(f"the trades table lacks column(s) {', '.join(missing)}: these results "
                           "come from another version of `sweep run`; re-run the sweep")
    out = df.copy()
    out["r"] = out["r_multiple"].astype(np.float64)
    for col, names in (("session", SESSIONS), ("regime", REGIMES), ("vol_bucket", VOL_BUCKETS)):
        out[col] = _names(out[col], names, col)
    if pd.api.types.is_numeric_dtype(out["side"]):
        out["side"] = [SIDES.get(int(np.sign(v)), "?") for v in out["side"]]
    out["side"] = out["side"].astype(str)
    if not out["side"].isin(list(SIDES.values())).all():
        raise PromoteError(f"trades table: a side is not one of {', '.join(SIDES.values())}")
    out["entry_ts"] = pd.to_datetime(out["entry_ts"], utc=True)
    out["exit_ts"] = pd.to_datetime(out["exit_ts"], utc=True)
    out["coin"] = out["coin"].astype(str)
    return out


def _names(col: pd.Series, names: tuple[str, ...], what: str) -> pd.Series:
    if pd.api.types.is_numeric_dtype(col):
        codes = col.to_numpy(dtype=np.int64)
        if ((codes < 0) | (codes >= len(names))).any():
            raise PromoteError(f"trades table: a {what} code is outside 0..{len(names) - 1}")
        return pd.Series(np.asarray(names, dtype=object)[codes], index=col.index)
    col = col.astype(str)
    if not col.isin(names).all():
        raise PromoteError(f"trades table: {what} {col[~col.isin(names)].iloc[0]!r} is not one "
                           f"of {', '.join(names)}")
    return col


def dedupe(trades: pd.DataFrame, rank: dict[TrialRef, int]) -> pd.DataFrame:
    """One row per (strategy, coin, entry_ts, side), the best-ranked trial's; in exit order."""
    t = trades.assign(_rank=[rank[TrialRef(str(s), int(n))]
                             for s, n in zip(trades["study"], trades["trial"], strict=True)])
    t = t.sort_values(["_rank", "entry_ts", "coin"], kind="mergesort")
    t = t.drop_duplicates(subset=["strategy", *TRADE_KEY], keep="first")
    return t.sort_values(["exit_ts", "entry_ts", "coin", "side"], kind="mergesort").reset_index(drop=True)


def _in_bucket(t: pd.DataFrame, key: tuple[str, ...], coins: tuple[str, ...]) -> pd.DataFrame:
    sel = t["coin"].isin(coins)
    for col, val in zip(BUCKET_KEY, key, strict=True):
        sel = sel & (t[col] == val)
    return t[sel.to_numpy(dtype=bool)]


# ------------------------------------------------------------------------ reading the results

class _Reader:
    """The results tables through DuckDB; any read error becomes one PromoteError line."""

    def __init__(self, results_dir: Path) -> None:
        self.results_dir = results_dir
        if not results_dir.is_dir():
            raise PromoteError(f"results folder {results_dir} does not exist: pass the --results "
                               "folder `python -m sweep run` wrote")
        if not results.has_rows(results_dir, "trials"):
            raise PromoteError(f"no trials in {results_dir}: run `python -m sweep run --results "
                               f"{results_dir}` first (nothing to promote)")
        try:
            self.con = results.connect(results_dir, persist=False)
        except HarnessError as exc:
            raise PromoteError(f"{_one_line(exc)} (a corrupt or foreign Parquet batch? move it "
                               "out of the folder and retry)") from None

    def df(self, sql: str, params: list | None = None, **frames: pd.DataFrame) -> pd.DataFrame:
        try:
            for name, frame in frames.items():
                self.con.register(name, frame)
            return self.con.execute(sql, params or []).df()
        except (duckdb.Error, OSError) as exc:
            raise PromoteError(f"cannot read the results tables in {self.results_dir}: "
                               f"{_one_line(exc)} (a corrupt or foreign Parquet batch? move it out "
                               "of the folder and retry)") from None
        finally:
            for name in frames:
                self.con.unregister(name)

    def has(self, table: str) -> bool:
        return results.has_rows(self.results_dir, table)

    def columns(self, table: str) -> set[str]:
        return set(self.df(f"SELECT * FROM {table} LIMIT 0").columns)


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _ledger(reader: _Reader, strategy: str | None) -> pd.DataFrame:
    have = reader.columns("trials")
    need = ["strategy", "study", "trial", "status", "rejected", "score", "harness_hash",
            "sim_model_version", "data_fingerprint", "run_id", "params"]
    missing = [c for c in need if c not in have]
    if missing:
        raise PromoteError(f"the trials table in {reader.results_dir} lacks {', '.join(missing)}: "
                           "it was not written by this version of `sweep run`")
    cols = need + [c for c in (*REPRO_FIELDS, "finished_at") if c in have and c not in need]
    order = " ORDER BY finished_at, study, trial" if "finished_at" in have else ""
    df = reader.df(f"SELECT {', '.join(cols)} FROM trials" + (" WHERE strategy = ?" if strategy else "")
                   + order, [strategy] if strategy else None)
    if df.empty:
        raise PromoteError(f"no trials of strategy {strategy!r} in {reader.results_dir}")
    # a trial recorded twice (a resumed run) counts once: its newest row
    return df.drop_duplicates(subset=["study", "trial"], keep="last").reset_index(drop=True)


def _runs(reader: _Reader) -> dict[str, dict]:
    if not reader.has("runs"):
        return {}
    df = reader.df("SELECT run_id, interval, coins, mode, n_bars, folds, code_hash, data_label, "
                   "data_fingerprint FROM runs")
    return {str(r["run_id"]): r for r in df.to_dict("records")}


class _Markets:
    """Loads the data once per (interval, coins) and finds the market a run evaluated."""

    def __init__(self, data: str | None, coins: list[str] | None, market: Market | None,
                 tick: Callable[[str], None]) -> None:
        self.data, self.coins, self.given, self.tick = data, coins, market, tick
        self.cache: dict[tuple, Market] = {}

    def _load(self, interval: str, coins: tuple[str, ...] | None) -> Market:
        if self.given is not None:
            return self.given
        if (interval, coins) not in self.cache:
            from harness.sources import load_market

            self.tick(f"loading {self.data or 'the default data'} ({interval})")

            self.cache[(interval, coins)] = load_market(self.data, interval=interval,
                                                        coins=list(coins) if coins else None)
        return self.cache[(interval, coins)]

    def for_run(self, run: dict) -> tuple[Market | None, str]:
        """(the market with the run's fingerprint, "") or (None, why not)."""
        want, tried = str(run["data_fingerprint"]), []
        run_coins = tuple(c for c in str(run["coins"] or "").split(",") if c)
        options = [tuple(self.coins) if self.coins else None, run_coins or None]
        for coins in dict.fromkeys(options):
            try:
                m = self._load(str(run["interval"]), coins)
            except HarnessError as exc:
                tried.append(_one_line(exc))
                continue
            n = int(run["n_bars"]) if pd.notna(run["n_bars"]) else 0
            for cand in (m, m.slice(0, n) if 0 < n < m.n_bars else None):  # the store may have grown
                if cand is not None and cand.interval == run["interval"] and cand.fingerprint == want:
                    return cand, ""
            tried.append(f"{m.label} ({m.interval}) has fingerprint {m.fingerprint}")
        return None, (f"data {want} ({run['data_label']}) not found: {'; '.join(tried)}; pass "
                      "the --data (and --coins) the sweep used")


def _eligible(ledger: pd.DataFrame, runs: dict[str, dict], cur_hash: str, friction: str,
              markets: _Markets) -> tuple[dict[str, tuple[pd.DataFrame, Market, dict]], list[Skip]]:
    """Per strategy: its candidate trials (best first) on one market; and the skipped ones."""
    known = registry()
    found: dict[str, tuple[Market | None, str]] = {}

    def why_not(t: dict) -> str:
        if t["harness_hash"] != cur_hash:
            return f"harness hash {t['harness_hash']} != current {cur_hash}: never promoted together"
        if t["sim_model_version"] != friction:
            return f"friction {t['sim_model_version']} != current {friction}"
        run = runs.get(str(t["run_id"]))
        if run is None:
            return f"no `runs` row for run {t['run_id']}: its folds and data are unknown"
        if t["strategy"] not in known:
            return f"strategy {t['strategy']} is not registered in this code"
        if run["mode"] != "live":
            return "a shadow-threshold run: only live thresholds trade"
        if run["run_id"] not in found:
            found[run["run_id"]] = markets.for_run(run)
        return found[run["run_id"]][1]

    skipped: dict[tuple[str, str], int] = {}
    chosen: dict[str, list[dict]] = {}
    rows = ledger.to_dict("records")
    rows.sort(key=lambda t: (str(t["strategy"]), -_score(t), str(t["study"]), int(t["trial"])))
    for t in rows:
        name = str(t["strategy"])
        if t["status"] != "complete" or not math.isfinite(_score(t)):
            why = f"no walk-forward score ({t['status']}: {t.get('rejected') or '?'})"
        else:
            why = why_not(t)
            best = chosen.get(name)
            if not why and best and t["data_fingerprint"] != best[0]["data_fingerprint"]:
                why = (f"data {t['data_fingerprint']} differs from the best trial's "
                       f"{best[0]['data_fingerprint']}: one market per strategy")
            elif not why and best and _folds(runs, t) != _folds(runs, best[0]):
                why = (f"walk-forward folds {_folds(runs, t)} differ from the best trial's "
                       f"{_folds(runs, best[0])}: one fold layout (and lockbox) per strategy")
        if why:
            skipped[(name, why)] = skipped.get((name, why), 0) + 1
        else:
            chosen.setdefault(name, []).append(t)
    eligible = {}
    for name, group in chosen.items():
        run = runs[str(group[0]["run_id"])]
        eligible[name] = (pd.DataFrame(group), found[run["run_id"]][0], run)
    return eligible, [Skip(s, n, why) for (s, why), n in sorted(skipped.items())]


def _folds(runs: dict[str, dict], t: dict) -> dict:
    """The fold layout in bars (how lengths were typed, `given`, does not matter)."""
    return asdict(folds_from_record(json.loads(runs[str(t["run_id"])]["folds"])))


def _score(t: dict) -> float:
    try:
        return float(t["score"])
    except (TypeError, ValueError):
        return math.nan


# ------------------------------------------------------------------------ one strategy

@dataclass
class _Strategy:
    """One strategy's top trials, its market and folds, and the re-runs made for the gate."""

    name: str
    top: pd.DataFrame  # best first
    market: Market
    folds: Folds
    friction: Friction
    run_code: str
    evals: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rows = {TrialRef(str(t["study"]), int(t["trial"])): t for t in self.top.to_dict("records")}
        self.rank = {ref: i for i, ref in enumerate(self.rows)}

    def params(self, ref: TrialRef) -> dict[str, Any]:
        return json.loads(self.rows[ref]["params"])

    def evaluate(self, ref: TrialRef, kind: str, stress_mult: float = 1.0) -> Evaluation:
        """`base` or `stress` over the OOS folds, or `lockbox`; once per trial and kind."""
        if (ref, kind) not in self.evals:
            strat = get_strategy(self.name)
            fr = self.friction.stressed(stress_mult) if kind == "stress" else self.friction
            self.evals[(ref, kind)] = evaluate(
                strat, make_params(strat.params_cls, self.params(ref)), self.market, friction=fr,
                folds=self.folds, lockbox=kind == "lockbox", record_trades=kind != "base")
        return self.evals[(ref, kind)]

    def reproduces(self, ref: TrialRef) -> str | None:
        """None when a base re-run gives the recorded results, else why not."""
        from sweep.study import code_hash

        ev, row = self.evaluate(ref, "base"), self.rows[ref]
        got = {"score": ev.score, "base_n_trades": ev.base.n_trades,
               "base_final_equity": ev.base.final_equity}
        for f in REPRO_FIELDS:
            if f in row and pd.notna(row[f]) and not math.isclose(
                    float(row[f]), float(got[f]), rel_tol=REPRO_RTOL, abs_tol=1e-12):
                now = code_hash()
                code = (f"; strategies code changed since the run ({self.run_code} -> {now})"
                        if self.run_code != now else "")
                return (f"trial {ref} does not reproduce: re-run {f} {got[f]:.10g} != recorded "
                        f"{float(row[f]):.10g}{code}")
        return None


@dataclass
class _Bucket:
    """A bucket on its way through the gates."""

    key: tuple[str, ...]
    trades: pd.DataFrame
    stats: BucketStats
    coins: tuple[str, ...]
    trials: tuple[TrialRef, ...]
    failed: str | None = None
    reason: str = ""
    stress: StressResult | None = None
    lockbox: LockboxResult | None = None
    n_shadow: int = 0

    def fail(self, gate: str, reason: str) -> None:
        self.failed, self.reason = gate, reason

    def result(self) -> BucketResult:
        return BucketResult(*self.key, stats=self.stats, coins=self.coins, trials=self.trials,
                            failed=self.failed, reason=self.reason, stress=self.stress,
                            lockbox=self.lockbox, n_shadow=self.n_shadow)


def shadow_trades(results_dir: Path, friction: str) -> pd.DataFrame:
    """The paper ledgers' shadow trades under `friction`, normalized, one per strategy and
    TRADE_KEY (the first registered ledger's); empty when there are none."""
    from sweep.ledger_cli import read_ledger_table

    frames = [f for f in (read_ledger_table(p, "shadow_trades") for p in ledger_paths(results_dir)) if f is not None]
    frames = [f[f["friction"] == friction] for f in frames]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    t = normalize_trades(pd.concat(frames, ignore_index=True))
    return t.drop_duplicates(subset=["strategy", *TRADE_KEY], keep="first").reset_index(drop=True)


def _buckets(reader: _Reader, s: _Strategy, study: StudyStats, gates: Gates,
             shadow: pd.DataFrame | None = None) -> list[_Bucket]:
    keys = pd.DataFrame([(r.study, r.trial) for r in s.rank], columns=["study", "trial"])
    raw = reader.df("SELECT t.* FROM trades t JOIN _top k ON t.study = k.study AND t.trial = k.trial",
                    _top=keys) if reader.has("trades") else pd.DataFrame()
    if raw.empty:
        return []
    trades = dedupe(normalize_trades(raw), s.rank)
    if shadow is not None and len(shadow):  # this strategy's, not repeating an OOS trade
        shadow = shadow[shadow["strategy"] == s.name]
        oos = set(zip(*(trades[c] for c in TRADE_KEY), strict=True))
        shadow = shadow[[k not in oos for k in zip(*(shadow[c] for c in TRADE_KEY), strict=True)]]
    days = reader.df("SELECT DISTINCT r.study, r.trial, r.date FROM trial_returns r JOIN _top k "
                     "ON r.study = k.study AND r.trial = k.trial", _top=keys) \
        if reader.has("trial_returns") else pd.DataFrame(columns=["study", "trial", "date"])
    days["ref"] = [TrialRef(str(a), int(b)) for a, b in zip(days["study"], days["trial"], strict=True)]
    out = []
    for key, g in trades.groupby(list(BUCKET_KEY), sort=True):
        refs = tuple(sorted({TrialRef(str(a), int(b)) for a, b in zip(g["study"], g["trial"], strict=True)},
                            key=s.rank.__getitem__))
        oos_days = pd.DatetimeIndex(pd.to_datetime(days.loc[days["ref"].isin(refs), "date"]).unique())
        key = tuple(str(k) for k in key)
        coins = tuple(sorted(g["coin"].unique()))
        st = bucket_stats(g["r"].to_numpy(), _day(g), oos_days, study)
        sh = _in_bucket(shadow, key, coins) if shadow is not None and len(shadow) else g.iloc[:0]
        if len(sh):  # pooled: n, mean R, t, win rate, max DD; DSR and Sharpe stay the OOS ones
            g = pd.concat([g, sh.assign(study=None, trial=None)], ignore_index=True).sort_values(
                ["exit_ts", "entry_ts", "coin", "side"], kind="mergesort", ignore_index=True)
            pooled = bucket_stats(g["r"].to_numpy(), _day(g), oos_days, study)
            st = replace(pooled, sharpe=st.sharpe, dsr=st.dsr, dsr_effective=st.dsr_effective)
        b = _Bucket(key, g, st, coins, refs, n_shadow=len(sh))
        if fail := first_failure(b.stats, study, gates):
            b.fail(*fail)
        out.append(b)
    return out


def _day(g: pd.DataFrame) -> np.ndarray:
    return g["exit_ts"].dt.tz_convert("UTC").dt.tz_localize(None).dt.normalize().to_numpy()


def _stress_gate(s: _Strategy, alive: list[_Bucket], gates: Gates, tick: Callable[[str], None]) -> None:
    refs = sorted({r for b in alive for r in b.trials}, key=s.rank.__getitem__)
    issues = {}
    for ref in refs:
        tick(f"re-run {s.name} {ref}")
        issues[ref] = s.reproduces(ref)
    for b in alive:
        bad = [issues[r] for r in b.trials if issues[r]]
        if bad:
            b.fail("stress", bad[0])
            continue
        parts = []
        for ref in b.trials:
            tick(f"fee stress {s.name} {ref}")
            ev = s.evaluate(ref, "stress", gates.stress_mult)
            if ev.trades is not None and len(ev.trades):
                parts.append(_in_bucket(normalize_trades(ev.trades.assign(study=ref.study, trial=ref.trial)),
                                        b.key, b.coins))
        st = dedupe(pd.concat(parts, ignore_index=True), s.rank) if parts else pd.DataFrame({"r": []})
        b.stress = StressResult(gates.stress_mult, len(st), float(st["r"].mean()) if len(st) else math.nan)
        if not b.stress.mean_r > 0:
            b.fail("stress", f"mean R with {gates.stress_mult:g}x fees and slippage "
                             f"{fmt(b.stress.mean_r)} <= 0 ({b.stress.n} trades)")


def _lockbox_gate(reader: _Reader, s: _Strategy, alive: list[_Bucket], gates: Gates,
                  tick: Callable[[str], None]) -> list[dict]:
    prior = {}
    if reader.has("lockbox_touches"):
        df = reader.df("SELECT strategy, side, session, regime, vol_bucket, count(*) AS n FROM "
                       "lockbox_touches WHERE strategy = ? AND harness_hash = ? AND "
                       "data_fingerprint = ? GROUP BY ALL",
                       [s.name, harness_hash(), s.market.fingerprint])
        prior = {tuple(r[c] for c in BUCKET_KEY): int(r["n"]) for r in df.to_dict("records")}
    lock = s.folds.split(s.market.n_bars).lockbox
    touches = []
    for b in alive:
        rep = b.trials[0]
        tick(f"lockbox {s.name} {rep}")
        ev = s.evaluate(rep, "lockbox")
        t = normalize_trades(ev.trades) if ev.trades is not None and len(ev.trades) else None
        lock_r = _in_bucket(t, b.key, b.coins)["r"].to_numpy() if t is not None else np.array([])
        b.lockbox, why = lockbox_verdict(lock_r, b.trades["r"].to_numpy(), gates)
        if b.lockbox.passed:
            b.reason = f"promoted: {why}"
        else:
            b.fail("lockbox", why)
        touches.append({
            **dict(zip(BUCKET_KEY, b.key, strict=True)), "data_fingerprint": s.market.fingerprint,
            "touched_at": results.now(), "study": rep.study, "trial": rep.trial,
            "params": results.to_json(s.params(rep)), "lockbox_start": s.market.index[lock[0]],
            "lockbox_end": s.market.index[lock[1] - 1], "n": b.lockbox.n,
            "mean_r": b.lockbox.mean_r, "welch_t": b.lockbox.welch_t, "welch_p": b.lockbox.welch_p,
            "passed": b.lockbox.passed, "prior_touches": prior.get(b.key, 0),
        })
    return touches


def _candidate(s: _Strategy, b: _Bucket, study: StudyStats, kill: KillSpec) -> Bucket:
    rep, st = b.trials[0], b.stats
    return Bucket(
        strategy=s.name, interval=s.market.interval, params=MappingProxyType(s.params(rep)),
        run_id=str(s.rows[rep]["run_id"]), trial=rep.trial, coins=b.coins,
        side=b.key[1], session=b.key[2], regime=b.key[3], vol_bucket=b.key[4],
        evidence=Evidence(
            n=st.n, mean_r=st.mean_r, t_stat=st.t_stat, win_rate=st.win_rate, sharpe=st.sharpe,
            max_dd_r=st.max_dd_r, dsr=st.dsr, dsr_effective=st.dsr_effective,
            n_trials=study.n_trials, n_trials_effective=study.n_effective, pbo=study.pbo,
            pooled_trials=len(b.trials), stress=b.stress, lockbox=b.lockbox),
        kill=kill_criteria(b.trades["r"].to_numpy(), kill),
    )


# ------------------------------------------------------------------------ the run

def run_promotion(results_dir: str | Path = results.DEFAULT_RESULTS, *, data: str | None = None,
                  out: str | Path = "live_candidates.json", strategy: str | None = None,
                  gates: Gates = Gates(), kill: KillSpec = KillSpec(), coins: list[str] | None = None,
                  market: Market | None = None, progress: Progress | None = None,
                  now: datetime | None = None) -> PromotionReport:
    """Apply the gate to the results; write `out`, then the promotions rows.

    `market` (tests, notebooks) replaces loading `data`. Raises PromoteError (or another
    HarnessError) on errors; an empty candidate list is a result, not an error.
    """
    _check_options(gates, kill)
    results_dir, out = Path(results_dir), Path(out)
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    promote_id, cur_hash = results.new_id(), harness_hash()
    friction = get_friction(DEFAULT_FRICTION)
    progress = progress or (lambda what, done: None)
    count = [0]

    def tick(what: str) -> None:
        progress(what, count[0])
        count[0] += 1

    reader = _Reader(results_dir)
    shadow = shadow_trades(results_dir, friction.version)
    buckets: list[tuple[_Strategy, _Bucket]] = []
    studies: dict[str, StudyStats] = {}
    touches: list[dict] = []
    try:
        ledger = _ledger(reader, strategy)
        eligible, skipped = _eligible(ledger, _runs(reader), cur_hash, friction.version,
                                      _Markets(data, coins, market, tick))
        for name, (trials, mkt, run) in sorted(eligible.items()):
            s = _Strategy(name, trials.head(gates.top_k), mkt, folds_from_record(json.loads(run["folds"])),
                          friction, str(run["code_hash"]))
            n_ledger = int(((ledger["strategy"] == name) & (ledger["harness_hash"] == cur_hash)).sum())
            returns = reader.df(
                "SELECT r.study, r.trial, r.date, r.ret FROM trial_returns r JOIN (SELECT DISTINCT "
                "study, trial FROM trials WHERE strategy = ?) t USING (study, trial) WHERE "
                "r.harness_hash = ? AND r.sim_model_version = ? AND r.data_fingerprint = ?",
                [name, cur_hash, friction.version, mkt.fingerprint]) if reader.has("trial_returns") \
                else pd.DataFrame(columns=["study", "trial", "date", "ret"])
            studies[name] = study = study_stats(returns, n_ledger)
            bs = _buckets(reader, s, study, gates, shadow)
            _stress_gate(s, [b for b in bs if not b.failed], gates, tick)
            touches += _lockbox_gate(reader, s, [b for b in bs if not b.failed], gates, tick)
            buckets += [(s, b) for b in bs]
    finally:
        reader.con.close()

    if touches:  # logged before anything else is written: a read of the lockbox is never lost
        _append(results_dir, "lockbox_touches", touches, promote_id, cur_hash, friction.version)
    markets = {s.name: s.market for s, _ in buckets} | {n: e[1] for n, e in eligible.items()}
    cands = Candidates(
        schema_version=SCHEMA_VERSION, generated_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        harness_hash=cur_hash, friction_version=friction.version,
        data_fingerprint=",".join(sorted({m.fingerprint for m in markets.values()})) or "none",
        data_source="; ".join(sorted({m.label for m in markets.values()})) or "none",
        gates=gates,
        buckets=tuple(_candidate(s, b, studies[s.name], kill) for s, b in buckets if not b.failed),
    )
    write_candidates(cands, out)
    if buckets:
        _append(results_dir, "promotions",
                [_promotion_row(b, s, studies[s.name], now, out) for s, b in buckets],
                promote_id, cur_hash, friction.version)
    return PromotionReport(promote_id, cands, tuple(b.result() for _, b in buckets), tuple(skipped),
                           studies, out, len(touches))


def _check_options(gates: Gates, kill: KillSpec) -> None:
    checks = [
        (gates.top_k >= 1, f"--top must be >= 1 (got {gates.top_k})"),
        (gates.min_trades >= 2, f"--min-trades must be >= 2 (got {gates.min_trades})"),
        (0 <= gates.min_dsr <= 1, f"--min-dsr must be in [0, 1] (got {gates.min_dsr})"),
        (0 <= gates.max_pbo <= 1, f"--max-pbo must be in [0, 1] (got {gates.max_pbo})"),
        (gates.stress_mult >= 1, f"--stress-mult must be >= 1 (got {gates.stress_mult})"),
        (0 < gates.lockbox_alpha < 1, f"--lockbox-alpha must be in (0, 1) (got {gates.lockbox_alpha})"),
        (gates.lockbox_min_trades >= 2,
         f"--lockbox-min-trades must be >= 2 (got {gates.lockbox_min_trades})"),
        (kill.window_trades >= 1, f"--kill-window must be >= 1 (got {kill.window_trades})"),
        (0.5 < kill.confidence < 1, f"--kill-confidence must be in (0.5, 1) (got {kill.confidence})"),
    ]
    problems = [msg for ok, msg in checks if not ok]
    if problems:
        raise PromoteError("; ".join(problems))


def _append(results_dir: Path, table: str, rows: list[dict], promote_id: str, cur_hash: str,
            friction: str) -> None:
    commit, _ = results.git_state()
    df = pd.DataFrame([{"run_id": promote_id, "harness_hash": cur_hash, "sim_model_version": friction,
                        "git_commit": commit, "seed": 0, **r} for r in rows])
    for name, kind, _ in results.TABLES[table].columns:
        if kind == "int" and name in df:
            df[name] = pd.array(df[name], dtype="Int64")
        elif kind == "float" and name in df:
            df[name] = pd.to_numeric(df[name], errors="coerce").astype(np.float64)
    results.write_batch(results_dir, table, df)


def _promotion_row(b: _Bucket, s: _Strategy, study: StudyStats, now: datetime, out: Path) -> dict:
    st, rep = b.stats, b.trials[0]
    return {
        **dict(zip(BUCKET_KEY, b.key, strict=True)), "data_fingerprint": s.market.fingerprint,
        "generated_at": pd.Timestamp(now), "out": str(out), "promoted": b.failed is None,
        "failed_gate": b.failed, "reason": b.reason, "n": st.n, "mean_r": st.mean_r,
        "t_stat": st.t_stat, "win_rate": st.win_rate, "sharpe": st.sharpe, "max_dd_r": st.max_dd_r,
        "dsr": st.dsr, "dsr_effective": st.dsr_effective, "n_trials": study.n_trials,
        "n_trials_effective": study.n_effective, "pbo": study.pbo,
        "stress_mean_r": b.stress.mean_r if b.stress else None,
        "lockbox_n": b.lockbox.n if b.lockbox else None,
        "lockbox_mean_r": b.lockbox.mean_r if b.lockbox else None,
        "lockbox_p": b.lockbox.welch_p if b.lockbox else None,
        "study": rep.study, "trial": rep.trial, "pooled_trials": len(b.trials), "n_shadow": b.n_shadow,
        "coins": results.to_json(list(b.coins)),
    }
