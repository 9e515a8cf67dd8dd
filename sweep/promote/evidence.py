"""The evidence, at the level where it lives (DESIGN section 9).

Study level (the search itself), from the daily OOS returns of every trial of the strategy on
this data and harness (`trial_returns`): the selected trial's Deflated Sharpe with SR0 from the
trial Sharpes (same days, same scale: per-day Sharpe of whole-trial daily returns), Hansen's SPA
over all trials, and CSCV (PBO, and P(OOS loss) of the in-sample best).

SR0 is the expected maximum Sharpe of N effective trials that are all luck (the False Strategy
Theorem). Its variance is that of the clusters' Sharpe ratios, capped at the Sharpe estimator's
own sampling variance under that null, 1 / (T - 1): dispersion beyond it is not luck but real
differences between trials (costs, or the edge itself), and counting it as luck makes SR0 grow
with the edge: a planted edge with an annual Sharpe of 6.8 over 85 days met an SR0 of 11.6
(observed variance 0.17 per day^2 against 0.012 by luck) and could never pass.

Bucket level, from closed OOS trades: n, mean R, its one-sided t-test (p of mean R > 0),
win rate, the Sharpe of the bucket's daily R and the drawdown of its cumulative R.

Any statistic that cannot be computed is NaN, and NaN fails every gate.
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
from harness.signals import REGIMES, SESSIONS, SIDES, VOL_BUCKETS
from harness.spa import spa
from sweep.promote.eligible import PromoteError, TrialRef

BUCKET_KEY = ("strategy", "side", "session", "regime", "vol_bucket")
TRADE_KEY = ("coin", "entry_ts", "side")  # one economic trade within a strategy
PBO_BLOCKS = 16
SPA_REPS = 1000
SPA_MEAN_BLOCK = 5.0  # days


@dataclass(frozen=True)
class StudyEvidence:
    """What one strategy's search says as a whole (shared by all its buckets)."""

    selected: TrialRef  # the best-scored eligible trial
    n_trials: int  # every trial of the strategy in the ledger under this harness hash
    n_study: int  # trials with daily OOS returns on this data: the columns below
    n_effective: float  # clusters of this data's trials (corr >= 0.95) + the ledger's others
    sr_var: float  # the variance behind SR0: observed, capped at 1 / (days - 1)
    sr_var_observed: float  # variance of the clusters' per-day Sharpe ratios
    sharpe: float  # the selected trial's, annualized
    dsr: float
    spa_p: float
    pbo: float
    p_oos_loss: float
    days: int  # rows of the returns matrix
    note: str  # what could not be computed, if anything


@dataclass(frozen=True)
class BucketStats:
    n: int
    mean_r: float
    sd_r: float
    t_stat: float
    p_value: float  # one-sided: mean R > 0
    win_rate: float
    sharpe: float  # daily R, annualized
    max_dd_r: float


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
    return by_exit(t)


def by_exit(t: pd.DataFrame) -> pd.DataFrame:
    return t.sort_values(["exit_ts", "entry_ts", "coin", "side"], kind="mergesort").reset_index(drop=True)


def in_bucket(t: pd.DataFrame, key: tuple[str, ...], coins: tuple[str, ...]) -> pd.DataFrame:
    sel = t["coin"].isin(coins)
    for col, val in zip(BUCKET_KEY, key, strict=True):
        sel = sel & (t[col] == val)
    return t[sel.to_numpy(dtype=bool)]


def exit_days(t: pd.DataFrame) -> np.ndarray:
    return t["exit_ts"].dt.tz_convert("UTC").dt.tz_localize(None).dt.normalize().to_numpy()


# ------------------------------------------------------------------------ bucket level

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


def t_test_positive(r: np.ndarray) -> tuple[float, float]:
    """(t, one-sided p of H1 "mean R > 0"), Student t with n - 1 degrees of freedom."""
    r = np.asarray(r, dtype=np.float64)
    t = stats.t_stat(r)
    return t, (float(sps.t.sf(t, len(r) - 1)) if math.isfinite(t) else math.nan)


def bucket_stats(r: np.ndarray, exit_day: np.ndarray, days: pd.DatetimeIndex) -> BucketStats:
    r = np.asarray(r, dtype=np.float64)
    d = daily_r(r, exit_day, days)
    sd = d.std(ddof=1) if len(d) > 1 else math.nan
    t, p = t_test_positive(r)
    return BucketStats(
        n=len(r), mean_r=float(r.mean()) if len(r) else math.nan,
        sd_r=float(r.std(ddof=1)) if len(r) > 1 else math.nan, t_stat=t, p_value=p,
        win_rate=float((r > 0).mean()) if len(r) else math.nan,
        sharpe=float(d.mean() / sd * math.sqrt(DAYS_PER_YEAR)) if sd > 0 else math.nan,
        max_dd_r=max_drawdown_r(r),
    )


# ------------------------------------------------------------------------ study level

def _or_nan(fn: Callable[[], float]) -> float:
    try:
        v = float(fn())
    except (ConfigError, ValueError, ZeroDivisionError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def study_evidence(returns: pd.DataFrame, selected: TrialRef, n_ledger: int) -> StudyEvidence:
    """DSR of `selected`, SPA, PBO and P(OOS loss) from daily OOS returns in long format
    (study, trial, date, ret). Only days every trial covers are kept, so every column (and the
    selected trial's Sharpe) is measured over the same days."""
    if returns.empty:
        return StudyEvidence(selected, max(n_ledger, 1), 0, float(max(n_ledger, 1)), math.nan,
                             math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, 0,
                             "no daily OOS returns")
    m = returns.pivot_table(index="date", columns=["study", "trial"], values="ret", aggfunc="sum")
    m = m.dropna(axis=0, how="any").sort_index()
    cols = [TrialRef(str(a), int(b)) for a, b in m.columns]
    mat = m.to_numpy(dtype=np.float64)
    days, n = mat.shape
    notes = []
    labels = stats.trial_clusters(mat) if days > 1 else np.arange(1, n + 1)
    # one Sharpe per cluster (of its equal-weight mean returns): the spread of DISTINCT trials
    cluster_sr = stats.trial_sharpes(np.column_stack(
        [mat[:, labels == k].mean(axis=1) for k in np.unique(labels)])) if days > 1 else np.array([])
    cluster_sr = cluster_sr[np.isfinite(cluster_sr)]
    sr_var_obs = float(np.var(cluster_sr, ddof=1)) if len(cluster_sr) > 1 else 0.0
    sr_var = min(sr_var_obs, 1.0 / (days - 1)) if days > 1 else sr_var_obs
    n_eff = float(len(np.unique(labels)) + max(0, n_ledger - n))
    sel = mat[:, cols.index(selected)] if selected in cols else None
    if sel is None:
        notes.append(f"the selected trial {selected} has no daily OOS returns")
    sharpe = _or_nan(lambda: sel.mean() / sel.std(ddof=1) * math.sqrt(DAYS_PER_YEAR)) \
        if sel is not None else math.nan
    dsr = _or_nan(lambda: stats.dsr(sel, n_eff, sr_var)) if sel is not None else math.nan
    try:
        spa_p = spa(mat, reps=SPA_REPS, mean_block=SPA_MEAN_BLOCK).p_consistent
    except ConfigError as exc:
        spa_p = math.nan
        notes.append(f"SPA: {exc}")
    try:
        res = stats.pbo_cscv(mat, s=PBO_BLOCKS)
        pbo, p_loss = res.pbo, res.p_oos_loss
    except ConfigError as exc:
        pbo = p_loss = math.nan
        notes.append(f"CSCV: {exc}")
    return StudyEvidence(selected, max(n_ledger, n, 1), n, max(n_eff, 1.0), sr_var, sr_var_obs,
                         sharpe, dsr, spa_p, pbo, p_loss, days, "; ".join(notes))
