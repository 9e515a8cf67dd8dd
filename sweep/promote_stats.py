"""The numbers behind each promotion gate, as pure functions of R multiples and daily returns.

Conventions: R is the per-trade R multiple after costs; a bucket's daily R is the R of the
trades closed each UTC day, 0 on the other out-of-sample days. Sharpe ratios handed to
harness.stats are per day (DSR's trial-Sharpe variance comes from daily trial returns too);
the Sharpe reported is annualized with 365 days. Any statistic that cannot be computed is NaN,
and NaN fails every gate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from harness import stats
from harness.errors import ConfigError
from harness.metrics import DAYS_PER_YEAR
from schemas.candidates import Gates, KillCriteria, LockboxResult

PBO_BLOCKS = 16


@dataclass(frozen=True)
class KillSpec:
    """How the kill criteria are derived from a bucket's evidence."""

    window_trades: int = 30
    confidence: float = 0.95
    bootstrap: int = 2000  # paths for the drawdown quantile (seeded: the file is reproducible)


@dataclass(frozen=True)
class StudyStats:
    """What one strategy's study says as a whole (shared by all its buckets)."""

    n_trials: int  # every trial of the strategy in the ledger under this harness hash
    n_study: int  # trials with daily OOS returns on this data: the CSCV columns
    n_effective: float  # clusters of trials whose OOS returns correlate >= 0.95
    sr_var: float  # variance of the trials' per-day Sharpe ratios
    pbo: float  # NaN when it cannot be computed (pbo_note says why)
    pbo_note: str
    days: int  # rows of the CSCV matrix


@dataclass(frozen=True)
class BucketStats:
    n: int
    mean_r: float
    t_stat: float
    win_rate: float
    sharpe: float  # daily R, annualized
    max_dd_r: float
    dsr: float  # N = n_trials (gated)
    dsr_effective: float  # N = n_effective (reported)


def max_drawdown_r(r: np.ndarray) -> float:
    """Largest fall of cumulative R from a running peak (starting at 0), in trade order."""
    c = np.concatenate([[0.0], np.cumsum(np.asarray(r, dtype=np.float64))])
    return float(np.max(np.maximum.accumulate(c) - c))


def daily_r(r: np.ndarray, exit_day: np.ndarray, days: pd.DatetimeIndex) -> np.ndarray:
    """R summed per UTC exit day over `days` (and any exit day outside them), 0 elsewhere."""
    per_day = pd.Series(np.asarray(r, dtype=np.float64),
                        index=pd.DatetimeIndex(exit_day)).groupby(level=0).sum()
    grid = pd.DatetimeIndex(days).union(per_day.index)
    return per_day.reindex(grid, fill_value=0.0).to_numpy()


def _or_nan(fn: Callable[[], float]) -> float:
    try:
        v = float(fn())
    except (ConfigError, ValueError, ZeroDivisionError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def bucket_stats(r: np.ndarray, exit_day: np.ndarray, days: pd.DatetimeIndex,
                 study: StudyStats) -> BucketStats:
    r = np.asarray(r, dtype=np.float64)
    d = daily_r(r, exit_day, days)
    sd = d.std(ddof=1) if len(d) > 1 else math.nan
    return BucketStats(
        n=len(r),
        mean_r=float(r.mean()) if len(r) else math.nan,
        t_stat=stats.t_stat(r),
        win_rate=float((r > 0).mean()) if len(r) else math.nan,
        sharpe=float(d.mean() / sd * math.sqrt(DAYS_PER_YEAR)) if sd > 0 else math.nan,
        max_dd_r=max_drawdown_r(r),
        dsr=_or_nan(lambda: stats.dsr(d, study.n_trials, study.sr_var)),
        dsr_effective=_or_nan(lambda: stats.dsr(d, study.n_effective, study.sr_var)),
    )


def study_stats(returns: pd.DataFrame, n_ledger: int) -> StudyStats:
    """PBO (CSCV), effective N and the trial-Sharpe variance from daily OOS returns.

    `returns`: long format (study, trial, date, ret). Only days every trial covers are kept,
    so the columns of the CSCV matrix are comparable.
    """
    if returns.empty:
        return StudyStats(max(n_ledger, 1), 0, 1.0, 0.0, math.nan, "no daily OOS returns", 0)
    m = returns.pivot_table(index="date", columns=["study", "trial"], values="ret", aggfunc="sum")
    mat = m.dropna(axis=0, how="any").sort_index().to_numpy(dtype=np.float64)
    days, n = mat.shape
    sr = stats.trial_sharpes(mat) if days > 1 else np.full(n, np.nan)
    sr = sr[np.isfinite(sr)]
    sr_var = float(np.var(sr, ddof=1)) if len(sr) > 1 else 0.0
    n_eff = float(stats.effective_n(mat)) if days > 1 and n > 1 else 1.0
    try:
        pbo, note = stats.pbo_cscv(mat, s=PBO_BLOCKS).pbo, f"CSCV over {n} trials x {days} days"
    except ConfigError as exc:
        pbo, note = math.nan, f"PBO not computable: {exc}"
    return StudyStats(max(n_ledger, n, 1), n, max(n_eff, 1.0), sr_var, pbo, note, days)


def first_failure(s: BucketStats, study: StudyStats, gates: Gates) -> tuple[str, str] | None:
    """The first of the n, t, dsr and pbo gates that fails, with its numbers."""
    if not s.n >= gates.min_trades:
        return "n", f"{s.n} trades < {gates.min_trades}"
    if not s.t_stat >= gates.min_t:
        return "t", f"t {fmt(s.t_stat)} < {gates.min_t} (mean R {fmt(s.mean_r)})"
    if not s.dsr >= gates.min_dsr:
        return "dsr", (f"DSR {fmt(s.dsr)} < {gates.min_dsr} with N {study.n_trials} "
                       f"(effective N {study.n_effective:g}: {fmt(s.dsr_effective)})")
    if not study.pbo <= gates.max_pbo:
        return "pbo", (f"study PBO {fmt(study.pbo)} > {gates.max_pbo}" if math.isfinite(study.pbo)
                       else study.pbo_note)
    return None


def welch_below(lock_r: np.ndarray, oos_r: np.ndarray) -> tuple[float | None, float | None]:
    """One-sided Welch t-test of H1 "the lockbox mean R is below the OOS mean": (t, p)."""
    lock_r, oos_r = np.asarray(lock_r, float), np.asarray(oos_r, float)
    if len(lock_r) < 2 or len(oos_r) < 2 or not (lock_r.std() > 0 or oos_r.std() > 0):
        return None, None
    res = sps.ttest_ind(lock_r, oos_r, equal_var=False, alternative="less")
    return float(res.statistic), float(res.pvalue)


def lockbox_verdict(lock_r: np.ndarray, oos_r: np.ndarray, gates: Gates) -> tuple[LockboxResult, str]:
    """Passes when the lockbox holds enough trades, their mean R > 0, and it is not
    significantly below the OOS mean R (one-sided Welch p >= lockbox_alpha)."""
    lock_r = np.asarray(lock_r, float)
    n = len(lock_r)
    mean = float(lock_r.mean()) if n else None
    t, p = welch_below(lock_r, oos_r)
    if n < gates.lockbox_min_trades:
        why = f"lockbox holds {n} trade(s) of the bucket < {gates.lockbox_min_trades}: it cannot confirm"
    elif not mean > 0:
        why = f"lockbox mean R {mean:+.3f} <= 0"
    elif p is None or not p >= gates.lockbox_alpha:
        why = (f"lockbox mean R {mean:+.3f} is significantly below the OOS {float(np.mean(oos_r)):+.3f} "
               f"(one-sided Welch p {fmt(p)} < {gates.lockbox_alpha})")
    else:
        return (LockboxResult(n, mean, t, p, True),
                f"lockbox n {n}, mean R {mean:+.3f}, Welch p {p:.3f}")
    return LockboxResult(n, mean, t, p, False), why


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


def fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.3g}"
