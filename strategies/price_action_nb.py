"""Numba kernels behind strategies/price_action.py: swing pivots and structure, order-block and
breaker zones, swing-failure patterns, the Monday range.

Layout: inputs and outputs are (n_coins, n_bars) C-contiguous (the transposed view of a
Fortran-ordered market array), one coin per row. NaN policy as in indicators_nb: a bar whose
open, high, low and close are not all finite is skipped, and each coin is processed on its
valid bars as if the gaps did not exist (windows count valid bars); each driver says what the
skipped bars get. The Monday range alone works on calendar bars (it needs every Monday bar).

Every kernel is causal: its value at bar t reads bars <= t only. A swing pivot at bar i with
lookback k is known at bar i + k, once its right side has closed.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# zone kinds: rows 2 * kind (low edge) and 2 * kind + 1 (high edge) of the zone output
BULL_OB, BEAR_OB, BULL_BRK, BEAR_BRK = range(4)
N_ZONE_ROWS = 8
# signal rows of the zone kernel
OB_DIR, OB_STOP, OB_STRENGTH, BRK_DIR, BRK_STOP, BRK_STRENGTH = range(6)
N_SIG_ROWS = 6
# rows of the SFP kernel's output
SFP_DIR, SFP_STOP, SFP_CONF, SFP_CONFLUENCE = range(4)
N_SFP_ROWS = 4

DAY_NS = 86_400 * 1_000_000_000


@njit(cache=True, inline="always")
def _pivot(x, p, k, sign):
    """sign * x[p] strictly above sign * x[j] for every other j in [p - k, p + k] (sign +1: a
    swing high, -1: a swing low). The caller guarantees k <= p < len(x) - k."""
    v = sign * x[p]
    for j in range(p - k, p + k + 1):
        if j != p and sign * x[j] >= v:
            return False
    return True


@njit(cache=True, inline="always")
def _valid(o, h, lo, c, idx):
    """Positions of the bars with finite OHLC into idx; returns how many."""
    m = 0
    for t in range(o.shape[0]):
        if np.isfinite(o[t]) and np.isfinite(h[t]) and np.isfinite(lo[t]) and np.isfinite(c[t]):
            idx[m] = t
            m += 1
    return m


# ---------------------------------------------------------------- swing structure


@njit(cache=True)
def swing_bias_1d(h, lo, k, out):
    """Structure from the last two confirmed swing highs and lows: +1 when both the highs and
    the lows are rising (HH and HL), -1 when both fall (LH and LL), 0 otherwise or before two
    of each exist."""
    h_old = h_new = lo_old = lo_new = np.nan
    for p in range(h.shape[0]):
        q = p - k
        if q >= k:
            if _pivot(h, q, k, 1.0):
                h_old, h_new = h_new, h[q]
            if _pivot(lo, q, k, -1.0):
                lo_old, lo_new = lo_new, lo[q]
        if h_new > h_old and lo_new > lo_old:
            out[p] = 1
        elif h_new < h_old and lo_new < lo_old:
            out[p] = -1
        else:
            out[p] = 0


@njit(cache=True)
def swing_bias_rows(ht, lt, k):
    """`swing_bias_1d` per coin on the bars where high and low are finite; a skipped bar keeps
    the value of the last valid bar before it (0 before the first)."""
    nc, nb = ht.shape
    out = np.zeros((nc, nb), dtype=np.int8)
    idx = np.empty(nb, dtype=np.int64)
    res = np.empty(nb, dtype=np.int8)
    for c in range(nc):
        m = _valid(ht[c], ht[c], lt[c], lt[c], idx)
        swing_bias_1d(ht[c][idx[:m]], lt[c][idx[:m]], k, res[:m])
        j, last = 0, np.int8(0)
        for t in range(nb):
            if j < m and idx[j] == t:
                last = res[j]
                j += 1
            out[c, t] = last
    return out


# ---------------------------------------------------------------- order blocks and breakers


@njit(cache=True, inline="always")
def _touch(side, zlo, zhi, tested, h, lo, c):
    """0: nothing; 1: closed through (a demand zone, side +1, by a close below it; supply
    above); 2: its first retest (the wick enters the zone, the close stays on its side)."""
    if side > 0:
        if c < zlo:
            return 1
        if not tested and lo <= zhi and c > zhi:
            return 2
    else:
        if c > zhi:
            return 1
        if not tested and h >= zlo and c < zlo:
            return 2
    return 0


@njit(cache=True, inline="always")
def _signal(sig, row, p, side, stop, strength):
    """Write a retest signal; two opposite retests on one bar cancel (ambiguous)."""
    if sig[row, p] != 0.0 and sig[row, p] != side:
        sig[row, p] = 0.0
        sig[row + 1, p] = np.nan
        sig[row + 2, p] = 0.0
        return
    sig[row, p] = side
    sig[row + 1, p] = stop
    sig[row + 2, p] = strength


@njit(cache=True)
def zones_1d(o, h, lo, c, n, mult, max_age, sig, zone):
    """Order blocks and breakers on gap-free bars; the latest zone of each kind is kept.

    At each bar, in this order:
    1. a zone older than `max_age` bars (since it was made or flipped) expires;
    2. breakers: one closed through is gone; its first retest signals (long at a demand
       breaker, short at a supply one), stop level at the far edge of the zone or the retest
       wick, whichever is further;
    3. order blocks: one closed through flips into a breaker of the other polarity, made at
       this bar (so it is retested from the next bar on); its first retest signals likewise;
    4. displacement: a body >= mult x the mean body of the previous n bars makes an order
       block from the last opposing candle among those n (bullish displacement: the last
       bearish candle, a demand zone), its body (open to close) the zone.
    sig rows (OB_*, BRK_*): side (+1/-1/0), stop level, strength (body / mean body of the
    displacement that made the zone). zone rows: the zones standing after the bar.
    """
    zlo = np.full(4, np.nan)
    zhi = np.full(4, np.nan)
    born = np.zeros(4, dtype=np.int64)
    tested = np.zeros(4, dtype=np.bool_)
    strength = np.zeros(4)
    for p in range(o.shape[0]):
        sig[OB_DIR, p] = sig[BRK_DIR, p] = 0.0
        sig[OB_STOP, p] = sig[BRK_STOP, p] = np.nan
        sig[OB_STRENGTH, p] = sig[BRK_STRENGTH, p] = 0.0
        for z in range(4):
            if p - born[z] > max_age:
                zlo[z] = zhi[z] = np.nan
        for z in (BULL_BRK, BEAR_BRK):
            side = 1.0 if z == BULL_BRK else -1.0
            r = _touch(side, zlo[z], zhi[z], tested[z], h[p], lo[p], c[p])
            if r == 1:
                zlo[z] = zhi[z] = np.nan
            elif r == 2:
                stop = min(zlo[z], lo[p]) if side > 0 else max(zhi[z], h[p])
                _signal(sig, BRK_DIR, p, side, stop, strength[z])
                tested[z] = True
        for z in (BULL_OB, BEAR_OB):
            side = 1.0 if z == BULL_OB else -1.0
            r = _touch(side, zlo[z], zhi[z], tested[z], h[p], lo[p], c[p])
            if r == 1:
                f = BEAR_BRK if z == BULL_OB else BULL_BRK
                zlo[f], zhi[f], born[f], tested[f], strength[f] = zlo[z], zhi[z], p, False, strength[z]
                zlo[z] = zhi[z] = np.nan
            elif r == 2:
                stop = min(zlo[z], lo[p]) if side > 0 else max(zhi[z], h[p])
                _signal(sig, OB_DIR, p, side, stop, strength[z])
                tested[z] = True
        if p >= n:
            total = 0.0
            for j in range(p - n, p):
                total += abs(c[j] - o[j])
            avg = total / n
            body = abs(c[p] - o[p])
            if avg > 0.0 and body >= mult * avg:
                side = 1.0 if c[p] > o[p] else -1.0
                for j in range(p - 1, p - n - 1, -1):
                    if side * (c[j] - o[j]) < 0.0:
                        z = BULL_OB if side > 0 else BEAR_OB
                        zlo[z], zhi[z] = min(o[j], c[j]), max(o[j], c[j])
                        born[z], tested[z], strength[z] = p, False, body / avg
                        break
        for z in range(4):
            zone[2 * z, p] = zlo[z]
            zone[2 * z + 1, p] = zhi[z]


@njit(cache=True)
def zones_rows(ot, ht, lt, ct, n, mult, max_age):
    """`zones_1d` per coin on its valid bars. Skipped bars: no signal (side 0, stop NaN); the
    zones standing after the last valid bar (NaN before the first)."""
    nc, nb = ot.shape
    sig = np.zeros((N_SIG_ROWS, nc, nb))
    zone = np.full((N_ZONE_ROWS, nc, nb), np.nan)
    idx = np.empty(nb, dtype=np.int64)
    sbuf = np.empty((N_SIG_ROWS, nb))
    zbuf = np.empty((N_ZONE_ROWS, nb))
    for c in range(nc):
        m = _valid(ot[c], ht[c], lt[c], ct[c], idx)
        sel = idx[:m]
        zones_1d(ot[c][sel], ht[c][sel], lt[c][sel], ct[c][sel], n, mult, max_age,
                 sbuf[:, :m], zbuf[:, :m])
        sig[OB_STOP, c] = np.nan
        sig[BRK_STOP, c] = np.nan
        j = -1
        for t in range(nb):
            if j + 1 < m and idx[j + 1] == t:
                j += 1
                for r in range(N_SIG_ROWS):
                    sig[r, c, t] = sbuf[r, j]
            if j >= 0:
                for r in range(N_ZONE_ROWS):
                    zone[r, c, t] = zbuf[r, j]
    return sig, zone


# ---------------------------------------------------------------- swing-failure patterns


@njit(cache=True, inline="always")
def _overlaps(zone, p, kinds, side, level, extreme):
    """The SFP wick (from the swept level to its extreme) reaches into one of `kinds`' zones
    as they stood after bar p - 1."""
    if p == 0:
        return False
    for z in kinds:
        zl, zh = zone[2 * z, p - 1], zone[2 * z + 1, p - 1]
        if side < 0 and extreme >= zl and level <= zh:
            return True
        if side > 0 and extreme <= zh and level >= zl:
            return True
    return False


@njit(cache=True)
def sfp_1d(o, h, lo, c, k, zone, out):
    """Swing failures on gap-free bars.

    Levels: the latest swing high and swing low (pivots of lookback k), each standing until a
    bar trades beyond it. A bearish SFP at bar p: high > the standing swing high and close
    below it (the same candle closes back inside); bullish mirrored with the swing low. It is
    confirmed when the NEXT bar closes beyond the SFP candle's close in its direction (below
    for bearish); the signal is at that confirmation bar. Rows: side, stop level (the SFP
    wick's extreme), confidence (the SFP candle's rejection: wick beyond its close over its
    range), confluence (1 when the wick reached into an order-block or breaker zone of the
    same polarity: supply for a bearish SFP, demand for a bullish one).
    """
    hi_lvl = lo_lvl = np.nan
    pend, pend_close, pend_ext, pend_conf, pend_confl = 0.0, 0.0, 0.0, 0.0, 0.0
    for p in range(o.shape[0]):
        out[SFP_DIR, p] = 0.0
        out[SFP_STOP, p] = np.nan
        out[SFP_CONF, p] = 0.0
        out[SFP_CONFLUENCE, p] = 0.0
        if pend != 0.0:
            if pend * (c[p] - pend_close) > 0.0:
                out[SFP_DIR, p] = pend
                out[SFP_STOP, p] = pend_ext
                out[SFP_CONF, p] = pend_conf
                out[SFP_CONFLUENCE, p] = pend_confl
            pend = 0.0
        bear = h[p] > hi_lvl and c[p] < hi_lvl
        bull = lo[p] < lo_lvl and c[p] > lo_lvl
        if bear and not bull:
            pend, pend_ext = -1.0, h[p]
            pend_conf = (h[p] - c[p]) / (h[p] - lo[p])
            pend_confl = 1.0 if _overlaps(zone, p, (BEAR_OB, BEAR_BRK), -1.0, hi_lvl, h[p]) else 0.0
            pend_close = c[p]
        elif bull and not bear:
            pend, pend_ext = 1.0, lo[p]
            pend_conf = (c[p] - lo[p]) / (h[p] - lo[p])
            pend_confl = 1.0 if _overlaps(zone, p, (BULL_OB, BULL_BRK), 1.0, lo_lvl, lo[p]) else 0.0
            pend_close = c[p]
        if h[p] > hi_lvl:
            hi_lvl = np.nan
        if lo[p] < lo_lvl:
            lo_lvl = np.nan
        q = p - k
        if q >= k:
            if _pivot(h, q, k, 1.0):
                hi_lvl = h[q]
            if _pivot(lo, q, k, -1.0):
                lo_lvl = lo[q]


@njit(cache=True)
def sfp_rows(ot, ht, lt, ct, k, zone):
    """`sfp_1d` per coin on its valid bars, with the zones of `zones_rows`; skipped bars get
    no signal."""
    nc, nb = ot.shape
    out = np.zeros((N_SFP_ROWS, nc, nb))
    out[SFP_STOP] = np.nan
    idx = np.empty(nb, dtype=np.int64)
    buf = np.empty((N_SFP_ROWS, nb))
    zbuf = np.empty((N_ZONE_ROWS, nb))
    for c in range(nc):
        m = _valid(ot[c], ht[c], lt[c], ct[c], idx)
        sel = idx[:m]
        for r in range(N_ZONE_ROWS):
            zbuf[r, :m] = zone[r, c][sel]
        sfp_1d(ot[c][sel], ht[c][sel], lt[c][sel], ct[c][sel], k, zbuf[:, :m], buf[:, :m])
        for j in range(m):
            for r in range(N_SFP_ROWS):
                out[r, c, idx[j]] = buf[r, j]
    return out


# ---------------------------------------------------------------- the Monday range


@njit(cache=True)
def monday_range_rows(ts_ns, bar_ns, ht, lt, valid):
    """(high, low) of each week's Monday (UTC), on every later bar of that week (Tuesday to
    Sunday); NaN on Mondays, and for a week whose Monday is not complete (every Monday bar
    valid: a range from part of the day would be wrong)."""
    nc, nb = ht.shape
    hi = np.full((nc, nb), np.nan)
    lo = np.full((nc, nb), np.nan)
    per_day = DAY_NS // bar_ns
    for c in range(nc):
        week, mhi, mlo, count = -1, -np.inf, np.inf, 0
        for t in range(nb):
            day = ts_ns[t] // DAY_NS
            w = (day + 3) // 7  # 1970-01-01 was a Thursday: weeks start on Monday
            if w != week:
                week, mhi, mlo, count = w, -np.inf, np.inf, 0
            if (day + 3) % 7 == 0:
                if valid[c, t]:
                    mhi = max(mhi, ht[c, t])
                    mlo = min(mlo, lt[c, t])
                    count += 1
            elif count == per_day:
                hi[c, t] = mhi
                lo[c, t] = mlo
    return hi, lo
