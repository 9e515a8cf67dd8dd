"""What happens to one open position inside one bar: the kernel's small parts.

Each helper works on one slot k of the kernel's slot tables (`sf` floats, `si` ints, field
indices below) and is inlined into the kernel (`inline="always"`: no call overhead in the bar
loop). The rules they implement are the kernel's docstring (harness/kernel_nb.py); a helper's
docstring says which rule it is. Prices are "levels" until a fill applies slippage.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from harness import kernel_layout as L
from harness.margin import BACKSTOP_SHARE, threshold_price

INLINE = {"cache": True, "error_model": "numpy", "inline": "always"}  # the per-bar checks
CALLED = {"cache": True, "error_model": "numpy"}  # what runs once per fill: not worth inlining

@njit(**INLINE)
def fill_slip(prm, half_spread, impact, t, c, notional, st):
    """Slippage fraction of a fill on bar t: flat, or friction v5's per-coin estimate known at
    the close of bar t - 1 (half spread + square-root impact, clipped, times the fee stress);
    the flat rate where the estimate is unknown (counted)."""
    if prm[L.P_COIN_SLIP] > 0.0:
        r = t - 1 if t > 0 else 0
        hs = half_spread[r, c]
        ic = impact[r, c]
        if hs == hs and ic == ic:
            s = hs + ic * np.sqrt(notional)
            return min(max(s, prm[L.P_SLIP_FLOOR]), prm[L.P_SLIP_CAP]) * prm[L.P_STRESS]
        st[L.S_SLIP_FALLBACK] += 1.0
    return prm[L.P_SLIP]


@njit(**INLINE)
def band(sf, si, k, use_liq, use_trail, trail_start):
    """The quiet band of slot k: inside it a bar touches no stop, liquidation, partial or
    target level and makes no new best price that matters, so the bar needs no work."""
    side = si[k, L.I_SIDE]
    adverse = sf[k, L.F_STOP]
    if use_liq:
        adverse = max(adverse, sf[k, L.F_LIQ]) if side > 0 else min(adverse, sf[k, L.F_LIQ])
    fav = np.inf * side
    tgt = sf[k, L.F_TARGET]
    if tgt == tgt:
        fav = min(fav, tgt) if side > 0 else max(fav, tgt)
    part = sf[k, L.F_PART]
    if part == part:
        fav = min(fav, part) if side > 0 else max(fav, part)
    if use_trail:  # the best price matters from the trail start on, then every new best does
        b = sf[k, L.F_BEST]
        thr = sf[k, L.F_ENTRY] + side * trail_start * sf[k, L.F_R]
        b = max(b, thr) if side > 0 else min(b, thr)
        fav = min(fav, b) if side > 0 else max(fav, b)
    if side > 0:
        sf[k, L.F_QLO] = adverse
        sf[k, L.F_QHI] = fav
    else:
        sf[k, L.F_QLO] = fav
        sf[k, L.F_QHI] = adverse


@njit(**INLINE)
def touches(sf, si, k, adverse_px, favourable_px):
    """(adverse band edge reached, favourable band edge reached) by a bar's extremes."""
    if si[k, L.I_SIDE] > 0:
        return adverse_px <= sf[k, L.F_QLO], favourable_px >= sf[k, L.F_QHI]
    return adverse_px >= sf[k, L.F_QHI], favourable_px <= sf[k, L.F_QLO]


@njit(**CALLED)
def open_slot(sf, si, k, c, side, fill, size, notional, R, tgt, trail, fee, slip, raw,
              margin, mrate, use_partial, part_r, trail_dist, t_dec, t, hold):
    """A new position in slot k: its levels (stop 1R away, target, partial, liquidation and
    backstop prices) from the fill price."""
    sf[k, L.F_SIZE] = size
    sf[k, L.F_SIZE0] = size
    sf[k, L.F_ENTRY] = fill
    sf[k, L.F_R] = R
    sf[k, L.F_STOP] = fill - side * R
    sf[k, L.F_TARGET] = fill + side * tgt * R if tgt == tgt else np.nan
    part = np.nan
    if use_partial:
        part = fill + side * part_r * R
        if tgt == tgt and side * (sf[k, L.F_TARGET] - part) <= 0.0:
            part = np.nan  # a target at or before the partial level: no partial
    sf[k, L.F_PART] = part
    sf[k, L.F_BEST] = fill
    sf[k, L.F_TRAILD] = trail if trail == trail else trail_dist
    if mrate > 0.0:
        mps = margin / size
        sf[k, L.F_LIQ] = threshold_price(fill, side, mps, mrate)
        sf[k, L.F_BACK] = threshold_price(fill, side, mps, BACKSTOP_SHARE * mrate)
    else:
        sf[k, L.F_LIQ] = np.nan
        sf[k, L.F_BACK] = np.nan
    sf[k, L.F_MARGIN] = margin
    sf[k, L.F_FEES] = fee
    sf[k, L.F_FUND] = 0.0
    sf[k, L.F_PGROSS] = 0.0
    sf[k, L.F_NOTIONAL0] = notional
    sf[k, L.F_ENTRY_FEE] = fee
    sf[k, L.F_ENTRY_SLIP] = slip
    sf[k, L.F_PART_PRICE] = np.nan
    sf[k, L.F_PART_QTY] = 0.0
    sf[k, L.F_PART_FEE] = 0.0
    sf[k, L.F_PART_SLIP] = np.nan
    sf[k, L.F_SLIPCOST] = size * raw * slip
    si[k, L.I_COIN] = c
    si[k, L.I_SIDE] = side
    si[k, L.I_SIGBAR] = t_dec
    si[k, L.I_FILLBAR] = t
    si[k, L.I_HOLD_UNTIL] = t + hold if hold > 0 else L.NO_BAR
    si[k, L.I_KIND] = L.R_STOP
    si[k, L.I_REQ] = 0
    si[k, L.I_PARTIAL] = 0
    si[k, L.I_PART_BAR] = -1
    si[k, L.I_DETAIL] = 0
    si[k, L.I_EXIT_SUB] = -1


@njit(**CALLED)
def take_partial(sf, si, k, level, t, prm, half_spread, impact, st):
    """The partial take-profit at `level`: partial_frac of the entry size closes, the margin
    shrinks with it, and the stop moves to breakeven (the entry fill) from here on.
    Returns the cash it adds."""
    side = si[k, L.I_SIDE]
    c = si[k, L.I_COIN]
    size = sf[k, L.F_SIZE]
    qty = min(prm[L.P_PART_FRAC] * sf[k, L.F_SIZE0], size)
    slip = fill_slip(prm, half_spread, impact, t, c, qty * level, st)
    price = level * (1.0 - side * slip)
    gross = side * qty * (price - sf[k, L.F_ENTRY])
    fee = qty * price * prm[L.P_FEE]
    sf[k, L.F_MARGIN] *= (size - qty) / size
    sf[k, L.F_SIZE] = size - qty
    sf[k, L.F_PGROSS] += gross
    sf[k, L.F_FEES] += fee
    sf[k, L.F_SLIPCOST] += qty * level * slip
    sf[k, L.F_PART] = np.nan
    sf[k, L.F_PART_PRICE] = price
    sf[k, L.F_PART_QTY] = qty
    sf[k, L.F_PART_FEE] = fee
    sf[k, L.F_PART_SLIP] = slip
    si[k, L.I_PARTIAL] = 1
    si[k, L.I_PART_BAR] = t
    if side * (sf[k, L.F_ENTRY] - sf[k, L.F_STOP]) > 0.0:
        sf[k, L.F_STOP] = sf[k, L.F_ENTRY]
        si[k, L.I_KIND] = L.R_PARTIAL
    return gross - fee


@njit(**INLINE)
def at_open(sf, si, k, o, use_liq):
    """A bar opening beyond a level fills there, adverse levels first: backstop, liquidation,
    stop, then the target. Returns the exit reason, or -1 (the partial is `partial_at_open`)."""
    side = si[k, L.I_SIDE]
    if use_liq:
        if side * (o - sf[k, L.F_BACK]) <= 0.0:
            return L.R_BACKSTOP
        if side * (o - sf[k, L.F_LIQ]) <= 0.0:
            return L.R_LIQ
    if side * (o - sf[k, L.F_STOP]) <= 0.0:
        return si[k, L.I_KIND]
    tgt = sf[k, L.F_TARGET]
    if tgt == tgt and side * (o - tgt) >= 0.0:
        return L.R_TARGET
    return -1


@njit(**INLINE)
def partial_at_open(sf, si, k, o):
    part = sf[k, L.F_PART]
    return part == part and si[k, L.I_SIDE] * (o - part) >= 0.0


@njit(**INLINE)
def adverse_leg(sf, si, k, to, use_liq):
    """The path moves against the position to `to`: the first level it crosses, the stop or
    the liquidation price, whichever lies nearer. Returns (reason or -1, level)."""
    side = si[k, L.I_SIDE]
    stop = sf[k, L.F_STOP]
    if use_liq:
        liq = sf[k, L.F_LIQ]
        if side * (liq - stop) > 0.0:  # the stop lies beyond the liquidation price
            if side * (to - liq) <= 0.0:
                return L.R_LIQ, liq
            return -1, 0.0
    if side * (to - stop) <= 0.0:
        return si[k, L.I_KIND], stop
    return -1, 0.0


@njit(**INLINE)
def raised_stop(sf, si, k, to, use_trail, trail_start):
    """The stop after the path has moved in favour to `to`: breakeven once the partial level is
    passed, the trailing level best - trail R once the best is trail_start R in profit."""
    side = si[k, L.I_SIDE]
    stop = sf[k, L.F_STOP]
    entry = sf[k, L.F_ENTRY]
    part = sf[k, L.F_PART]
    if part == part and side * (to - part) >= 0.0 and side * (entry - stop) > 0.0:
        stop = entry
    if use_trail:
        b = sf[k, L.F_BEST]
        if side * (to - b) > 0.0:
            b = to
        R = sf[k, L.F_R]
        if side * (b - entry) >= trail_start * R:
            lvl = b - side * sf[k, L.F_TRAILD] * R
            if side * (lvl - stop) > 0.0:
                stop = lvl
    return stop


@njit(**CALLED)
def favourable_leg(sf, si, k, to, t, use_trail, trail_start, prm, half_spread, impact, st):
    """The path moves in favour to `to`: the partial, then the target (nearest first), while the
    best price follows; a raised stop acts only on the way back. Returns (cash, target hit)."""
    side = si[k, L.I_SIDE]
    cash = 0.0
    part = sf[k, L.F_PART]
    if part == part and side * (to - part) >= 0.0:
        cash += take_partial(sf, si, k, part, t, prm, half_spread, impact, st)
    tgt = sf[k, L.F_TARGET]
    if tgt == tgt and side * (to - tgt) >= 0.0:
        return cash, True
    if use_trail:
        if side * (to - sf[k, L.F_BEST]) > 0.0:
            sf[k, L.F_BEST] = to
        R = sf[k, L.F_R]
        if side * (sf[k, L.F_BEST] - sf[k, L.F_ENTRY]) >= trail_start * R:
            lvl = sf[k, L.F_BEST] - side * sf[k, L.F_TRAILD] * R
            if side * (lvl - sf[k, L.F_STOP]) > 0.0:
                sf[k, L.F_STOP] = lvl
                si[k, L.I_KIND] = L.R_TRAIL
    return cash, False


@njit(**CALLED)
def walk(sf, si, k, lo, hi, cl, t, use_liq, use_trail, trail_start, prm, half_spread, impact, st):
    """The rest of a bar after its open, as the path open -> adverse extreme -> favourable
    extreme -> close. Returns (reason or -1, level, cash from a partial)."""
    side = si[k, L.I_SIDE]
    adv = lo if side > 0 else hi
    fav = hi if side > 0 else lo
    reason, level = adverse_leg(sf, si, k, adv, use_liq)
    if reason >= 0:
        return reason, level, 0.0
    cash, hit = favourable_leg(sf, si, k, fav, t, use_trail, trail_start, prm, half_spread,
                               impact, st)
    if hit:
        return L.R_TARGET, sf[k, L.F_TARGET], cash
    reason, level = adverse_leg(sf, si, k, cl, use_liq)
    return reason, level, cash


@njit(**INLINE)
def order_matters(sf, si, k, lo, hi, use_trail, trail_start):
    """Whether the bar's outcome depends on what came first inside it: its range reaches an
    adverse and a favourable level, or a stop raised on the way (breakeven, trailing) lies
    inside its range. Only such bars need intrabar detail."""
    side = si[k, L.I_SIDE]
    adv = lo if side > 0 else hi
    fav = hi if side > 0 else lo
    adverse, favourable = touches(sf, si, k, adv, fav)
    if not favourable:
        return False
    if adverse:
        return True
    tgt = sf[k, L.F_TARGET]
    if tgt == tgt and side * (fav - tgt) > 0.0:
        fav = tgt  # the target closes the position: the path goes no further in favour
    return side * (adv - raised_stop(sf, si, k, fav, use_trail, trail_start)) <= 0.0


@njit(**CALLED)
def detail_complete(do_, dh, dl, dc, t, c, ratio):
    for j in range(ratio):
        row = t * ratio + j
        if not (do_[row, c] == do_[row, c] and dh[row, c] == dh[row, c]
                and dl[row, c] == dl[row, c] and dc[row, c] == dc[row, c]):
            return False
    return True


@njit(**CALLED)
def walk_detail(sf, si, k, c, t, ratio, do_, dh, dl, dc, use_liq, use_trail, trail_start, prm,
                 half_spread, impact, st):
    """Steps 1-2 on each detail bar of bar t in order. Returns (reason, level, at open, cash,
    the detail bar it happened in)."""
    cash = 0.0
    for j in range(ratio):
        row = t * ratio + j
        if j > 0:
            o = do_[row, c]
            reason = at_open(sf, si, k, o, use_liq)
            if reason >= 0:
                return reason, o, True, cash, j
            if partial_at_open(sf, si, k, o):
                cash += take_partial(sf, si, k, o, t, prm, half_spread, impact, st)
        reason, level, got = walk(sf, si, k, dl[row, c], dh[row, c], dc[row, c], t, use_liq,
                                  use_trail, trail_start, prm, half_spread, impact, st)
        cash += got
        if reason >= 0:
            return reason, level, False, cash, j
    return -1, 0.0, False, cash, -1



@njit(**INLINE)
def bar_outcome(sf, si, k, c, t, o, lo, hi, cl, gap_first, ratio, do_, dh, dl, dc, use_liq,
                use_trail, trail_start, prm, half_spread, impact, st):
    """What bar t does to slot k after the fill step: its open first when it was not looked at
    (legacy), nothing on a quiet bar, else the walk, through the detail bars where the order
    matters and they exist. Returns (reason or -1, level, at open, cash from a partial, the
    detail bar of the exit or -1)."""
    cash = 0.0
    if gap_first:
        reason = at_open(sf, si, k, o, use_liq)
        if reason >= 0:
            return reason, o, True, cash, -1
        if partial_at_open(sf, si, k, o):
            cash += take_partial(sf, si, k, o, t, prm, half_spread, impact, st)
            band(sf, si, k, use_liq, use_trail, trail_start)
    side = si[k, L.I_SIDE]
    adverse, favourable = touches(sf, si, k, lo if side > 0 else hi, hi if side > 0 else lo)
    if not (adverse or favourable):
        return -1, 0.0, False, cash, -1  # a quiet bar
    if ratio > 0 and order_matters(sf, si, k, lo, hi, use_trail, trail_start):
        if detail_complete(do_, dh, dl, dc, t, c, ratio):
            st[L.S_DETAIL] += 1.0
            si[k, L.I_DETAIL] = 1
            reason, level, gap, got, sub = walk_detail(sf, si, k, c, t, ratio, do_, dh, dl, dc,
                                                       use_liq, use_trail, trail_start, prm,
                                                       half_spread, impact, st)
            return reason, level, gap, cash + got, sub
        st[L.S_DETAIL_MISSING] += 1.0
    reason, level, got = walk(sf, si, k, lo, hi, cl, t, use_liq, use_trail, trail_start, prm,
                              half_spread, impact, st)
    return reason, level, False, cash + got, -1
