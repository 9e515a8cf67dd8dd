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
