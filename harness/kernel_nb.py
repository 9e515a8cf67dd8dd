"""The portfolio kernel: plain arrays in, plain arrays out, one parameter set per prange lane.

Semantics (DESIGN section 5; the paper executor mirrors them, so change them only with it):

Timing
- A signal is decided at the close of bar t and filled at the OPEN of t+1 with slippage against
  you (friction.next_open); the legacy model fills at the close of t with no costs.
- An entry needs the coin listed at t and t+1 and no open position on that coin (one position
  per coin per set). An opposite signal closes the open position at the next open (reason
  signal) and may open the new one at that same open. `exit[t]` closes at the open of t+1
  (reason signal). `hold` > 0 is a time stop: close at the open of entry_bar + hold (time).
  A close that cannot fill because the coin has no price on that bar waits for the next bar
  that has one.
- At a fill step, closes come first, then entries. Entries compete for free slots
  (max_positions) and for the gross cap: the highest score first, ties by coin order.

Stops, targets, partial, trailing, liquidation (intrabar, from the bar AFTER the fill bar)
- The fill bar's own range is never used (not for stops, targets or the trailing best price):
  we do not know whether its high/low came before the fill.
- Adverse first: a bar that opens beyond the liquidation price is liquidated at the open; a bar
  that opens beyond the stop fills at the open (worse than the stop). Inside the bar, the
  liquidation price is taken when the range reaches it and it lies at or before the stop
  (closer to the open), otherwise the stop at its level. A bar touching the stop and a target
  takes the stop.
- Favourable levels (partial take-profit at partial_r R, target at target R) are taken at their
  level, or at the open when the bar opens beyond them, nearest level first. The partial closes
  partial_frac of the entry size and moves the stop to breakeven (the entry fill price) from the
  next bar on; the rest can still reach the target in the same bar.
- Trailing: after a bar's checks, the best price is updated with that bar's extreme; once it is
  trail_start_r R in profit the stop becomes max(stop, best - trail R) for longs (min and + for
  shorts), in force from the next bar. A stop that trailing raised exits as `trail`, a stop at
  breakeven after a partial as `partial`, the initial stop as `stop`.
- Liquidation (isolated margin): margin = notional / lev, lev = min(position_leverage, coin max),
  maintenance rate l = 0.5 / coin max, liq = entry - side * (margin - l * notional) / size /
  (1 - l * side). A liquidation loses the remaining isolated margin (pnl = -margin) plus the fee.
- Every fill pays fee * notional and slippage (stops, targets, partials, time, end of data
  included); a liquidation fills at its price without slippage since its loss is the margin.

Sizing: "risk": size = equity * risk_fraction / stop (so notional = equity * risk_fraction /
(stop / entry)); "fraction": notional * (1 + fee) = equity * fraction, vectorbt's
SizeType.Percent. Equity here is cash plus open positions marked at their last price. The
notional is then cut so that gross notional <= max_leverage * equity.

Funding: at each bar close, every open position pays side * size * close * funding[t] (a long
pays a positive rate; the market's funding is already per bar: never divided by 8).

v3 de-duplication: per coin, a signal whose setup key equals the key of the position last
opened on that coin is skipped. Setup key 0 means "no key" (the Signals.empty default) and is
never de-duplicated.

Risk controls at each bar close on marked equity: equity <= peak * (1 - kill_drawdown) flattens
at the next fill step and halts entries for the rest of the segment (kill_switch); equity <=
the UTC day's starting equity * (1 - daily_loss_halt) flattens likewise and blocks entries whose
fill bar is on that UTC day (daily_halt). Legacy flattens at the same close.

Segments [start, stop) are independent runs from initial equity; entries only inside; every
position still open is closed at the close of the segment's last bar (end_of_data), at its
last known close if the coin has no price there.

Equity is marked at every bar close: cash plus open positions at their last close. Outputs:
per-segment stats (final equity, max drawdown from the initial equity on, trades, wins, sum of
R, fees, funding, time-averaged gross notional / equity, HHI of the per-coin sums of notional
held at bar closes), those per-coin sums, the equity at the end of each UTC day (by bar open
time; a day without bars carries the equity), optional per-bar equity, the drawdown of the
chained segments (segment k compounding on k-1), and closed trades (a trade buffer that is too
small keeps counting, so the caller can grow it and rerun: trades are never dropped silently).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

EXIT_REASONS = (
    "stop", "target", "partial", "trail", "signal", "time",
    "liquidation", "kill_switch", "daily_halt", "end_of_data",
)
R_STOP, R_TARGET, R_PARTIAL, R_TRAIL, R_SIGNAL, R_TIME, R_LIQ, R_KILL, R_DAILY, R_END = range(10)

# params vector
(P_INIT, P_RISK, P_SIZING, P_FRACTION, P_MAXPOS, P_MAXLEV, P_POSLEV, P_DAILY, P_KILL, P_FEE,
 P_SLIP, P_FUNDING, P_NEXT_OPEN, P_DEDUP, P_PARTIAL, P_TRAIL, P_LIQ, P_PART_R, P_PART_FRAC,
 P_TRAIL_START, P_TRAIL_DIST) = range(21)
N_PARAMS = 21
SIZING_RISK, SIZING_FRACTION = 0, 1

# per-segment stats
(S_FINAL, S_MAXDD, S_NTRADES, S_WINS, S_SUMR, S_FEES, S_FUNDING, S_EXPO, S_BARS, S_NLIQ,
 S_KILLED, S_HALTS, S_HHI) = range(13)
N_STATS = 13

# trade record fields (float64)
(T_COIN, T_SIDE, T_SIGBAR, T_ENTRYBAR, T_EXITBAR, T_ENTRY, T_EXIT, T_SIZE, T_NOTIONAL, T_STOP,
 T_R, T_PNL, T_FEES, T_FUNDING, T_REASON, T_PARTIAL, T_SEG, T_EXIT_AT_OPEN) = range(18)
N_TRADE_FIELDS = 18

# slot state: floats (F_QLO/F_QHI: a bar with low > F_QLO and high < F_QHI touches no level)
(F_SIZE, F_SIZE0, F_ENTRY, F_R, F_STOP, F_TARGET, F_PART, F_BEST, F_TRAILD, F_LIQ, F_MARGIN,
 F_FEES, F_FUND, F_PGROSS, F_PVAL, F_NOTIONAL0, F_QLO, F_QHI) = range(18)
NSF = 18
# slot state: ints (I_COIN < 0: free slot)
I_COIN, I_SIDE, I_SIGBAR, I_FILLBAR, I_HOLD_UNTIL, I_KIND, I_REQ, I_PARTIAL = range(8)
NSI = 8

NO_BAR = np.int64(1) << 62


@njit(cache=True, error_model="numpy", inline="always")
def _band(sf, si, k, use_liq, use_trail, trail_start):
    """The quiet band of slot k: inside it a bar touches no stop, liquidation, partial or
    target level and makes no new best price, so the bar needs no intrabar work."""
    side = si[k, I_SIDE]
    adverse = sf[k, F_STOP]
    if use_liq:
        adverse = max(adverse, sf[k, F_LIQ]) if side > 0 else min(adverse, sf[k, F_LIQ])
    fav = np.inf * side
    tgt = sf[k, F_TARGET]
    if tgt == tgt:
        fav = min(fav, tgt) if side > 0 else max(fav, tgt)
    part = sf[k, F_PART]
    if si[k, I_PARTIAL] == 0 and part == part:
        fav = min(fav, part) if side > 0 else max(fav, part)
    if use_trail:  # the best price matters from the trail start on, then every new best does
        b = sf[k, F_BEST]
        thr = sf[k, F_ENTRY] + side * trail_start * sf[k, F_R]
        b = max(b, thr) if side > 0 else min(b, thr)
        fav = min(fav, b) if side > 0 else max(fav, b)
    if side > 0:
        sf[k, F_QLO] = adverse
        sf[k, F_QHI] = fav
    else:
        sf[k, F_QLO] = fav
        sf[k, F_QHI] = adverse


@njit(cache=True, error_model="numpy")
def _run_set(p, open_, high, low, close, funding, listed, bar_day, max_lev,
             seg_start, seg_stop, seg_slot0,
             ev_bar, ev_coin, ev_dir, ev_stop, ev_target, ev_score, ev_setup, ev_hold, ev_trail,
             e0, e1, ex_bar, ex_coin, x0, x1, prm,
             trades, tbase, tcap, seg_stats, coin_expo, day_eq, eq_out, chain_dd):
    """One parameter set over all segments. No helper calls in the bar loop: a numba call
    increfs and decrefs every array argument (atomics), which costs more than the bar itself."""
    n_coins = open_.shape[1]
    K = int(prm[P_MAXPOS])
    init = prm[P_INIT]
    risk_frac = prm[P_RISK]
    sizing = int(prm[P_SIZING])
    fraction = prm[P_FRACTION]
    max_gross = prm[P_MAXLEV]
    pos_lev = prm[P_POSLEV]
    daily = prm[P_DAILY]
    kill = prm[P_KILL]
    fee_rate = prm[P_FEE]
    slip = prm[P_SLIP]
    use_funding = prm[P_FUNDING] > 0
    next_open = prm[P_NEXT_OPEN] > 0
    dedup = prm[P_DEDUP] > 0
    use_partial = prm[P_PARTIAL] > 0
    use_trail = prm[P_TRAIL] > 0
    use_liq = prm[P_LIQ] > 0
    part_r = prm[P_PART_R]
    part_frac = prm[P_PART_FRAC]
    trail_start = prm[P_TRAIL_START]
    trail_dist = prm[P_TRAIL_DIST]
    record_eq = eq_out.shape[1] > 0

    sf = np.zeros((K, NSF))
    si = np.full((K, NSI), -1, dtype=np.int64)
    olist = np.zeros(K, dtype=np.int64)  # the open slots, n_open of them
    cr = np.full(K, -1, dtype=np.int64)  # close reason marked in this phase (-1: none)
    cpx = np.zeros(K)  # its fill price, slippage applied
    cop = np.zeros(K, dtype=np.bool_)  # filled at the bar's open
    coin_slot = np.full(n_coins, -1, dtype=np.int64)
    last_px = np.full(n_coins, np.nan)
    last_setup = np.zeros(n_coins, dtype=np.int64)
    has_setup = np.zeros(n_coins, dtype=np.bool_)
    cand = np.zeros(n_coins, dtype=np.bool_)
    seg_coin = np.zeros(n_coins)
    n_tr = 0

    chain = 1.0
    chain_peak = init
    chain_mdd = 0.0
    eqc = 0
    for g in range(seg_start.shape[0]):
        s0 = seg_start[g]
        s1 = seg_stop[g]
        st = seg_stats[p, g]
        cash = init
        for k in range(K):
            si[k, I_COIN] = -1
            cr[k] = -1
        coin_slot[:] = -1
        has_setup[:] = False
        seg_coin[:] = 0.0
        n_open = 0
        pending = False
        min_hold = NO_BAR
        peak = init
        mdd = 0.0
        kill_level = peak * (1.0 - kill)
        day0 = bar_day[s0]
        cur_day = day0
        daily_level = init * (1.0 - daily)
        halted_day = -NO_BAR
        killed = False
        flat_req = 0
        prev_eq = init
        ei = e0 + np.searchsorted(ev_bar[e0:e1], s0)
        xi = x0 + np.searchsorted(ex_bar[x0:x1], s0)
        ev_next = ev_bar[ei] if ei < e1 else NO_BAR
        ex_next = ex_bar[xi] if xi < x1 else NO_BAR
        slot0 = seg_slot0[g]
        eq = init
        expo_acc = 0.0
        t = s0
        while t < s1:
            # ---- flat: jump to the next bar where something can happen ------------------------
            if n_open == 0 and flat_req == 0:
                nxt = s1 - 1
                if not killed:
                    nxt = min(nxt, ev_next + 1 if next_open else ev_next)
                if nxt > t:
                    if record_eq:
                        eq_out[p, eqc:eqc + nxt - t] = cash
                        eqc += nxt - t
                    t = nxt
            d = bar_day[t]
            if d != cur_day:  # the days since the last bar (skipped or without bars) end flat
                for dd in range(cur_day, d):
                    day_eq[p, slot0 + dd - day0] = prev_eq
                cur_day = d
                daily_level = prev_eq * (1.0 - daily)
            upnl = 0.0
            gross = 0.0
            # ---- fast path: nothing to fill at this open and no level inside any bar range ----
            quiet = False
            if next_open and n_open > 0 and s0 < t < s1 - 1 and flat_req == 0:
                while ex_next < t - 1:
                    xi += 1
                    ex_next = ex_bar[xi] if xi < x1 else NO_BAR
                if ev_next != t - 1 and ex_next != t - 1 and not pending and t < min_hold:
                    quiet = True
                    for q in range(n_open):
                        k = olist[q]
                        c = si[k, I_COIN]
                        if not (low[t, c] > sf[k, F_QLO] and high[t, c] < sf[k, F_QHI]):
                            quiet = False
                            break
            if quiet:
                for q in range(n_open):
                    k = olist[q]
                    c = si[k, I_COIN]
                    side = si[k, I_SIDE]
                    size = sf[k, F_SIZE]
                    cl = close[t, c]
                    if cl == cl:
                        last_px[c] = cl
                        if use_funding:
                            amt = side * size * cl * funding[t, c]
                            cash -= amt
                            sf[k, F_FUND] += amt
                    lp = last_px[c]
                    v = size * lp
                    upnl += side * size * (lp - sf[k, F_ENTRY])
                    gross += v
                    seg_coin[c] += v
                eq = cash + upnl
                if not killed and eq <= kill_level:
                    killed = True
                    flat_req = R_KILL
                elif eq <= daily_level and halted_day != d:
                    halted_day = d
                    st[S_HALTS] += 1.0
                    flat_req = R_DAILY
            else:
                # phases: 0 next-open fill, 1 intrabar + funding (+ mark), 2 legacy close fill,
                # 3 mark (legacy) / risk controls / end of segment
                for phase in range(4):
                    nc = 0
                    fill_phase = False
                    ea = ei
                    eb = ei
                    t_dec = t
                    if phase == 0 or phase == 2:
                        if phase == 0:
                            if not (next_open and t > s0):
                                continue
                            t_dec = t - 1
                        elif next_open:
                            continue
                        while ex_next < t_dec:  # exits while flat are never looked at
                            xi += 1
                            ex_next = ex_bar[xi] if xi < x1 else NO_BAR
                        if ev_next != t_dec and not (n_open > 0 and (
                                flat_req > 0 or pending or t >= min_hold or ex_next == t_dec)):
                            continue
                        fill_phase = True
                        while ei < e1 and ev_bar[ei] == t_dec:
                            ei += 1
                        eb = ei
                        ev_next = ev_bar[ei] if ei < e1 else NO_BAR
                        if n_open > 0:
                            if flat_req > 0:
                                for k in range(K):
                                    if si[k, I_COIN] >= 0:
                                        si[k, I_REQ] = flat_req
                            while ex_next == t_dec:
                                k = coin_slot[ex_coin[xi]]
                                if k >= 0 and si[k, I_REQ] == 0:
                                    si[k, I_REQ] = R_SIGNAL
                                xi += 1
                                ex_next = ex_bar[xi] if xi < x1 else NO_BAR
                            for j in range(ea, eb):
                                k = coin_slot[ev_coin[j]]
                                if k >= 0 and si[k, I_REQ] == 0 and ev_dir[j] == -si[k, I_SIDE]:
                                    si[k, I_REQ] = R_SIGNAL
                            for k in range(K):
                                c = si[k, I_COIN]
                                if c < 0:
                                    continue
                                if si[k, I_REQ] == 0 and t >= si[k, I_HOLD_UNTIL]:
                                    si[k, I_REQ] = R_TIME
                                if si[k, I_REQ] > 0:
                                    price = open_[t, c] if phase == 0 else close[t, c]
                                    if price == price:  # else wait for a bar with a price
                                        cr[k] = si[k, I_REQ]
                                        cpx[k] = price * (1.0 - si[k, I_SIDE] * slip)
                                        cop[k] = phase == 0
                                        nc += 1
                        flat_req = 0
                    elif phase == 1:
                        if n_open == 0:
                            continue
                        for q in range(n_open):
                            k = olist[q]
                            c = si[k, I_COIN]
                            side = si[k, I_SIDE]
                            h = high[t, c]
                            lo = low[t, c]
                            if si[k, I_FILLBAR] < t and not (lo > sf[k, F_QLO] and h < sf[k, F_QHI]):
                                o = open_[t, c]
                                if o == o and h == h and lo == lo:
                                    stop = sf[k, F_STOP]
                                    liq = sf[k, F_LIQ]
                                    worst = lo if side > 0 else h
                                    best = h if side > 0 else lo
                                    reason = -1
                                    fill = 0.0
                                    at_open = False
                                    if use_liq and side * (o - liq) <= 0.0:
                                        reason, fill, at_open = R_LIQ, o, True
                                    elif side * (o - stop) <= 0.0:
                                        reason, fill, at_open = si[k, I_KIND], o * (1.0 - side * slip), True
                                    elif (use_liq and side * (worst - liq) <= 0.0
                                          and side * (liq - stop) >= 0.0):
                                        reason, fill = R_LIQ, liq
                                    elif side * (worst - stop) <= 0.0:
                                        reason, fill = si[k, I_KIND], stop * (1.0 - side * slip)
                                    else:
                                        tgt = sf[k, F_TARGET]
                                        part = sf[k, F_PART]
                                        has_tgt = tgt == tgt
                                        if (si[k, I_PARTIAL] == 0 and part == part
                                                and not (has_tgt and side * (tgt - part) <= 0.0)
                                                and side * (best - part) >= 0.0):
                                            level = o if side * (o - part) >= 0.0 else part
                                            pfill = level * (1.0 - side * slip)
                                            size = sf[k, F_SIZE]
                                            qty = min(part_frac * sf[k, F_SIZE0], size)
                                            pgross = side * qty * (pfill - sf[k, F_ENTRY])
                                            pfee = qty * pfill * fee_rate
                                            sf[k, F_MARGIN] *= (size - qty) / size
                                            sf[k, F_SIZE] = size - qty
                                            sf[k, F_PGROSS] += pgross
                                            sf[k, F_FEES] += pfee
                                            sf[k, F_PVAL] += qty * pfill
                                            si[k, I_PARTIAL] = 1
                                            cash += pgross - pfee
                                            if side * (sf[k, F_ENTRY] - stop) > 0.0:  # breakeven, next bar
                                                sf[k, F_STOP] = sf[k, F_ENTRY]
                                                si[k, I_KIND] = R_PARTIAL
                                        if has_tgt and side * (best - tgt) >= 0.0:
                                            at_open = side * (o - tgt) >= 0.0
                                            reason = R_TARGET
                                            fill = (o if at_open else tgt) * (1.0 - side * slip)
                                    if reason >= 0:
                                        cr[k] = reason
                                        cpx[k] = fill
                                        cop[k] = at_open
                                        nc += 1
                                        continue  # closed below: no funding, not marked
                                    if use_trail:  # after the bar's checks: in force from the next bar
                                        b = sf[k, F_BEST]
                                        if side * (best - b) > 0.0:
                                            b = best
                                            sf[k, F_BEST] = b
                                        R = sf[k, F_R]
                                        if side * (b - sf[k, F_ENTRY]) >= trail_start * R:
                                            level = b - side * sf[k, F_TRAILD] * R
                                            if side * (level - sf[k, F_STOP]) > 0.0:
                                                sf[k, F_STOP] = level
                                                si[k, I_KIND] = R_TRAIL
                                    _band(sf, si, k, use_liq, use_trail, trail_start)
                            # funding at the close, last price, and (next-open timing) the mark
                            size = sf[k, F_SIZE]
                            cl = close[t, c]
                            if cl == cl:
                                last_px[c] = cl
                                if use_funding:
                                    amt = side * size * cl * funding[t, c]
                                    cash -= amt
                                    sf[k, F_FUND] += amt
                            if next_open:
                                lp = last_px[c]
                                v = size * lp
                                upnl += side * size * (lp - sf[k, F_ENTRY])
                                gross += v
                                seg_coin[c] += v
                    else:  # phase 3: mark (legacy), risk controls, end of segment
                        if n_open > 0 and not next_open:
                            for q in range(n_open):
                                k = olist[q]
                                c = si[k, I_COIN]
                                lp = last_px[c]
                                v = sf[k, F_SIZE] * lp
                                upnl += si[k, I_SIDE] * sf[k, F_SIZE] * (lp - sf[k, F_ENTRY])
                                gross += v
                                seg_coin[c] += v
                        eq = cash + upnl
                        if t < s1 - 1:
                            if not killed and eq <= kill_level:
                                killed = True
                                flat_req = R_KILL
                            elif eq <= daily_level and halted_day != d:
                                halted_day = d
                                st[S_HALTS] += 1.0
                                flat_req = R_DAILY
                            if n_open == 0:
                                flat_req = 0
                        if n_open > 0 and (t == s1 - 1 or (flat_req > 0 and not next_open)):
                            reason = R_END if t == s1 - 1 else flat_req
                            for q in range(n_open):
                                k = olist[q]
                                cr[k] = reason
                                cpx[k] = last_px[si[k, I_COIN]] * (1.0 - si[k, I_SIDE] * slip)
                                cop[k] = False
                                nc += 1
                            flat_req = 0
                            upnl = 0.0
                    # ---- the closes marked in this phase ---------------------------------------
                    if nc > 0:
                        for k in range(K):
                            reason = cr[k]
                            if reason < 0:
                                continue
                            cr[k] = -1
                            fill = cpx[k]
                            side = si[k, I_SIDE]
                            size = sf[k, F_SIZE]
                            if reason == R_LIQ:
                                xgross = -sf[k, F_MARGIN]
                                st[S_NLIQ] += 1.0
                            else:
                                xgross = side * size * (fill - sf[k, F_ENTRY])
                            xfee = size * fill * fee_rate
                            cash += xgross - xfee
                            fees = sf[k, F_FEES] + xfee
                            fund = sf[k, F_FUND]
                            pnl = sf[k, F_PGROSS] + xgross - fees - fund
                            size0 = sf[k, F_SIZE0]
                            r = pnl / (size0 * sf[k, F_R])
                            st[S_NTRADES] += 1.0
                            if pnl > 0:
                                st[S_WINS] += 1.0
                            st[S_SUMR] += r
                            st[S_FEES] += fees
                            st[S_FUNDING] += fund
                            if n_tr < tcap:
                                row = tbase + n_tr
                                trades[row, T_COIN] = si[k, I_COIN]
                                trades[row, T_SIDE] = side
                                trades[row, T_SIGBAR] = si[k, I_SIGBAR]
                                trades[row, T_ENTRYBAR] = si[k, I_FILLBAR]
                                trades[row, T_EXITBAR] = t
                                trades[row, T_ENTRY] = sf[k, F_ENTRY]
                                trades[row, T_EXIT] = (sf[k, F_PVAL] + size * fill) / size0
                                trades[row, T_SIZE] = size0
                                trades[row, T_NOTIONAL] = sf[k, F_NOTIONAL0]
                                trades[row, T_STOP] = sf[k, F_R]
                                trades[row, T_R] = r
                                trades[row, T_PNL] = pnl
                                trades[row, T_FEES] = fees
                                trades[row, T_FUNDING] = fund
                                trades[row, T_REASON] = reason
                                trades[row, T_PARTIAL] = si[k, I_PARTIAL]
                                trades[row, T_SEG] = g
                                trades[row, T_EXIT_AT_OPEN] = 1.0 if cop[k] else 0.0
                            n_tr += 1
                            coin_slot[si[k, I_COIN]] = -1
                            si[k, I_COIN] = -1
                        n_open -= nc
                        if phase == 3:
                            eq = cash
                    # ---- entries of a fill phase: best score first ------------------------------
                    if (fill_phase and eb > ea and n_open < K and not killed and d != halted_day
                            and t < s1 - (0 if next_open else 1)):
                        n_cand = 0
                        for j in range(ea, eb):
                            c = ev_coin[j]
                            ok = coin_slot[c] < 0 and listed[t_dec, c] and (listed[t, c] or not next_open)
                            if ok:
                                price = open_[t, c] if phase == 0 else close[t, c]
                                ok = price == price and price > 0.0
                            if ok and dedup:
                                sk = ev_setup[j]
                                ok = not (sk != 0 and has_setup[c] and last_setup[c] == sk)
                            cand[j - ea] = ok
                            if ok:
                                n_cand += 1
                        if n_cand > 0:
                            eq_now = cash
                            gross_now = 0.0
                            for k in range(K):
                                c = si[k, I_COIN]
                                if c >= 0:
                                    lp = last_px[c]
                                    eq_now += si[k, I_SIDE] * sf[k, F_SIZE] * (lp - sf[k, F_ENTRY])
                                    gross_now += sf[k, F_SIZE] * lp
                            while eq_now > 0.0 and n_open < K and n_cand > 0:
                                j = -1
                                for jj in range(ea, eb):
                                    if cand[jj - ea] and (j < 0 or ev_score[jj] > ev_score[j]):
                                        j = jj
                                cand[j - ea] = False
                                n_cand -= 1
                                c = ev_coin[j]
                                side = np.int64(ev_dir[j])
                                raw = open_[t, c] if phase == 0 else close[t, c]
                                fill = raw * (1.0 + side * slip)
                                R = ev_stop[j]
                                if sizing == SIZING_RISK:
                                    size = eq_now * risk_frac / R
                                else:
                                    size = eq_now * fraction / (fill * (1.0 + fee_rate))
                                notional = size * fill
                                room = max_gross * eq_now - gross_now
                                if room <= 0.0:
                                    break
                                if notional > room:
                                    notional = room
                                    size = notional / fill
                                k = 0
                                while si[k, I_COIN] >= 0:
                                    k += 1
                                fee = notional * fee_rate
                                cash -= fee
                                gross_now += notional
                                mlev = max_lev[c]
                                margin = notional / min(pos_lev, mlev)
                                sf[k, F_SIZE] = size
                                sf[k, F_SIZE0] = size
                                sf[k, F_ENTRY] = fill
                                sf[k, F_R] = R
                                sf[k, F_STOP] = fill - side * R
                                tgt = ev_target[j]
                                sf[k, F_TARGET] = fill + side * tgt * R if tgt == tgt else np.nan
                                sf[k, F_PART] = fill + side * part_r * R if use_partial else np.nan
                                sf[k, F_BEST] = fill
                                tr = ev_trail[j]
                                sf[k, F_TRAILD] = tr if tr == tr else trail_dist
                                if use_liq:
                                    mrate = 0.5 / mlev
                                    sf[k, F_LIQ] = fill - side * (margin - mrate * notional) / size / (
                                        1.0 - mrate * side)
                                else:
                                    sf[k, F_LIQ] = np.nan
                                sf[k, F_MARGIN] = margin
                                sf[k, F_FEES] = fee
                                sf[k, F_FUND] = 0.0
                                sf[k, F_PGROSS] = 0.0
                                sf[k, F_PVAL] = 0.0
                                sf[k, F_NOTIONAL0] = notional
                                si[k, I_COIN] = c
                                si[k, I_SIDE] = side
                                si[k, I_SIGBAR] = t_dec
                                si[k, I_FILLBAR] = t
                                hold = ev_hold[j]
                                si[k, I_HOLD_UNTIL] = t + hold if hold > 0 else NO_BAR
                                si[k, I_KIND] = R_STOP
                                si[k, I_REQ] = 0
                                si[k, I_PARTIAL] = 0
                                _band(sf, si, k, use_liq, use_trail, trail_start)
                                coin_slot[c] = k
                                last_px[c] = raw
                                if dedup and ev_setup[j] != 0:
                                    last_setup[c] = ev_setup[j]
                                    has_setup[c] = True
                                n_open += 1
                    if nc > 0 or fill_phase:
                        pending = False
                        min_hold = NO_BAR
                        q = 0
                        for k in range(K):
                            if si[k, I_COIN] >= 0:
                                olist[q] = k
                                q += 1
                                pending |= si[k, I_REQ] > 0
                                min_hold = min(min_hold, si[k, I_HOLD_UNTIL])
            # ---- metrics at the close ------------------------------------------------------
            if gross > 0.0 and eq > 0.0:
                expo_acc += gross / eq
            if eq > peak:
                peak = eq
                kill_level = peak * (1.0 - kill)
            elif eq < peak * (1.0 - mdd):
                mdd = 1.0 - eq / peak
            if g > 0:  # segment 0 is its own chained path (chain == 1)
                ceq = chain * eq
                if ceq > chain_peak:
                    chain_peak = ceq
                elif ceq < chain_peak * (1.0 - chain_mdd):
                    chain_mdd = 1.0 - ceq / chain_peak
            if record_eq:
                eq_out[p, eqc] = eq
                eqc += 1
            prev_eq = eq
            t += 1
        day_eq[p, slot0 + cur_day - day0] = eq
        st[S_BARS] = s1 - s0
        st[S_EXPO] = expo_acc
        st[S_FINAL] = eq
        st[S_MAXDD] = mdd
        st[S_KILLED] = 1.0 if killed else 0.0
        total = seg_coin.sum()
        hhi = 1.0
        if total > 0.0:
            hhi = 0.0
            for c in range(n_coins):
                share = seg_coin[c] / total
                hhi += share * share
                coin_expo[p, c] += seg_coin[c]
        st[S_HHI] = hhi
        if g == 0:
            chain_peak = peak
            chain_mdd = mdd
        chain *= eq / init
    chain_dd[p] = chain_mdd
    return n_tr


@njit(cache=True, parallel=True, error_model="numpy")
def simulate_nb(open_, high, low, close, funding, listed, bar_day, max_lev,
                seg_start, seg_stop, seg_slot0,
                ev_ptr, ev_bar, ev_coin, ev_dir, ev_stop, ev_target, ev_score, ev_setup, ev_hold,
                ev_trail, ex_ptr, ex_bar, ex_coin, prm, trade_ptr, trades, n_trades,
                seg_stats, coin_expo, day_eq, eq_out, chain_dd):
    """Run every parameter set p (events ev_*[ev_ptr[p]:ev_ptr[p+1]]) in parallel.

    Market arrays are (n_bars, n_coins); events are the non-zero cells of each set's
    Signals.direction sorted by (bar, coin), exits the True cells of Signals.exit. Outputs are
    written in place; n_trades[p] may exceed the set's buffer (trade_ptr) and then the caller
    reruns that set with a bigger one.
    """
    n_sets = ev_ptr.shape[0] - 1
    for p in prange(n_sets):
        n_trades[p] = _run_set(
            p, open_, high, low, close, funding, listed, bar_day, max_lev,
            seg_start, seg_stop, seg_slot0,
            ev_bar, ev_coin, ev_dir, ev_stop, ev_target, ev_score, ev_setup, ev_hold, ev_trail,
            ev_ptr[p], ev_ptr[p + 1], ex_bar, ex_coin, ex_ptr[p], ex_ptr[p + 1], prm,
            trades, trade_ptr[p], trade_ptr[p + 1] - trade_ptr[p], seg_stats, coin_expo, day_eq,
            eq_out, chain_dd,
        )



@njit(cache=True, parallel=True)
def nonzero_rows_nb(stacked):
    """(row, column, value, row offsets) of the non-zero cells of a (rows, cols) array.

    The event extraction of `simulate` over many parameter sets: two parallel passes (count,
    then fill) instead of numpy's single-threaded nonzero + divmod + bincount.
    """
    n_rows, n_cols = stacked.shape
    counts = np.zeros(n_rows, dtype=np.int64)
    for r in prange(n_rows):
        c = 0
        for j in range(n_cols):
            if stacked[r, j] != 0:
                c += 1
        counts[r] = c
    ptr = np.zeros(n_rows + 1, dtype=np.int64)
    for r in range(n_rows):
        ptr[r + 1] = ptr[r] + counts[r]
    rows = np.empty(ptr[-1], dtype=np.int64)
    cols = np.empty(ptr[-1], dtype=np.int64)
    values = np.empty(ptr[-1], dtype=stacked.dtype)
    for r in prange(n_rows):
        k = ptr[r]
        for j in range(n_cols):
            v = stacked[r, j]
            if v != 0:
                rows[k] = r
                cols[k] = j
                values[k] = v
                k += 1
    return rows, cols, values, ptr
