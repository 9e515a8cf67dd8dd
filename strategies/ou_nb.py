"""Numba kernels for the OU funding strategy: AR(1) -> OU fit and the local-level Kalman z-score.

Plain (n_bars, n_coins) float64 arrays in, arrays out; NaN marks a bar to skip.

OU by AR(1): the exact discretisation of dX = theta (mu - X) dt + sigma dW over a step dt is
    X[t+1] = a + b X[t] + e,   b = exp(-theta dt),  a = mu (1 - b),
    Var(e) = sigma^2 (1 - b^2) / (2 theta),
so an OLS fit of X[t+1] on X[t] gives theta = -ln(b) / dt, mu = a / (1 - b),
sigma = sd(e) * sqrt(2 theta / (1 - b^2)) and half-life = ln 2 / theta (in the unit of dt).
No mean reversion (b <= 0 or b >= 1, or a flat series) gives NaN everywhere.
"""

from __future__ import annotations

import numpy as np
from numba import njit

LN2 = np.log(2.0)


@njit(cache=True)
def ar1_ols(x: np.ndarray) -> tuple[float, float, float, int]:
    """OLS of x[t+1] on x[t] over the pairs where both are finite: (a, b, resid sd, n pairs).

    Two-pass (centred) sums, so a flat stretch gives an exact zero variance, not rounding noise.
    The residual sd uses n - 2 degrees of freedom (two fitted coefficients).
    """
    n = 0
    sx = 0.0
    sy = 0.0
    for t in range(x.shape[0] - 1):
        if np.isfinite(x[t]) and np.isfinite(x[t + 1]):
            n += 1
            sx += x[t]
            sy += x[t + 1]
    if n < 3:
        return np.nan, np.nan, np.nan, n
    mx = sx / n
    my = sy / n
    sxx = 0.0
    sxy = 0.0
    for t in range(x.shape[0] - 1):
        if np.isfinite(x[t]) and np.isfinite(x[t + 1]):
            dx = x[t] - mx
            sxx += dx * dx
            sxy += dx * (x[t + 1] - my)
    if sxx <= 0.0:
        return np.nan, np.nan, np.nan, n
    b = sxy / sxx
    a = my - b * mx
    sse = 0.0
    for t in range(x.shape[0] - 1):
        if np.isfinite(x[t]) and np.isfinite(x[t + 1]):
            r = x[t + 1] - a - b * x[t]
            sse += r * r
    return a, b, np.sqrt(sse / (n - 2)), n


@njit(cache=True)
def ou_from_ar1(a: float, b: float, resid_sd: float, dt: float) -> tuple[float, float, float, float]:
    """(theta, mu, sigma, half_life) from AR(1) coefficients; NaN without mean reversion."""
    if not (np.isfinite(b) and 0.0 < b < 1.0 and np.isfinite(resid_sd)):
        return np.nan, np.nan, np.nan, np.nan
    theta = -np.log(b) / dt
    mu = a / (1.0 - b)
    sigma = resid_sd * np.sqrt(2.0 * theta / (1.0 - b * b))
    return theta, mu, sigma, LN2 / theta


@njit(cache=True)
def ou_fit_columns(x: np.ndarray, dt: float, min_pairs: int) -> np.ndarray:
    """One OU fit per column over all its rows: (4, n_cols) rows theta, mu, sigma, half_life."""
    out = np.full((4, x.shape[1]), np.nan)
    for j in range(x.shape[1]):
        a, b, s, n = ar1_ols(x[:, j])
        if n < min_pairs:
            continue
        theta, mu, sigma, hl = ou_from_ar1(a, b, s, dt)
        out[0, j] = theta
        out[1, j] = mu
        out[2, j] = sigma
        out[3, j] = hl
    return out


@njit(cache=True)
def rolling_ou_fit(x: np.ndarray, window: int, dt: float, min_pairs: int, where: np.ndarray) -> np.ndarray:
    """Causal rolling OU fit at the bars where `where` is True: row t uses rows
    [t - window + 1, t] only.

    Returns (4, n_bars, n_cols): theta, mu, sigma, half_life; NaN elsewhere and until
    `min_pairs` usable pairs are in the window. Each window is refitted from scratch, so a value
    does not depend on which other bars were asked for (fitting only candidate bars is exact).
    """
    n_bars, n_cols = x.shape
    out = np.full((4, n_bars, n_cols), np.nan)
    for j in range(n_cols):
        for t in range(n_bars):
            if not where[t, j] or not np.isfinite(x[t, j]):
                continue
            lo = max(0, t - window + 1)
            a, b, s, n = ar1_ols(x[lo:t + 1, j])
            if n < min_pairs:
                continue
            theta, mu, sigma, hl = ou_from_ar1(a, b, s, dt)
            out[0, t, j] = theta
            out[1, t, j] = mu
            out[2, t, j] = sigma
            out[3, t, j] = hl
    return out


@njit(cache=True)
def kalman_zscore(y: np.ndarray, q: float, r: float) -> tuple[np.ndarray, np.ndarray]:
    """Local-level Kalman filter per column; returns (z, filtered level), both (n_bars, n_cols).

    Model: level[t] = level[t-1] + w, w ~ N(0, q); y[t] = level[t] + v, v ~ N(0, r).
    z[t] is the standardised innovation
        z[t] = (y[t] - m[t-1]) / sqrt(P[t-1] + q + r),
    where m[t-1], P[t-1] are the filtered level and its variance after bar t-1 (so m[t-1] is the
    one-step prediction of the level and P[t-1] + q its predicted variance). Under the model z is
    N(0, 1) and uses nothing from bar t but y[t]. The first finite y starts the filter
    (m = y, P = r) with z = NaN; a NaN y only advances the prediction (P += q) and gets z = NaN.
    """
    n_bars, n_cols = y.shape
    z = np.full((n_bars, n_cols), np.nan)
    level = np.full((n_bars, n_cols), np.nan)
    for j in range(n_cols):
        started = False
        m = 0.0
        p = 0.0
        for t in range(n_bars):
            v = y[t, j]
            if not started:
                if np.isfinite(v):
                    started = True
                    m = v
                    p = r
                    level[t, j] = m
                continue
            p_pred = p + q
            if not np.isfinite(v):
                p = p_pred
                level[t, j] = m
                continue
            s = p_pred + r
            e = v - m
            z[t, j] = e / np.sqrt(s)
            k = p_pred / s
            m = m + k * e
            p = (1.0 - k) * p_pred
            level[t, j] = m
    return z, level
