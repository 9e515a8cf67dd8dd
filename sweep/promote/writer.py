"""What promote writes: the candidates file (atomically, schemas.candidates) and one
`promotions` row per bucket considered, with its first failed gate, value and threshold."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd
from scipy import stats as sps

from schemas.candidates import Bucket, Evidence, KillCriteria, LockboxResult, StressResult
from sweep import results
from sweep.promote.evidence import BUCKET_KEY, StudyEvidence, max_drawdown_r
from sweep.promote.gates import BucketCase
from sweep.promote.rerun import StrategyRun

results.register_table("promotions", (
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


@dataclass(frozen=True)
class KillSpec:
    """How the kill criteria are derived from a bucket's evidence."""

    window_trades: int = 30
    confidence: float = 0.95
    bootstrap: int = 2000  # paths for the drawdown quantile (seeded: the file is reproducible)


def kill_criteria(r: np.ndarray, spec: KillSpec) -> KillCriteria:
    """Limits a live bucket must stay inside, from its evidence R.

    Max drawdown: the larger of the evidence's own and the `confidence` quantile of the max
    drawdown of `window_trades` trades resampled from it. Min win rate: the (1 - confidence)
    binomial quantile of wins over the window. Expected R band: the two-sided `confidence`
    normal band of the window's mean R.
    """
    r = np.asarray(r, dtype=np.float64)
    w = spec.window_trades
    rng = np.random.default_rng(0)
    paths = np.cumsum(r[rng.integers(0, len(r), size=(spec.bootstrap, w))], axis=1)
    paths = np.hstack([np.zeros((spec.bootstrap, 1)), paths])
    dd = np.max(np.maximum.accumulate(paths, axis=1) - paths, axis=1)
    max_dd = max(float(np.quantile(dd, spec.confidence)), max_drawdown_r(r), 1e-9)
    min_wr = float(sps.binom.ppf(1.0 - spec.confidence, w, float((r > 0).mean()))) / w
    half = float(sps.norm.ppf(0.5 + spec.confidence / 2)) * float(r.std(ddof=1)) / math.sqrt(w)
    m = float(r.mean())
    return KillCriteria(max_drawdown_r=max_dd, window_trades=w, min_win_rate=min_wr,
                        expected_r_low=m - half, expected_r_high=m + half)


def candidate(s: StrategyRun, c: BucketCase, study: StudyEvidence, correction: str,
              kill: KillSpec) -> Bucket:
    rep, st = c.trials[0], c.stats
    assert c.stress is not None and c.lockbox is not None  # promoted buckets passed both
    return Bucket(
        strategy=s.name, interval=s.market.interval, params=MappingProxyType(s.params(rep)),
        run_id=str(s.rows[rep]["run_id"]), trial=rep.trial, coins=c.coins,
        side=c.key[1], session=c.key[2], regime=c.key[3], vol_bucket=c.key[4],
        evidence=Evidence(
            n=st.n, mean_r=st.mean_r, t_stat=st.t_stat, p_value=st.p_value,
            p_corrected=c.p_corrected, correction=correction, m_tests=c.m_tests,
            win_rate=st.win_rate, sharpe=st.sharpe, max_dd_r=st.max_dd_r,
            trial_sharpe=study.sharpe, dsr=study.dsr, spa_p=study.spa_p,
            p_oos_loss=study.p_oos_loss, pbo=study.pbo, n_trials=study.n_trials,
            n_trials_effective=study.n_effective, pooled_trials=len(c.trials),
            stress=StressResult(**vars(c.stress)), lockbox=LockboxResult(**vars(c.lockbox))),
        kill=kill_criteria(c.trades["r"].to_numpy(), kill),
    )


def promotion_row(c: BucketCase, s: StrategyRun, study: StudyEvidence, correction: str,
                  now: datetime, out: Path) -> dict:
    st, rep, lb, f = c.stats, c.trials[0], c.lockbox, c.failed
    return {
        **dict(zip(BUCKET_KEY, c.key, strict=True)), "data_fingerprint": s.market.fingerprint,
        "generated_at": pd.Timestamp(now), "out": str(out), "promoted": f is None,
        "failed_gate": f.gate if f else None, "failed_value": f.value if f else None,
        "threshold": f.threshold if f else None, "reason": c.reason, "n": st.n,
        "mean_r": st.mean_r, "t_stat": st.t_stat, "p_value": st.p_value,
        "p_corrected": c.p_corrected, "correction": correction, "m_tests": c.m_tests,
        "win_rate": st.win_rate, "sharpe": st.sharpe, "max_dd_r": st.max_dd_r,
        "trial_sharpe": study.sharpe, "dsr": study.dsr, "spa_p": study.spa_p,
        "p_oos_loss": study.p_oos_loss, "pbo": study.pbo, "n_trials": study.n_trials,
        "n_trials_effective": study.n_effective,
        "stress_mean_r": c.stress.mean_r if c.stress else None,
        "lockbox_n": lb.n if lb else None, "lockbox_mean_r": lb.mean_r if lb else None,
        "lockbox_mde": lb.mde if lb else None, "lockbox_side_n": lb.side_n if lb else None,
        "lockbox_side_mean_r": lb.side_mean_r if lb else None,
        "study": rep.study, "trial": rep.trial, "pooled_trials": len(c.trials), "n_shadow": c.n_shadow,
        "coins": results.to_json(list(c.coins)),
    }


def append(results_dir: Path, table: str, rows: list[dict], promote_id: str, cur_hash: str,
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
