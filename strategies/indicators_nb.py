"""Numba kernels behind strategies/indicators.py.

Layout: every coin's series is processed as one contiguous row. Two drivers per indicator, so
no input is ever copied whole and the output has the input's layout (numpy ops that mix market
arrays and indicators then stay on one layout): `*_rows` takes the transposed view of a
Fortran-ordered (n_bars, n_coins) array, (n_coins, n_bars) C-contiguous; `*_cols` takes any
other (n_bars, n_coins) array (C-ordered or strided) and moves BLOCK coins at a time through
small contiguous buffers (one cache line of each row per block).

NaN policy (one rule for every indicator): a bar whose inputs are not all finite (the coin is not
listed yet, was delisted, or sits in a data gap) is SKIPPED. Each coin is computed on its valid
bars only, as if the gaps did not exist, and the result is scattered back; skipped bars get NaN.
So a gap never poisons later values, and no indicator restarts its warm-up after a short gap.
Windows therefore count valid bars ("the last 20 listed bars"), not wall-clock bars.
Every kernel is causal: the value at bar t uses valid inputs at bars <= t only.

The 1-d kernels work on gap-free data and write every element of their `out` argument(s).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# ---------------------------------------------------------------- 1-d kernels on gap-free data


@njit(cache=True)
def ema_1d(x, span, out):
    """pandas `ewm(span, adjust=False, min_periods=span)`: seeded with the first value."""
    alpha = 2.0 / (span + 1.0)
    prev = 0.0
    for i in range(x.shape[0]):
        prev = x[i] if i == 0 else prev + alpha * (x[i] - prev)
        out[i] = prev if i >= span - 1 else np.nan


@njit(cache=True)
def wilder_1d(x, n, out):
    """Wilder smoothing (alpha = 1/n) seeded with the mean of the first n values."""
    m = x.shape[0]
    s = 0.0
    prev = 0.0
    inv = 1.0 / n  # multiply, not divide: the recursion is a latency-bound chain
    for i in range(m):
        if i < n:
            s += x[i]
            if i < n - 1:
                out[i] = np.nan
                continue
            prev = s / n
        else:
            prev = prev + (x[i] - prev) * inv
        out[i] = prev


@njit(cache=True)
def rolling_moments_1d(x, n, mean, std, want_std):
    """Rolling mean and population std (ddof=0) over n values.

    Running sums are taken around a shift K and recomputed exactly every n steps, so rounding
    error never accumulates along the series.
    """
    k = 0.0
    s1 = 0.0
    s2 = 0.0
    phase = 0  # i % n without a division per bar
    for i in range(x.shape[0]):
        if phase == 0:
            k = x[i]
            s1 = 0.0
            s2 = 0.0
            for j in range(max(0, i - n + 1), i + 1):
                d = x[j] - k
                s1 += d
                s2 += d * d
        else:
            d = x[i] - k
            s1 += d
            s2 += d * d
            if i >= n:
                d = x[i - n] - k
                s1 -= d
                s2 -= d * d
        phase += 1
        if phase == n:
            phase = 0
        if i < n - 1:
            mean[i] = np.nan
            if want_std:
                std[i] = np.nan
            continue
        mu = s1 / n
        mean[i] = k + mu
        if want_std:
            var = s2 / n - mu * mu
            std[i] = np.sqrt(var) if var > 0.0 else 0.0


@njit(cache=True)
def rolling_extreme_1d(x, n, is_max, out, suffix):
    """Rolling max (or min) over n values, van Herk / Gil-Werman: blocks of n, a running
    extreme forward within each block and a suffix extreme backward (`suffix`: scratch), so
    the window [i-n+1, i] is max(suffix[i-n+1], prefix[i]) in O(1) per bar, branch-free."""
    m = x.shape[0]
    sign = 1.0 if is_max else -1.0
    for b in range(0, m, n):
        e = min(b + n, m)
        acc = sign * x[e - 1]
        suffix[e - 1] = acc
        for i in range(e - 2, b - 1, -1):
            acc = max(acc, sign * x[i])
            suffix[i] = acc
    prefix = 0.0
    phase = 0
    for i in range(m):
        v = sign * x[i]
        prefix = v if phase == 0 else max(prefix, v)
        phase += 1
        if phase == n:
            phase = 0
        out[i] = sign * max(suffix[i - n + 1], prefix) if i >= n - 1 else np.nan


@njit(cache=True)
def rsi_1d(c, n, out):
    """Wilder RSI: average gain / loss seeded with the mean of the first n changes."""
    m = c.shape[0]
    ag = 0.0
    al = 0.0
    inv = 1.0 / n
    if m > 0:
        out[0] = np.nan
    for i in range(1, m):
        d = c[i] - c[i - 1]
        g = d if d > 0.0 else 0.0
        lo = -d if d < 0.0 else 0.0
        if i <= n:
            ag += g
            al += lo
            if i < n:
                out[i] = np.nan
                continue
            ag /= n
            al /= n
        else:
            ag = ag + (g - ag) * inv
            al = al + (lo - al) * inv
        if al == 0.0:
            out[i] = 50.0 if ag == 0.0 else 100.0
        else:
            out[i] = 100.0 - 100.0 / (1.0 + ag / al)


@njit(cache=True)
def trend_efficiency_1d(c, n, out):
    """|c[i] - c[i-n]| / sum of |one-bar changes| over those n bars; 0 on a flat path."""
    m = c.shape[0]
    path = 0.0
    phase = 1 % n  # i % n without a division per bar
    if m > 0:
        out[0] = np.nan
    for i in range(1, m):
        if phase == 0:
            path = 0.0
            for j in range(max(1, i - n + 1), i + 1):
                path += abs(c[j] - c[j - 1])
        else:
            path += abs(c[i] - c[i - 1])
            if i > n:
                path -= abs(c[i - n] - c[i - n - 1])
        phase += 1
        if phase == n:
            phase = 0
        if i >= n:
            out[i] = abs(c[i] - c[i - n]) / path if path > 0.0 else 0.0
        else:
            out[i] = np.nan


@njit(cache=True)
def lag_1d(x, k, out):
    for i in range(x.shape[0]):
        out[i] = x[i - k] if i >= k else np.nan


@njit(cache=True, inline="always")
def _tr(h, lo, c, i):
    """True range of bar i: high - low on the first bar, then max(h - l, |h - prev c|, |l - prev c|)."""
    if i == 0:
        return h[0] - lo[0]
    return max(h[i] - lo[i], abs(h[i] - c[i - 1]), abs(lo[i] - c[i - 1]))


@njit(cache=True)
def true_range_1d(h, lo, c, out):
    for i in range(h.shape[0]):
        out[i] = _tr(h, lo, c, i)


@njit(cache=True)
def atr_1d(h, lo, c, n, out):
    """Wilder ATR: the mean true range of the first n bars, then alpha = 1/n."""
    m = h.shape[0]
    s = 0.0
    prev = 0.0
    inv = 1.0 / n
    for i in range(m):
        r = _tr(h, lo, c, i)
        if i < n:
            s += r
            if i < n - 1:
                out[i] = np.nan
                continue
            prev = s / n
        else:
            prev = prev + (r - prev) * inv
        out[i] = prev


@njit(cache=True)
def adx_1d(h, lo, c, n, out):
    """Wilder ADX: +DM/-DM and TR smoothed from bar 1, DX from bar n, ADX from bar 2n-1."""
    m = h.shape[0]
    sp = 0.0
    sm = 0.0
    st = 0.0
    adx = 0.0
    inv = 1.0 / n
    if m > 0:
        out[0] = np.nan
    for i in range(1, m):
        out[i] = np.nan
        up = h[i] - h[i - 1]
        dn = lo[i - 1] - lo[i]
        pdm = up if (up > dn and up > 0.0) else 0.0
        mdm = dn if (dn > up and dn > 0.0) else 0.0
        tr = _tr(h, lo, c, i)
        if i <= n:
            sp += pdm
            sm += mdm
            st += tr
            if i < n:
                continue
            sp /= n
            sm /= n
            st /= n
        else:
            sp = sp + (pdm - sp) * inv
            sm = sm + (mdm - sm) * inv
            st = st + (tr - st) * inv
        dx = 0.0
        tot = sp + sm  # +DI / -DI share the TR denominator, which cancels in DX
        if st > 0.0 and tot > 0.0:
            dx = 100.0 * abs(sp - sm) / tot
        if i < 2 * n - 1:
            adx += dx
        elif i == 2 * n - 1:
            adx = (adx + dx) / n
            out[i] = adx
        else:
            adx = adx + (dx - adx) * inv
            out[i] = adx


# ---------------------------------------------------------------- 2-d drivers

EMA, SMA, STD, ROLL_MAX, ROLL_MIN, RSI, EFF, LAG, WILDER = range(9)
ATR, ADX, TR = range(3)
BLOCK = 8  # coins per block in the *_cols drivers: 8 float64 = one 64-byte cache line


@njit(cache=True)
def _one(kind, x, n, out, aux, dq):
    if kind == EMA:
        ema_1d(x, n, out)
    elif kind == SMA:
        rolling_moments_1d(x, n, out, aux, False)
    elif kind == STD:
        rolling_moments_1d(x, n, aux, out, True)
    elif kind == ROLL_MAX:
        rolling_extreme_1d(x, n, True, out, dq)
    elif kind == ROLL_MIN:
        rolling_extreme_1d(x, n, False, out, dq)
    elif kind == RSI:
        rsi_1d(x, n, out)
    elif kind == EFF:
        trend_efficiency_1d(x, n, out)
    elif kind == LAG:
        lag_1d(x, n, out)
    else:
        wilder_1d(x, n, out)


@njit(cache=True)
def _row1(kind, row, n, o, buf, res, aux, dq, idx):
    """One coin: `kind` over the finite values of `row`, NaN elsewhere, into `o`."""
    nb = row.shape[0]
    first = -1
    m = 0
    for t in range(nb):
        if np.isfinite(row[t]):
            if first < 0:
                first = t
            m += 1
    if m == 0:
        o[:] = np.nan
        return
    if m == nb - first:  # gap-free after listing: no gather
        o[:first] = np.nan
        _one(kind, row[first:], n, o[first:], aux, dq)
        return
    o[:] = np.nan
    j = 0
    for t in range(first, nb):
        if np.isfinite(row[t]):
            idx[j] = t
            buf[j] = row[t]
            j += 1
    _one(kind, buf[:m], n, res[:m], aux, dq)
    for j in range(m):
        o[idx[j]] = res[j]


@njit(cache=True)
def apply1_rows(xt, kind, n):
    """One-input indicator `kind` with window n over xt (n_coins, n_bars); same shape out."""
    nc, nb = xt.shape
    out = np.empty((nc, nb))
    buf, res, aux, dq = np.empty(nb), np.empty(nb), np.empty(nb), np.empty(nb)
    idx = np.empty(nb, dtype=np.int64)
    for c in range(nc):
        _row1(kind, xt[c], n, out[c], buf, res, aux, dq, idx)
    return out


@njit(cache=True)
def apply1_cols(x, kind, n):
    """One-input indicator `kind` with window n over x (n_bars, n_coins), any layout; C out."""
    nb, nc = x.shape
    out = np.empty((nb, nc))
    blk = np.empty((BLOCK, nb))
    rblk = np.empty((BLOCK, nb))
    buf, res, aux, dq = np.empty(nb), np.empty(nb), np.empty(nb), np.empty(nb)
    idx = np.empty(nb, dtype=np.int64)
    for c0 in range(0, nc, BLOCK):
        w = min(BLOCK, nc - c0)
        for t in range(nb):
            for j in range(w):
                blk[j, t] = x[t, c0 + j]
        for j in range(w):
            _row1(kind, blk[j], n, rblk[j], buf, res, aux, dq, idx)
        for t in range(nb):
            for j in range(w):
                out[t, c0 + j] = rblk[j, t]
    return out


@njit(cache=True)
def _three(kind, h, lo, c, n, out):
    if kind == ATR:
        atr_1d(h, lo, c, n, out)
    elif kind == ADX:
        adx_1d(h, lo, c, n, out)
    else:
        true_range_1d(h, lo, c, out)


@njit(cache=True)
def _row3(kind, h, lo, c, n, o, a, b, d, res, idx):
    """One coin: `kind` on the bars where high, low and close are all finite."""
    nb = h.shape[0]
    first = -1
    m = 0
    for t in range(nb):
        if np.isfinite(h[t]) and np.isfinite(lo[t]) and np.isfinite(c[t]):
            if first < 0:
                first = t
            m += 1
    if m == 0:
        o[:] = np.nan
        return
    if m == nb - first:
        o[:first] = np.nan
        _three(kind, h[first:], lo[first:], c[first:], n, o[first:])
        return
    o[:] = np.nan
    j = 0
    for t in range(first, nb):
        if np.isfinite(h[t]) and np.isfinite(lo[t]) and np.isfinite(c[t]):
            idx[j] = t
            a[j] = h[t]
            b[j] = lo[t]
            d[j] = c[t]
            j += 1
    _three(kind, a[:m], b[:m], d[:m], n, res[:m])
    for j in range(m):
        o[idx[j]] = res[j]


@njit(cache=True)
def apply3_rows(ht, lt, ct, kind, n):
    """High/low/close indicator `kind` (ATR, ADX or TR) over (n_coins, n_bars) arrays."""
    nc, nb = ht.shape
    out = np.empty((nc, nb))
    a, b, d, res = np.empty(nb), np.empty(nb), np.empty(nb), np.empty(nb)
    idx = np.empty(nb, dtype=np.int64)
    for c in range(nc):
        _row3(kind, ht[c], lt[c], ct[c], n, out[c], a, b, d, res, idx)
    return out


@njit(cache=True)
def apply3_cols(h, lo, cl, kind, n):
    """High/low/close indicator `kind` over (n_bars, n_coins) arrays of any layout; C out."""
    nb, nc = h.shape
    out = np.empty((nb, nc))
    bh, bl, bc, rblk = np.empty((BLOCK, nb)), np.empty((BLOCK, nb)), np.empty((BLOCK, nb)), np.empty((BLOCK, nb))
    a, b, d, res = np.empty(nb), np.empty(nb), np.empty(nb), np.empty(nb)
    idx = np.empty(nb, dtype=np.int64)
    for c0 in range(0, nc, BLOCK):
        w = min(BLOCK, nc - c0)
        for t in range(nb):
            for j in range(w):
                bh[j, t] = h[t, c0 + j]
                bl[j, t] = lo[t, c0 + j]
                bc[j, t] = cl[t, c0 + j]
        for j in range(w):
            _row3(kind, bh[j], bl[j], bc[j], n, rblk[j], a, b, d, res, idx)
        for t in range(nb):
            for j in range(w):
                out[t, c0 + j] = rblk[j, t]
    return out


@njit(cache=True)
def _row_moments(row, n, k, z, o0, o1, o2, o3, buf, mean, std, idx):
    """One coin. z False: Bollinger (mid, upper, lower, width = (upper - lower) / mid) with
    population std. z True: o0 = (x - mean) / std, 0 where the window is flat."""
    o0[:] = np.nan
    if not z:
        o1[:] = np.nan
        o2[:] = np.nan
        o3[:] = np.nan
    m = 0
    for t in range(row.shape[0]):
        if np.isfinite(row[t]):
            idx[m] = t
            buf[m] = row[t]
            m += 1
    if m == 0:
        return
    rolling_moments_1d(buf[:m], n, mean[:m], std[:m], True)
    for j in range(n - 1, m):
        t = idx[j]
        mu = mean[j]
        s = std[j]
        if z:
            scale = max(abs(mu), abs(buf[j]))
            o0[t] = (buf[j] - mu) / s if s > 1e-12 * scale and s > 0.0 else 0.0
        else:
            o0[t] = mu
            o1[t] = mu + k * s
            o2[t] = mu - k * s
            o3[t] = 2.0 * k * s / mu


@njit(cache=True)
def moments_rows(xt, n, k, z):
    """Bollinger bands (z False) or the rolling z-score (z True, in the first array only)
    over xt (n_coins, n_bars)."""
    nc, nb = xt.shape
    w = 1 if z else nc
    o0, o1, o2, o3 = np.empty((nc, nb)), np.empty((w, nb)), np.empty((w, nb)), np.empty((w, nb))
    buf, mean, std = np.empty(nb), np.empty(nb), np.empty(nb)
    idx = np.empty(nb, dtype=np.int64)
    for c in range(nc):
        r = 0 if z else c
        _row_moments(xt[c], n, k, z, o0[c], o1[r], o2[r], o3[r], buf, mean, std, idx)
    return o0, o1, o2, o3


@njit(cache=True)
def moments_cols(x, n, k, z):
    """`moments_rows` for (n_bars, n_coins) arrays of any layout; C out."""
    nb, nc = x.shape
    w = 1 if z else nc
    o0, o1, o2, o3 = np.empty((nb, nc)), np.empty((nb, w)), np.empty((nb, w)), np.empty((nb, w))
    blk = np.empty((BLOCK, nb))
    r0, r1, r2, r3 = np.empty((BLOCK, nb)), np.empty((BLOCK, nb)), np.empty((BLOCK, nb)), np.empty((BLOCK, nb))
    buf, mean, std = np.empty(nb), np.empty(nb), np.empty(nb)
    idx = np.empty(nb, dtype=np.int64)
    for c0 in range(0, nc, BLOCK):
        bw = min(BLOCK, nc - c0)
        for t in range(nb):
            for j in range(bw):
                blk[j, t] = x[t, c0 + j]
        for j in range(bw):
            _row_moments(blk[j], n, k, z, r0[j], r1[j], r2[j], r3[j], buf, mean, std, idx)
        for t in range(nb):
            for j in range(bw):
                o0[t, c0 + j] = r0[j, t]
                if not z:
                    o1[t, c0 + j] = r1[j, t]
                    o2[t, c0 + j] = r2[j, t]
                    o3[t, c0 + j] = r3[j, t]
    return o0, o1, o2, o3
