"""The book of one parameter set: opening positions from a bar's signals, closing them into the
trade record, and the requests that close them at a fill step (harness/kernel_nb.py's spec).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from harness import kernel_layout as L
from harness.fills_nb import (
    CALLED,
    INLINE,
    at_open,
    band,
    fill_slip,
    open_slot,
    partial_at_open,
    take_partial,
)


@njit(**CALLED)
def close_slot(sf, si, k, reason, level, at_open_, t, g, cash, prm, half_spread, impact, st,
                trades, tbase, tcap, n_tr, coin_slot):
    """Close what is left of slot k at `level` (slippage applied here), book the trade and free
    the slot. Returns the new cash."""
    side = si[k, L.I_SIDE]
    c = si[k, L.I_COIN]
    size = sf[k, L.F_SIZE]
    if reason == L.R_BACKSTOP:
        slip = 0.0
        fill = level
        xgross = -sf[k, L.F_MARGIN]
        xfee = 0.0
        st[L.S_NBACKSTOP] += 1.0
        st[L.S_NLIQ] += 1.0
    else:
        slip = fill_slip(prm, half_spread, impact, t, c, size * level, st)
        fill = level * (1.0 - side * slip)
        xgross = side * size * (fill - sf[k, L.F_ENTRY])
        xfee = size * fill * prm[L.P_FEE]
        if reason == L.R_LIQ:
            st[L.S_NLIQ] += 1.0
            if xgross - xfee < -sf[k, L.F_MARGIN]:  # never more than the isolated margin
                xgross = xfee - sf[k, L.F_MARGIN]
        sf[k, L.F_SLIPCOST] += size * level * slip
    cash += xgross - xfee
    fees = sf[k, L.F_FEES] + xfee
    fund = sf[k, L.F_FUND]
    pnl = sf[k, L.F_PGROSS] + xgross - fees - fund
    size0 = sf[k, L.F_SIZE0]
    r = pnl / (size0 * sf[k, L.F_R])
    st[L.S_NTRADES] += 1.0
    if pnl > 0:
        st[L.S_WINS] += 1.0
    st[L.S_SUMR] += r
    st[L.S_FEES] += fees
    st[L.S_FUNDING] += fund
    st[L.S_SLIPCOST] += sf[k, L.F_SLIPCOST]
    if n_tr < tcap:
        row = trades[tbase + n_tr]
        row[L.T_COIN] = c
        row[L.T_SIDE] = side
        row[L.T_SIGBAR] = si[k, L.I_SIGBAR]
        row[L.T_ENTRYBAR] = si[k, L.I_FILLBAR]
        row[L.T_EXITBAR] = t
        row[L.T_ENTRY] = sf[k, L.F_ENTRY]
        row[L.T_EXIT] = fill
        row[L.T_SIZE] = size0
        row[L.T_NOTIONAL] = sf[k, L.F_NOTIONAL0]
        row[L.T_STOP] = sf[k, L.F_R]
        row[L.T_R] = r
        row[L.T_PNL] = pnl
        row[L.T_FEES] = fees
        row[L.T_FUNDING] = fund
        row[L.T_REASON] = reason
        row[L.T_PARTIAL] = si[k, L.I_PARTIAL]
        row[L.T_SEG] = g
        row[L.T_EXIT_AT_OPEN] = 1.0 if at_open_ else 0.0
        row[L.T_ENTRY_FEE] = sf[k, L.F_ENTRY_FEE]
        row[L.T_ENTRY_SLIP] = sf[k, L.F_ENTRY_SLIP]
        row[L.T_PART_BAR] = si[k, L.I_PART_BAR]
        row[L.T_PART_PRICE] = sf[k, L.F_PART_PRICE]
        row[L.T_PART_QTY] = sf[k, L.F_PART_QTY]
        row[L.T_PART_FEE] = sf[k, L.F_PART_FEE]
        row[L.T_PART_SLIP] = sf[k, L.F_PART_SLIP]
        row[L.T_EXIT_QTY] = size
        row[L.T_EXIT_FEE] = xfee
        row[L.T_EXIT_SLIP] = slip
        row[L.T_SLIPCOST] = sf[k, L.F_SLIPCOST]
        row[L.T_DETAIL] = si[k, L.I_DETAIL]
        row[L.T_EXIT_SUB] = si[k, L.I_EXIT_SUB]
    si[k, L.I_EXIT_SUB] = -1
    coin_slot[c] = -1
    si[k, L.I_COIN] = -1
    return cash


@njit(**INLINE)
def open_list(si, olist, K):
    """Refresh the list of open slots; returns how many there are."""
    n = 0
    for k in range(K):
        if si[k, L.I_COIN] >= 0:
            olist[n] = k
            n += 1
    return n




@njit(**INLINE)
def mark_requests(si, coin_slot, olist, n_open, flat_req, t_dec, ex_bar, ex_coin, xi, x1,
                  ev_bar, ev_coin, ev_dir, ei, e1):
    """The closes the bar t_dec asked for: the kill switch's flatten, exit signals and opposite
    signals. Returns the event and exit cursors moved past t_dec (events: [ea, eb) are t_dec's)."""
    while ei < e1 and ev_bar[ei] < t_dec:  # only after the kill switch skipped bars
        ei += 1
    while xi < x1 and ex_bar[xi] < t_dec:  # exits while flat are never looked at
        xi += 1
    if flat_req > 0:
        for q in range(n_open):
            si[olist[q], L.I_REQ] = flat_req
    while xi < x1 and ex_bar[xi] == t_dec:
        k = coin_slot[ex_coin[xi]]
        if k >= 0 and si[k, L.I_REQ] <= 0:
            si[k, L.I_REQ] = L.R_SIGNAL
        xi += 1
    ea = ei
    while ei < e1 and ev_bar[ei] == t_dec:
        k = coin_slot[ev_coin[ei]]
        if k >= 0 and si[k, L.I_REQ] <= 0 and ev_dir[ei] == -si[k, L.I_SIDE]:
            si[k, L.I_REQ] = L.R_SIGNAL
        ei += 1
    return ea, ei, xi


@njit(**INLINE)
def fill_requests(sf, si, olist, n_open, px, t, g, at_the_open, use_liq, use_trail, trail_start,
                  cash, prm, half_spread, impact, st, trades, tbase, tcap, n_tr, coin_slot):
    """At a fill step (an open, or a legacy close): levels the open jumped beyond, then the
    requested closes, each at this price. Returns (cash, trades booked)."""
    for q in range(n_open):
        k = olist[q]
        c = si[k, L.I_COIN]
        price = px[t, c]
        if price != price:
            continue  # no price on this bar: requests wait for one
        if si[k, L.I_REQ] <= 0 and t >= si[k, L.I_HOLD_UNTIL]:
            si[k, L.I_REQ] = L.R_TIME
        reason = -1
        if at_the_open:
            reason = at_open(sf, si, k, price, use_liq)
            if reason < 0 and partial_at_open(sf, si, k, price):
                cash += take_partial(sf, si, k, price, t, prm, half_spread, impact, st)
                band(sf, si, k, use_liq, use_trail, trail_start)
        if reason < 0 and si[k, L.I_REQ] > 0:
            reason = si[k, L.I_REQ]
        if reason >= 0:
            cash = close_slot(sf, si, k, reason, price, at_the_open, t, g, cash, prm, half_spread,
                              impact, st, trades, tbase, tcap, n_tr, coin_slot)
            n_tr += 1
    return cash, n_tr


@njit(**CALLED)
def enter(sf, si, olist, n_open, coin_slot, last_px, last_setup, has_setup, cand, px, listed,
          max_lev, t, t_dec, ea, eb, blocked, cash, prm, half_spread, impact, st, ev_coin, ev_dir,
          ev_stop, ev_target, ev_score, ev_setup, ev_hold, ev_trail, ev_status):
    """Entries from the signals [ea, eb) of bar t_dec at price px[t]: the highest score first,
    each sized, capped and given its fill status. Returns (cash, n_open)."""
    dedup = prm[L.P_DEDUP] > 0
    at_the_open = prm[L.P_NEXT_OPEN] > 0
    n_cand = 0
    for j in range(ea, eb):
        c = ev_coin[j]
        status = blocked
        if status < 0:
            price = px[t, c]
            if coin_slot[c] >= 0:
                status = L.ST_POSITION
            elif not (listed[t_dec, c] and listed[t, c] and price == price and price > 0.0):
                status = L.ST_NO_PRICE
            elif dedup and ev_setup[j] != 0 and has_setup[c] and last_setup[c] == ev_setup[j]:
                status = L.ST_DEDUP
        cand[j - ea] = status < 0
        if status >= 0:
            ev_status[j] = status
        else:
            n_cand += 1
    if n_cand == 0:
        return cash, n_open
    K = sf.shape[0]
    eq_now = cash
    gross_now = 0.0
    for q in range(n_open):
        k = olist[q]
        lp = last_px[si[k, L.I_COIN]]
        eq_now += si[k, L.I_SIDE] * sf[k, L.F_SIZE] * (lp - sf[k, L.F_ENTRY])
        gross_now += sf[k, L.F_SIZE] * lp
    risk_frac, fraction, fee_rate = prm[L.P_RISK], prm[L.P_FRACTION], prm[L.P_FEE]
    sizing_risk = int(prm[L.P_SIZING]) == L.SIZING_RISK
    use_liq, use_trail = prm[L.P_LIQ] > 0, prm[L.P_TRAIL] > 0
    while n_cand > 0:
        j = -1
        for jj in range(ea, eb):
            if cand[jj - ea] and (j < 0 or ev_score[jj] > ev_score[j]):
                j = jj
        cand[j - ea] = False
        n_cand -= 1
        cap = prm[L.P_MAXLEV] * eq_now
        room = cap - gross_now
        if n_open >= K:
            ev_status[j] = L.ST_NO_SLOT
            continue
        if eq_now <= 0.0:
            ev_status[j] = L.ST_NO_EQUITY
            continue
        if room <= 1e-9 * cap:  # a rounding residue of a used-up cap is not room
            ev_status[j] = L.ST_GROSS_CAP
            continue
        ev_status[j] = L.ST_FILLED
        c = ev_coin[j]
        side = np.int64(ev_dir[j])
        raw = px[t, c]
        R = ev_stop[j]
        slip = 0.0
        if at_the_open:  # per-coin slippage is priced on the intended notional
            want = 0.0
            if prm[L.P_COIN_SLIP] > 0:
                want = eq_now * risk_frac / R * raw if sizing_risk else eq_now * fraction / (1.0 + fee_rate)
            slip = fill_slip(prm, half_spread, impact, t, c, min(want, room), st)
        fill = raw * (1.0 + side * slip)
        size = eq_now * risk_frac / R if sizing_risk else eq_now * fraction / (fill * (1.0 + fee_rate))
        notional = size * fill
        if notional > room:
            notional = room
            size = notional / fill
        k = 0
        while si[k, L.I_COIN] >= 0:
            k += 1
        fee = notional * fee_rate
        cash -= fee
        gross_now += notional
        mlev = max_lev[c]
        margin = notional / min(prm[L.P_POSLEV], mlev)
        open_slot(sf, si, k, c, side, fill, size, notional, R, ev_target[j], ev_trail[j], fee, slip,
                  raw, margin, 0.5 / mlev if use_liq else 0.0, prm[L.P_PARTIAL] > 0,
                  prm[L.P_PART_R], prm[L.P_TRAIL_DIST], t_dec, t, ev_hold[j])
        band(sf, si, k, use_liq, use_trail, prm[L.P_TRAIL_START])
        coin_slot[c] = k
        last_px[c] = raw
        if dedup and ev_setup[j] != 0:
            last_setup[c] = ev_setup[j]
            has_setup[c] = True
        olist[n_open] = k
        n_open += 1
    return cash, n_open
