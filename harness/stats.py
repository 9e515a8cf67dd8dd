"""Overfitting statistics (DESIGN section 7): PSR, DSR, effective N, MinTRL, PBO, t-stat, and
the multiple-testing corrections (Holm, Benjamini-Hochberg). The reality check is harness.spa.

Sharpe ratios here are PER PERIOD (not annualized) and kurtosis is RAW (3 for a normal), as in
the papers. Convert an annual Sharpe with `sr / sqrt(periods_per_year)` and an annual variance of
trial Sharpes with `var / periods_per_year`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy import stats as sps
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from harness.errors import ConfigError

EULER_GAMMA = 0.5772156649015329


def _moments(returns: np.ndarray) -> tuple[float, int, float, float]:
    """Per-period Sharpe, T, skewness and raw kurtosis of a return series."""
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size < 3:
        raise ConfigError(f"need at least 3 finite returns for Sharpe statistics, got {r.size}")
    sd = r.std(ddof=1)
    if not sd > 0:
        raise ConfigError("returns have zero variance: the Sharpe ratio is undefined")
    return float(r.mean() / sd), int(r.size), float(sps.skew(r)), float(sps.kurtosis(r, fisher=False))


def _sr_std(sr: float, skew: float, kurt: float) -> float:
    """sqrt(1 - skew*SR + (kurt-1)/4 * SR^2): the non-normal Sharpe estimator's dispersion."""
    v = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr
    if not v > 0:
        raise ConfigError(
            f"1 - skew*SR + (kurt-1)/4*SR^2 = {v:.4g} <= 0 (SR {sr:.4g}, skew {skew:.4g}, "
            f"kurt {kurt:.4g}): is kurt raw (3 for a normal) and SR per period?"
        )
    return float(np.sqrt(v))


def psr(sr: float, sr_benchmark: float, t: int, skew: float = 0.0, kurt: float = 3.0) -> float:
    """Probabilistic Sharpe Ratio: P(true SR > sr_benchmark) given the observed per-period SR.

    Bailey & Lopez de Prado (2012), "The Sharpe Ratio Efficient Frontier", J. of Risk 15(2):
    PSR = Phi((SR - SR*) sqrt(T - 1) / sqrt(1 - g3 SR + (g4 - 1)/4 SR^2)), g4 raw kurtosis.
    """
    if t < 2:
        raise ConfigError(f"PSR needs T >= 2 observations, got {t}")
    z = (sr - sr_benchmark) * np.sqrt(t - 1.0) / _sr_std(sr, skew, kurt)
    return float(sps.norm.cdf(z))


def expected_max_sr(n: float, var: float) -> float:
    """SR0: the expected maximum of `n` trial Sharpes with cross-trial variance `var` under H0.

    Bailey & Lopez de Prado (2014), "The Deflated Sharpe Ratio", J. of Portfolio Management 40(5),
    from the False Strategy Theorem: SR0 = sqrt(V) ((1 - gamma) Z(1 - 1/N) + gamma Z(1 - 1/(N e))),
    gamma the Euler-Mascheroni constant, Z the standard normal quantile.
    """
    if n < 1:
        raise ConfigError(f"the number of trials must be >= 1, got {n}")
    if var < 0:
        raise ConfigError(f"the variance of trial Sharpe ratios must be >= 0, got {var}")
    if n == 1:
        return 0.0
    z = sps.norm.ppf
    return float(np.sqrt(var) * ((1 - EULER_GAMMA) * z(1 - 1 / n) + EULER_GAMMA * z(1 - 1 / (n * np.e))))


def dsr(returns_or_sr: np.ndarray | float, n_trials: float, trial_sr_var: float,
        t: int | None = None, skew: float | None = None, kurt: float | None = None) -> float:
    """Deflated Sharpe Ratio: PSR against SR0 = expected_max_sr(n_trials, trial_sr_var).

    Bailey & Lopez de Prado (2014). Pass either the per-period return series (SR, T, skew and
    kurtosis are then estimated from it) or a per-period SR with t, skew and raw kurt. Use the
    effective number of trials (`effective_n`) for n_trials when trials are correlated.
    """
    if np.ndim(returns_or_sr) == 0:
        if t is None:
            raise ConfigError("dsr with a scalar Sharpe ratio needs t (the number of returns)")
        sr = float(returns_or_sr)
        skew = 0.0 if skew is None else skew
        kurt = 3.0 if kurt is None else kurt
    else:
        sr, t_est, skew_est, kurt_est = _moments(np.asarray(returns_or_sr))
        t = t_est if t is None else t
        skew = skew_est if skew is None else skew
        kurt = kurt_est if kurt is None else kurt
    return psr(sr, expected_max_sr(n_trials, trial_sr_var), t, skew, kurt)


def trial_sharpes(returns_matrix: np.ndarray) -> np.ndarray:
    """Per-period Sharpe of every column (trial) of a (T x N) matrix; NaN rows ignored."""
    r = np.asarray(returns_matrix, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nanmean(r, axis=0) / np.nanstd(r, axis=0, ddof=1)


def trial_clusters(returns_matrix: np.ndarray, threshold: float = 0.95) -> np.ndarray:
    """Cluster label (1..k) of every trial: clusters of trials whose OOS returns correlate >= threshold.

    Complete-linkage hierarchical clustering on the distance 1 - corr, cut at 1 - threshold, so
    every pair inside a cluster correlates at least `threshold` (Lopez de Prado (2018),
    "Advances in Financial Machine Learning", ch. 8/14 on counting trials for the DSR). Constant
    trials (undefined correlation) each count as their own cluster.
    """
    r = np.asarray(returns_matrix, dtype=np.float64)
    if r.ndim != 2:
        raise ConfigError(f"returns_matrix must be 2-D (T x N trials), got shape {r.shape}")
    n = r.shape[1]
    if n <= 1:
        return np.ones(n, dtype=np.int64)
    r = np.where(np.isfinite(r), r, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(r, rowvar=False)
    corr = np.where(np.isfinite(corr), corr, 0.0)
    np.fill_diagonal(corr, 1.0)
    dist = np.clip(1.0 - corr, 0.0, 2.0)
    dist = (dist + dist.T) / 2.0
    np.fill_diagonal(dist, 0.0)
    z = linkage(squareform(dist, checks=False), method="complete")
    return fcluster(z, t=1.0 - threshold, criterion="distance").astype(np.int64)


def effective_n(returns_matrix: np.ndarray, threshold: float = 0.95) -> int:
    """Number of distinct trials: the clusters of `trial_clusters`."""
    labels = trial_clusters(returns_matrix, threshold)
    return int(labels.max()) if labels.size else 0


def min_track_record_length(sr: float, sr_benchmark: float, skew: float = 0.0,
                            kurt: float = 3.0, p: float = 0.95) -> float:
    """Minimum number of periods for the observed SR to beat sr_benchmark with confidence p.

    Bailey & Lopez de Prado (2012): MinTRL = 1 + (1 - g3 SR + (g4 - 1)/4 SR^2) (Z_p / (SR - SR*))^2,
    per-period SR, raw kurtosis. Infinite when SR <= SR*.
    """
    if not 0 < p < 1:
        raise ConfigError(f"confidence p must be in (0, 1), got {p}")
    if sr <= sr_benchmark:
        return float("inf")
    return float(1.0 + _sr_std(sr, skew, kurt) ** 2 * (sps.norm.ppf(p) / (sr - sr_benchmark)) ** 2)


def t_stat(r: np.ndarray) -> float:
    """t-statistic of the mean per-trade R: mean / (std / sqrt(n)), ddof=1.

    Harvey, Liu & Zhu (2016), "... and the Cross-Section of Expected Returns": hurdle t >= 3.
    NaN with fewer than 2 trades or zero dispersion.
    """
    x = np.asarray(r, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return float("nan")
    sd = x.std(ddof=1)
    if not sd > 0:
        return float("nan")
    return float(x.mean() / (sd / np.sqrt(x.size)))


@dataclass(frozen=True)
class PBOResult:
    pbo: float  # share of splits whose in-sample best trial ranks below the OOS median
    logits: np.ndarray  # one logit of the OOS relative rank per split
    n_splits: int
    best_oos: np.ndarray  # the in-sample best trial's OOS performance, one per split

    @property
    def p_oos_loss(self) -> float:
        """Share of splits where the in-sample best trial loses out of sample (performance < 0):
        the question PBO does not ask (it compares with the median trial, not with zero)."""
        return float(np.mean(self.best_oos < 0))


def _sharpe_from_sums(s1: np.ndarray, s2: np.ndarray, n: np.ndarray) -> np.ndarray:
    mean = s1 / n
    var = (s2 - n * mean * mean) / np.maximum(n - 1, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = mean / np.sqrt(np.maximum(var, 0.0))
    return np.where(np.isfinite(out), out, np.where(mean > 0, np.inf, np.where(mean < 0, -np.inf, 0.0)))


def pbo_cscv(returns_matrix: np.ndarray, s: int = 16,
             metric: str | Callable[[np.ndarray], np.ndarray] = "sharpe") -> PBOResult:
    """Probability of Backtest Overfitting by Combinatorially Symmetric Cross-Validation.

    Bailey, Borwein, Lopez de Prado & Zhu (2017), "The Probability of Backtest Overfitting",
    J. of Computational Finance 20(4). Rows of the (T x N trials) matrix are cut into `s` blocks;
    each of the C(s, s/2) splits picks the in-sample best trial and takes the logit of its
    relative OOS rank w = rank / (N + 1); PBO = share of logits <= 0. `metric` is "sharpe"
    (vectorized over all splits from block sums), "mean", or a function mapping a (rows x N)
    matrix to N scores.
    """
    r = np.asarray(returns_matrix, dtype=np.float64)
    if r.ndim != 2 or r.shape[1] < 2:
        raise ConfigError(f"returns_matrix must be T x N with N >= 2 trials, got shape {r.shape}")
    if s < 2 or s % 2:
        raise ConfigError(f"s (number of blocks) must be an even number >= 2, got {s}")
    t_rows, n = r.shape
    if t_rows < 2 * s:
        raise ConfigError(f"PBO with s={s} blocks needs at least {2 * s} rows of returns, got {t_rows}")
    r = np.where(np.isfinite(r), r, 0.0)
    bounds = np.linspace(0, t_rows, s + 1).astype(int)
    splits = np.array(list(combinations(range(s), s // 2)), dtype=np.int64)
    mask = np.zeros((len(splits), s), dtype=bool)
    mask[np.arange(len(splits))[:, None], splits] = True

    if callable(metric):
        blocks = [r[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        is_perf = np.empty((len(splits), n))
        oos_perf = np.empty((len(splits), n))
        for i, m in enumerate(mask):
            is_perf[i] = metric(np.concatenate([blocks[j] for j in np.flatnonzero(m)]))
            oos_perf[i] = metric(np.concatenate([blocks[j] for j in np.flatnonzero(~m)]))
    elif metric in ("sharpe", "mean"):
        s1 = np.add.reduceat(r, bounds[:-1], axis=0)  # (s, N)
        s2 = np.add.reduceat(r * r, bounds[:-1], axis=0)
        cnt = np.diff(bounds).astype(np.float64)
        m = mask.astype(np.float64)
        perf = []
        for w in (m, 1.0 - m):
            n_rows = (w @ cnt)[:, None]
            if metric == "mean":
                perf.append((w @ s1) / n_rows)
            else:
                perf.append(_sharpe_from_sums(w @ s1, w @ s2, n_rows))
        is_perf, oos_perf = perf
    else:
        raise ConfigError(f"metric must be 'sharpe', 'mean' or a callable, got {metric!r}")

    best = np.argmax(is_perf, axis=1)
    best_oos = oos_perf[np.arange(len(splits)), best][:, None]
    # rank 1 = worst; ties share the average rank
    rank = (oos_perf < best_oos).sum(axis=1) + ((oos_perf == best_oos).sum(axis=1) + 1) / 2.0
    w = rank / (n + 1.0)
    logits = np.log(w / (1.0 - w))
    return PBOResult(pbo=float(np.mean(logits <= 0)), logits=logits, n_splits=len(splits),
                     best_oos=best_oos[:, 0])


def holm(p: np.ndarray) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values: reject H_i at family-wise level a when adj_i <= a.

    Sorted ascending, adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)). NaN p-values are not
    hypotheses: they stay NaN and do not count in m.
    """
    return _adjust(p, lambda q, m: np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * q)))


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini & Hochberg (1995) step-up adjusted p-values (q-values): reject H_i at false
    discovery rate a when adj_i <= a. Sorted ascending, adj_(i) = min_{j >= i} min(1, m p_(j) / j).
    NaN p-values stay NaN and do not count in m.
    """
    def step_up(q: np.ndarray, m: int) -> np.ndarray:
        return np.minimum.accumulate(np.minimum(1.0, m * q / np.arange(1, m + 1))[::-1])[::-1]

    return _adjust(p, step_up)


def _adjust(p: np.ndarray, fn: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size:
        order = ok[np.argsort(p[ok], kind="mergesort")]
        out[order] = fn(p[order], ok.size)
    return out
