"""The reality check over a whole search: Hansen's test for Superior Predictive Ability (SPA).

H0: no trial beats the benchmark, max_k E[d_k] <= 0, where d_{t,k} is trial k's period-t return
minus the benchmark's (here the benchmark is 0: "no trial beats zero"). Rejecting H0 says the
best trial's edge survives the search that found it, counting every trial.

Hansen (2005), "A Test for Superior Predictive Ability", J. of Business & Economic Statistics
23(4): the studentized statistic T = max(0, max_k sqrt(n) dbar_k / omega_k), its null
distribution from the stationary bootstrap of Politis & Romano (1994), "The Stationary
Bootstrap", JASA 89(428), recentred three ways:
  upper       Z* = dbar* - dbar: every trial sits at the null boundary (White's reality check
              recentring, the least favourable configuration; the most conservative p);
  consistent  Z* = dbar* - dbar * 1{sqrt(n) dbar / omega >= -sqrt(2 log log n)}: clearly bad
              trials keep their negative mean and stop inflating the max (Hansen's p);
  lower       Z* = dbar* - max(dbar, 0).
omega_k^2 is the bootstrap variance of sqrt(n) dbar_k. Trials with zero variance (never traded)
cannot beat zero and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.errors import ConfigError


def stationary_bootstrap_indices(n: int, reps: int, mean_block: float,
                                 rng: np.random.Generator) -> np.ndarray:
    """(reps, n) resampling indices: blocks start at uniform positions, have geometric lengths
    with mean `mean_block`, and wrap around the end (Politis & Romano 1994)."""
    if n < 1 or reps < 1:
        raise ConfigError(f"stationary bootstrap needs n >= 1 and reps >= 1, got {n}, {reps}")
    if not mean_block >= 1:
        raise ConfigError(f"the mean block length must be >= 1, got {mean_block}")
    q = 1.0 / mean_block
    start = rng.integers(0, n, size=(reps, n))
    new_block = rng.random((reps, n)) < q
    new_block[:, 0] = True
    # within a block the index advances by one: idx_t = start of the block + steps since it began
    pos = np.arange(n)[None, :]
    last_start = np.maximum.accumulate(np.where(new_block, pos, 0), axis=1)
    first = np.take_along_axis(start, last_start, axis=1)
    return (first + pos - last_start) % n


@dataclass(frozen=True)
class SPAResult:
    statistic: float  # T_SPA: max studentized mean, floored at 0
    p_consistent: float  # Hansen's p (the one to gate on)
    p_lower: float
    p_upper: float  # White's reality check recentring (most conservative)
    n_trials: int  # trials tested (columns with positive variance)
    best: int  # column index of the largest studentized mean, in the input matrix; -1: none
    reps: int
    mean_block: float


def spa(returns_matrix: np.ndarray, reps: int = 1000, mean_block: float = 5.0,
        seed: int = 0) -> SPAResult:
    """Hansen's SPA test of "no column of the (T x N) matrix has a positive mean".

    NaN cells count as 0 (a day without a position). Seeded: the same input gives the same p.
    """
    d = np.asarray(returns_matrix, dtype=np.float64)
    if d.ndim != 2:
        raise ConfigError(f"returns_matrix must be 2-D (T x N trials), got shape {d.shape}")
    n = d.shape[0]
    if n < 3:
        raise ConfigError(f"the reality check needs at least 3 periods, got {n}")
    d = np.where(np.isfinite(d), d, 0.0)
    live = np.flatnonzero(d.std(axis=0) > 0)
    if live.size == 0:
        return SPAResult(0.0, 1.0, 1.0, 1.0, 0, -1, reps, mean_block)
    d = d[:, live]
    rng = np.random.default_rng(seed)
    idx = stationary_bootstrap_indices(n, reps, mean_block, rng)
    flat = (np.arange(reps)[:, None] * n + idx).ravel()
    counts = np.bincount(flat, minlength=reps * n).reshape(reps, n).astype(np.float64)
    dbar = d.mean(axis=0)
    boot = counts @ d / n  # (reps, K) bootstrap means
    omega = np.sqrt(n * np.mean((boot - dbar) ** 2, axis=0))
    omega = np.where(omega > 0, omega, np.inf)
    z = np.sqrt(n) * dbar / omega
    stat = max(0.0, float(z.max()))
    keep = z >= -np.sqrt(2.0 * np.log(np.log(n))) if n > np.e else np.ones_like(z, dtype=bool)
    p = {}
    for name, centre in (("consistent", np.where(keep, dbar, 0.0)), ("lower", np.maximum(dbar, 0.0)),
                         ("upper", dbar)):
        t_boot = np.maximum(0.0, (np.sqrt(n) * (boot - centre) / omega).max(axis=1))
        p[name] = float(np.mean(t_boot >= stat)) if stat > 0 else 1.0
    return SPAResult(stat, p["consistent"], p["lower"], p["upper"], int(live.size),
                     int(live[int(np.argmax(z))]), reps, mean_block)
