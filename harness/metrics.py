"""Metrics and the ensemble score (DESIGN section 6).

Equity is marked at every bar close; ratios use daily (UTC) returns annualized with 365 days
(crypto trades every day); max drawdown is peak-to-trough on the bar equity (initial equity
included as the first peak).

    annualized = (final / initial) ** (365 / days) - 1      days = bars * bar_seconds / 86400
    dampener   = 1 / (1 + max(0, max_dd - 0.15)) ** 2
    div_bonus  = 1 + 0.1 * (1 - HHI)        HHI of time-averaged gross exposure by coin
    score      = annualized * dampener * div_bonus, or -inf when a hard rejection applies

Conventions for the degenerate cases: Sharpe is 0 with fewer than two days or no variance;
Sortino and Calmar are +inf when there is no downside / no drawdown and the return is positive
(0 when it is not); win_rate and mean_r are NaN without trades; a final equity <= 0 annualizes
to -1. Fees and funding are costs paid (funding received is negative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DAYS_PER_YEAR = 365
DD_FREE = 0.15  # drawdown the dampener forgives
DIV_WEIGHT = 0.1
MIN_TRADES = 30
MAX_LOSS_ANNUALIZED = -0.50


@dataclass(frozen=True)
class Metrics:
    total_return: float
    annualized: float
    max_dd: float
    sharpe: float
    sortino: float
    calmar: float
    n_trades: int
    win_rate: float
    mean_r: float
    hhi: float
    exposure: float  # time-averaged gross notional / equity
    days: float
    final_equity: float
    fees: float
    funding: float
    slippage: float = 0.0  # paid, in account currency
    liquidations: int = 0  # market and backstop liquidations
    detail_bars: int = 0  # position-bars decided by the intrabar detail walk
    detail_missing: int = 0  # bars that needed the walk but lacked detail bars (adverse first)
    slip_fallbacks: int = 0  # v5 fills at the flat rate: the coin's cost estimate was unknown


def dampener(max_dd: float) -> float:
    return 1.0 / (1.0 + max(0.0, max_dd - DD_FREE)) ** 2


def div_bonus(hhi: float) -> float:
    return 1.0 + DIV_WEIGHT * (1.0 - hhi)


def raw_score(m: Metrics) -> float:
    """annualized * dampener * div_bonus, without the hard rejections (per-fold scores)."""
    return m.annualized * dampener(m.max_dd) * div_bonus(m.hhi)


def score(base: Metrics, stress: Metrics, min_trades: int = MIN_TRADES) -> tuple[float, str | None]:
    """(score, None), or (-inf, reason) when a hard rejection applies."""
    if base.annualized < MAX_LOSS_ANNUALIZED:
        return -math.inf, "annualized < -50%"
    if stress.calmar < 0:
        return -math.inf, "stress calmar < 0"
    if base.n_trades < min_trades:
        return -math.inf, f"trades < {min_trades}"
    return raw_score(base), None


# ---- vectorized helpers (a leading axis of parameter sets is fine everywhere) ----------------

def annualized(growth: np.ndarray | float, days: np.ndarray | float) -> np.ndarray:
    """(final / initial) ** (365 / days) - 1; -1 where growth <= 0, 0 where days <= 0."""
    g = np.asarray(growth, dtype=np.float64)
    d = np.broadcast_to(np.asarray(days, dtype=np.float64), g.shape)
    out = np.zeros(g.shape)
    ok = (g > 0) & (d > 0)
    out[ok] = g[ok] ** (DAYS_PER_YEAR / d[ok]) - 1.0
    out[(g <= 0) & (d > 0)] = -1.0
    return out


def sharpe(daily: np.ndarray) -> np.ndarray:
    """Annualized Sharpe of daily returns along the last axis (ddof=1)."""
    r = np.atleast_2d(np.asarray(daily, dtype=np.float64))
    n = r.shape[-1]
    if n < 2:
        return np.zeros(r.shape[:-1])
    mean = r.mean(axis=-1)
    std = r.std(axis=-1, ddof=1)
    out = np.zeros(r.shape[:-1])
    ok = std > 1e-15 * np.maximum(1.0, np.abs(mean))
    out[ok] = mean[ok] / std[ok] * math.sqrt(DAYS_PER_YEAR)
    return out


def sortino(daily: np.ndarray) -> np.ndarray:
    """Annualized Sortino: mean / sqrt(mean(min(r, 0)^2)) along the last axis."""
    r = np.atleast_2d(np.asarray(daily, dtype=np.float64))
    if r.shape[-1] == 0:
        return np.zeros(r.shape[:-1])
    mean = r.mean(axis=-1)
    down = np.sqrt(np.mean(np.minimum(r, 0.0) ** 2, axis=-1))
    out = np.where(mean > 0, np.inf, 0.0)
    ok = down > 0
    out[ok] = mean[ok] / down[ok] * math.sqrt(DAYS_PER_YEAR)
    return out


def calmar(ann: np.ndarray, max_dd: np.ndarray) -> np.ndarray:
    ann = np.asarray(ann, dtype=np.float64)
    dd = np.asarray(max_dd, dtype=np.float64)
    out = np.where(ann > 0, np.inf, np.where(ann < 0, -np.inf, 0.0))
    ok = dd > 0
    out[ok] = ann[ok] / dd[ok]
    return out


def hhi(exposure_by_coin: np.ndarray) -> np.ndarray:
    """Herfindahl index of exposure shares along the last axis; 1 where there is no exposure."""
    e = np.atleast_2d(np.asarray(exposure_by_coin, dtype=np.float64))
    total = e.sum(axis=-1)
    out = np.ones(e.shape[:-1])
    ok = total > 0
    shares = e[ok] / total[ok, None]
    out[ok] = (shares**2).sum(axis=-1)
    return out
