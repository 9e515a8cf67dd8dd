"""The lockbox: read once per candidate, logged before it is used, never read again.

A candidate is (strategy, params hash, harness hash, data fingerprint, friction): the params a
bucket would trade with, on the data and harness that produced its evidence. Its first read
writes a `lockbox_touches` row (durably: an atomic, fsynced Parquet batch) BEFORE the lockbox is
evaluated, then the trades it made there as a `lockbox_reads` row. A later promote reuses the
logged trades and never evaluates the lockbox again. A touch without a logged read (a promote
killed in between) leaves the lockbox spent for that candidate: it cannot confirm anything.

The lockbox must not contradict the OOS evidence:
- the candidate's lockbox trades on the bucket's side (every coin) have mean R > 0;
- the bucket's own lockbox trades are not significantly negative (one-sided t-test of mean
  R < 0, p >= lockbox_alpha).
With the bucket's lockbox n comes the smallest negative mean R that test would catch with 80%
power (z_{1-alpha} + z_0.8) * sd / sqrt(n), sd from the bucket's OOS trades: a thin lockbox is
visible as a large number there.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from harness.evaluate import evaluate
from harness.manifest import harness_hash
from schemas.candidates import Gates, LockboxResult
from strategies.base import get_strategy, make_params
from sweep import results
from sweep.promote.eligible import Reader, TrialRef
from sweep.promote.evidence import in_bucket, normalize_trades, t_test_positive
from sweep.promote.gates import BucketCase, Failure, fmt
from sweep.promote.rerun import StrategyRun

POWER = 0.8
TRADE_COLS = ("coin", "side", "session", "regime", "vol_bucket", "entry_ts", "exit_ts", "r")


def read_lockbox(s: StrategyRun, ref: TrialRef) -> pd.DataFrame:
    """Evaluate the trial on the lockbox (the only place in sweep that does): its closed trades."""
    strat = get_strategy(s.name)
    ev = evaluate(strat, make_params(strat.params_cls, s.params(ref)), s.market, friction=s.friction,
                  folds=s.folds, lockbox=True, record_trades=True, detail=s.detail)
    if ev.trades is None or not len(ev.trades):
        return pd.DataFrame({c: [] for c in TRADE_COLS})
    return normalize_trades(ev.trades)[list(TRADE_COLS)]


@dataclass(frozen=True)
class Outcome:
    trades: pd.DataFrame | None  # None: spent (touched, result never logged)
    reused: bool
    note: str


class Lockbox:
    """The touch and read log of one results folder, for one promote run."""

    def __init__(self, reader: Reader, promote_id: str, friction: str) -> None:
        self.results_dir, self.promote_id, self.friction = reader.results_dir, promote_id, friction
        self.hash = harness_hash()
        self.touches = self._load(reader, "lockbox_touches", "touched_at")
        self.reads = self._load(reader, "lockbox_reads", "read_at")
        self.n_reads = 0  # lockbox evaluations made by this run

    def _load(self, reader: Reader, table: str, ts: str) -> dict[tuple, dict]:
        if not reader.has(table):
            return {}
        df = reader.df(f"SELECT * FROM {table} WHERE harness_hash = ? AND sim_model_version = ? "
                       f"ORDER BY {ts}", [self.hash, self.friction])
        return {(r["strategy"], r["params_hash"], r["data_fingerprint"]): r for r in df.to_dict("records")}

    def outcome(self, s: StrategyRun, ref: TrialRef, tick: Callable[[str], None]) -> Outcome:
        key = (s.name, s.params_hash(ref), s.market.fingerprint)
        if key in self.reads:
            r = self.reads[key]
            return Outcome(_trades(r["trades"]), True, f"read by promote run {r['run_id'][:8]} at "
                                                       f"{pd.Timestamp(r['read_at']):%Y-%m-%d %H:%M}Z")
        if key in self.touches:
            t = self.touches[key]
            return Outcome(None, False, f"touched by promote run {t['run_id'][:8]} at "
                                        f"{pd.Timestamp(t['touched_at']):%Y-%m-%d %H:%M}Z but its "
                                        "result was never logged: the lockbox is spent for these params")
        lock = s.folds.split(s.market.n_bars).lockbox
        self._append("lockbox_touches", {
            "data_fingerprint": s.market.fingerprint, "touched_at": results.now(), "strategy": s.name,
            "params_hash": key[1], "study": ref.study, "trial": ref.trial,
            "params": results.to_json(s.params(ref)), "lockbox_start": s.market.index[lock[0]],
            "lockbox_end": s.market.index[lock[1] - 1]})
        tick(f"lockbox {s.name} {ref}")
        self.n_reads += 1
        trades = read_lockbox(s, ref)
        row = {"data_fingerprint": s.market.fingerprint, "read_at": results.now(), "strategy": s.name,
               "params_hash": key[1], "n": len(trades), "trades": results.to_json(trades.to_dict("records"))}
        self._append("lockbox_reads", row)
        self.reads[key] = {**row, "run_id": self.promote_id}
        return Outcome(trades, False, "read now")

    def _append(self, table: str, row: dict) -> None:
        commit, _ = results.git_state()
        df = pd.DataFrame([{"run_id": self.promote_id, "harness_hash": self.hash,
                            "sim_model_version": self.friction, "git_commit": commit, "seed": 0, **row}])
        if "n" in df:
            df["n"] = df["n"].astype("int64")
        results.write_batch(self.results_dir, table, df)


def _trades(text: str) -> pd.DataFrame:
    df = pd.DataFrame(json.loads(text), columns=list(TRADE_COLS))
    for c in ("entry_ts", "exit_ts"):
        df[c] = pd.to_datetime(df[c], utc=True)
    df["r"] = df["r"].astype(np.float64)
    return df


def verdict(c: BucketCase, out: Outcome, g: Gates) -> LockboxResult:
    """The lockbox result of one bucket, and its failure (set on the case) when it contradicts."""
    if out.trades is None:
        c.lockbox = LockboxResult(0, None, None, None, None, 0, None, False)
        c.fail(Failure("lockbox", None, None, out.note))
        return c.lockbox
    side = out.trades[out.trades["side"] == c.key[1]]["r"].to_numpy()
    own = in_bucket(out.trades.assign(strategy=c.key[0]), c.key, c.coins)["r"].to_numpy()
    t, p_pos = t_test_positive(own)
    p_neg = 1.0 - p_pos if math.isfinite(p_pos) else None
    sd = c.stats.sd_r
    mde = ((sps.norm.ppf(1 - g.lockbox_alpha) + sps.norm.ppf(POWER)) * sd / math.sqrt(len(own))
           if len(own) >= 2 and math.isfinite(sd) else None)
    side_mean = float(side.mean()) if len(side) else None
    own_mean = float(own.mean()) if len(own) else None
    ok_side = side_mean is not None and side_mean > 0
    ok_own = p_neg is None or p_neg >= g.lockbox_alpha
    c.lockbox = LockboxResult(len(own), own_mean, t if math.isfinite(t) else None, p_neg, mde,
                              len(side), side_mean, ok_side and ok_own)
    power = f"detects mean R <= -{fmt(mde)}" if mde is not None else "no power: < 2 trades"
    if not ok_side:
        c.fail(Failure("lockbox", side_mean, 0.0,
                       f"lockbox {c.key[1]} trades ({len(side)}) mean R {fmt(side_mean)} <= 0 ({out.note})"))
    elif not ok_own:
        c.fail(Failure("lockbox", p_neg, g.lockbox_alpha,
                       f"the bucket's {len(own)} lockbox trades are significantly negative: mean R "
                       f"{fmt(own_mean)}, p {fmt(p_neg)} < {g.lockbox_alpha} ({out.note})"))
    else:
        c.reason = (f"promoted: lockbox {c.key[1]} n {len(side)} mean R {fmt(side_mean)}; bucket n "
                    f"{len(own)} mean R {fmt(own_mean)}, {power} ({out.note})")
    return c.lockbox
