"""The portfolio kernel: plain arrays in, plain arrays out, one parameter set per prange lane.

Semantics (DESIGN section 5; the paper executor reads this kernel's output, never a copy of it):

Timing
- A signal is decided at the close of bar t and filled at the OPEN of t+1 with slippage against
  you; the legacy model fills at the close of t with no costs.
- An entry needs the coin listed with a price at t and t+1 and no open position on that coin (one
  position per coin per set). An opposite signal closes the open position at the next open
  (reason signal) and may open the new one at that same open. `exit[t]` closes at the open of
  t+1 (signal). `hold` > 0 is a time stop: close at the open of entry_bar + hold (time). A close
  that cannot fill because the coin has no price on that bar waits for the next bar that has one.

Inside a bar (levels: stop, liquidation and backstop prices (adverse), partial and target
(favourable); a position's path through bar t is open -> adverse extreme -> favourable
extreme -> close, i.e. low before high for a long, high before low for a short)
1. The open. For every position opened before t: a bar opening beyond a level fills at the open,
   adverse first: beyond the backstop price (backstop liquidation: the whole isolated margin is
   lost, no fill), beyond the liquidation price (market liquidation at the open), beyond the stop
   (at the open, worse than the stop), beyond the target (at the open, better than it); beyond
   the partial level only, the partial fills at the open and the rest of the bar continues with
   the stop at breakeven. Then the requested closes (signal, time, kill switch) fill at the open.
   Then entries fill at the open (below).
2. The range, for every open position INCLUDING those filled at this open (the open is the bar's
   first trade: after a next-open fill the whole range comes after it, so the fill bar counts and
   a trade with hold = 1 can be stopped in its one bar; a legacy close fill starts on the next
   bar): moving to the adverse extreme, the nearer of stop and liquidation price is taken at its
   level when reached (a market liquidation: at the liquidation price with slippage and fee, the
   collateral left in the isolated margin stays with the trader); then moving to the favourable
   extreme, the partial (partial_frac of the entry size; the stop moves to breakeven, the entry
   fill price) then the target, at their levels, and the best price follows (trailing: once the
   best is trail_start_r R in profit the stop becomes best - trail R, never lowered); then moving
   to the close, a stop raised on the way (breakeven, trailing) is taken at its level if the
   close is beyond it (the close is the last trade, so that crossing is certain).
   So a range reaching a stop and a target takes the stop (adverse first, conservative).
3. Intrabar detail (detail arrays given): a bar whose outcome depends on the order inside it (its
   range reaches an adverse and a favourable level, or a stop raised on the way lies inside its
   range) is walked through its lower-timeframe bars instead, each with steps 1-2 (the first one
   without step 1: its open is the bar's open), levels and the best price updated per detail
   bar. Where any of its detail bars is missing the bar falls back to step 2 (counted).
4. The close: funding, the mark, risk controls (below).

Exit reasons: the stop as `stop`, `partial` (at breakeven after the partial) or `trail` (raised by
trailing), `target`, `signal`, `time`, `liquidation`, `backstop`, `kill_switch`, `end_of_data`.
Every fill pays fee * notional and slippage against you; a backstop liquidation pays neither (its
loss is the margin), and no isolated position (liquidation on) loses more than its margin.

Slippage: flat (P_SLIP, fee stress included), or per coin and per fill (friction v5): half the
estimated spread plus impact_coef * sqrt(fill notional), both as known at the close of the bar
BEFORE the fill bar, clipped to [floor, cap], times the fee stress; the flat rate where the
estimate is unknown (counted).

Entries at a fill step compete for free slots (max_positions) and for the gross cap: the highest
score first, ties by coin order. Sizing "risk": size = equity * risk_fraction / stop (notional =
equity * risk_fraction / (stop / entry)); "fraction": notional * (1 + fee) = equity * fraction,
vectorbt's SizeType.Percent. Equity is cash plus open positions marked at their last close. The
notional is then cut so that gross notional <= max_leverage * equity (room left below a
billionth of the cap is no room: no dust positions). Per-coin slippage is priced on the intended
notional (at the raw open, after the cap). Every signal gets a fill status (FILL_STATUS):
filled, or why not.

Liquidation (isolated margin, on with P_LIQ): margin = notional / lev, lev = min(position_leverage,
coin max), maintenance rate l = 0.5 / coin max; liquidation price where the position's equity is
l x its notional, backstop price where it is 2/3 of that (harness.margin.threshold_price).

Funding: funding[t] holds the records stamped in (open, close] of bar t (a record stamped H pays
for the hour ending at H); at the close of t every position open then pays side * size * close *
funding[t] (a long pays a positive rate; a bar without a candle pays at the last known close).
Hyperliquid's rate is per hour: never divided by 8.

v3 de-duplication: per coin, a signal whose setup key equals the key of the position last opened
on that coin is skipped (setup key 0: no key, never de-duplicated).

Risk controls at each bar close on marked equity: equity <= peak * (1 - kill_drawdown) flattens at
the next open (legacy: at this close) and halts entries for the rest of the segment
(kill_switch); equity <= the UTC day's starting equity * (1 - daily_loss_halt) is a SOFT halt: no
entry fills on that UTC day any more, while open positions keep their stops, targets, partial and
trailing.

Segments [start, stop) are independent runs from initial equity; entries only inside; every
position still open is closed at the close of the segment's last bar (end_of_data), at its last
known close if the coin has no price there.

Outputs: per-segment stats (final equity, max drawdown, trades, wins, sum of R, fees, funding,
time-averaged gross notional / equity, liquidations, kill, halts, HHI of the per-coin sums of
notional held at bar closes, slippage paid, backstops, detail walks and fallbacks, slippage
fallbacks), those per-coin sums, the equity at the end of each UTC day (by bar open time; a day
without bars carries the equity), optional per-bar equity, the drawdown of the chained segments
(segment k compounding on k-1), each signal's fill status, and closed trades with every fill
(entry, partial, exit: bar, price, quantity, fee, slippage). A trade buffer that is too small keeps
counting, so the caller can grow it and rerun: trades are never dropped silently.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from harness import kernel_layout as L
from harness.book_nb import close_slot, enter, fill_requests, mark_requests, open_list
from harness.fills_nb import INLINE, band, bar_outcome


@njit(**INLINE)
def _fund_and_mark(sf, si, olist, n_open, t, close, funding, last_px, seg_coin, cash, use_funding):
    """At the close: funding on every open position, its last price, the mark.
    Returns (cash, unrealized pnl, gross notional)."""
    upnl = 0.0
    gross = 0.0
    for q in range(n_open):
        k = olist[q]
        c = si[k, L.I_COIN]
        side = si[k, L.I_SIDE]
        size = sf[k, L.F_SIZE]
        cl = close[t, c]
        if cl == cl:
            last_px[c] = cl
        lp = last_px[c]
        if use_funding:  # a bar without a candle still pays its hour, at the last close
            amt = side * size * lp * funding[t, c]
            cash -= amt
            sf[k, L.F_FUND] += amt
        v = size * lp
        upnl += side * size * (lp - sf[k, L.F_ENTRY])
        gross += v
        seg_coin[c] += v
    return cash, upnl, gross


@njit(**INLINE)
def _quiet_open(sf, si, olist, n_open, open_, t, flat_req, ev_bar, ei, e1, ex_bar, xi, x1, t_dec):
    """Whether the fill step at this open has nothing to do: no kill-switch flatten, no signal
    or exit of bar t_dec, no time stop due, and every position opens inside its quiet band (so
    no level lies at or beyond the open). Most bars are such; skipping them changes nothing."""
    if flat_req > 0 or (ei < e1 and ev_bar[ei] <= t_dec) or (xi < x1 and ex_bar[xi] <= t_dec):
        return False
    for q in range(n_open):
        k = olist[q]
        o = open_[t, si[k, L.I_COIN]]
        if not (sf[k, L.F_QLO] < o < sf[k, L.F_QHI]) or si[k, L.I_REQ] > 0 \
                or t >= si[k, L.I_HOLD_UNTIL]:
            return False
    return True


@njit(cache=True, error_model="numpy")
def _run_set(p, open_, high, low, close, funding, listed, bar_day, max_lev, half_spread, impact,
             do_, dh, dl, dc, ratio, seg_start, seg_stop, seg_slot0,
             ev_bar, ev_coin, ev_dir, ev_stop, ev_target, ev_score, ev_setup, ev_hold, ev_trail,
             e0, e1, ex_bar, ex_coin, x0, x1, prm, ev_status,
             trades, tbase, tcap, seg_stats, coin_expo, day_eq, eq_out, chain_dd):
    """One parameter set over all segments (the module docstring is the spec). A bar is: the
    fill step at its open (next-open frictions), the range of every open position, the fill step
    at its close (legacy), then the close (funding, mark, metrics, risk controls)."""
    n_coins = open_.shape[1]
    K = int(prm[L.P_MAXPOS])
    init = prm[L.P_INIT]
    daily = prm[L.P_DAILY]
    kill = prm[L.P_KILL]
    use_funding = prm[L.P_FUNDING] > 0
    next_open = prm[L.P_NEXT_OPEN] > 0
    use_trail = prm[L.P_TRAIL] > 0
    use_liq = prm[L.P_LIQ] > 0
    trail_start = prm[L.P_TRAIL_START]
    record_eq = eq_out.shape[1] > 0

    sf = np.zeros((K, L.NSF))
    si = np.full((K, L.NSI), -1, dtype=np.int64)
    olist = np.zeros(K, dtype=np.int64)  # the open slots, n_open of them
    coin_slot = np.full(n_coins, -1, dtype=np.int64)
    last_px = np.full(n_coins, np.nan)
    last_setup = np.zeros(n_coins, dtype=np.int64)
    has_setup = np.zeros(n_coins, dtype=np.bool_)
    cand = np.zeros(n_coins, dtype=np.bool_)
    seg_coin = np.zeros(n_coins)
    n_tr = 0
    ev_status[e0:e1] = L.ST_OUTSIDE

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
            si[k, L.I_COIN] = -1
        coin_slot[:] = -1
        has_setup[:] = False
        seg_coin[:] = 0.0
        n_open = 0
        peak = init
        mdd = 0.0
        kill_level = peak * (1.0 - kill)
        day0 = bar_day[s0]
        cur_day = day0
        daily_level = init * (1.0 - daily)
        halted_day = -L.NO_BAR
        killed = False
        flat_req = 0
        prev_eq = init
        eg0 = e0 + np.searchsorted(ev_bar[e0:e1], s0)
        eg1 = e0 + np.searchsorted(ev_bar[e0:e1], s1)
        ei = eg0
        xi = x0 + np.searchsorted(ex_bar[x0:x1], s0)
        slot0 = seg_slot0[g]
        eq = init
        expo_acc = 0.0
        t = s0
        while t < s1:
            # ---- flat: jump to the next bar where something can happen ------------------------
            if n_open == 0 and flat_req == 0:
                nxt = s1 - 1
                if not killed and ei < e1:
                    nxt = min(nxt, ev_bar[ei] + 1 if next_open else ev_bar[ei])
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
            for phase in range(3):  # 0: fill step at the open, 1: the range, 2: at the close
                if phase == 1:
                    closed = False
                    for q in range(n_open):
                        k = olist[q]
                        c = si[k, L.I_COIN]
                        o, lo, hi = open_[t, c], low[t, c], high[t, c]
                        if not (o == o and lo == lo and hi == hi):
                            continue
                        if next_open and sf[k, L.F_QLO] < lo and hi < sf[k, L.F_QHI]:
                            continue  # a quiet bar (the open was the fill step's): nothing moves
                        reason, level, gap, got, sub = bar_outcome(
                            sf, si, k, c, t, o, lo, hi, close[t, c], not next_open, ratio, do_, dh,
                            dl, dc, use_liq, use_trail, trail_start, prm, half_spread, impact, st)
                        cash += got
                        if reason >= 0:
                            si[k, L.I_EXIT_SUB] = sub
                            cash = close_slot(sf, si, k, reason, level, gap, t, g, cash, prm,
                                              half_spread, impact, st, trades, tbase, tcap, n_tr,
                                              coin_slot)
                            n_tr += 1
                            closed = True
                        else:
                            band(sf, si, k, use_liq, use_trail, trail_start)
                    if closed:
                        n_open = open_list(si, olist, K)
                    continue
                at_the_open = phase == 0
                if at_the_open != next_open or (at_the_open and t == s0):
                    continue
                t_dec = t - 1 if at_the_open else t
                if at_the_open and _quiet_open(sf, si, olist, n_open, open_, t, flat_req, ev_bar,
                                               ei, e1, ex_bar, xi, x1, t_dec):
                    continue
                px = open_ if at_the_open else close
                ea, ei, xi = mark_requests(si, coin_slot, olist, n_open, flat_req, t_dec, ex_bar,
                                           ex_coin, xi, x1, ev_bar, ev_coin, ev_dir, ei, e1)
                flat_req = 0
                cash, n_tr = fill_requests(sf, si, olist, n_open, px, t, g, at_the_open, use_liq,
                                           use_trail, trail_start, cash, prm, half_spread, impact,
                                           st, trades, tbase, tcap, n_tr, coin_slot)
                n_open = open_list(si, olist, K)
                if ei > ea:
                    blocked = -1
                    if killed:
                        blocked = L.ST_KILL
                    elif d == halted_day:
                        blocked = L.ST_HALT
                    elif not at_the_open and t >= s1 - 1:
                        blocked = L.ST_END  # a legacy fill at the last close would close at once
                    cash, n_open = enter(sf, si, olist, n_open, coin_slot, last_px, last_setup,
                                         has_setup, cand, px, listed, max_lev, t, t_dec, ea, ei,
                                         blocked, cash, prm, half_spread, impact, st, ev_coin,
                                         ev_dir, ev_stop, ev_target, ev_score, ev_setup, ev_hold,
                                         ev_trail, ev_status)
            # ---- the close: funding, the mark, risk controls, metrics --------------------------
            cash, upnl, gross = _fund_and_mark(sf, si, olist, n_open, t, close, funding, last_px,
                                               seg_coin, cash, use_funding)
            eq = cash + upnl
            flatten = -1
            if t == s1 - 1:
                flatten = L.R_END
            elif not killed and eq <= kill_level:
                killed = True
                if next_open:
                    flat_req = L.R_KILL if n_open > 0 else 0
                else:
                    flatten = L.R_KILL  # legacy flattens at this close
            elif eq <= daily_level and halted_day != d:
                halted_day = d  # soft: no entry fills on this UTC day any more
                st[L.S_HALTS] += 1.0
            if flatten >= 0 and n_open > 0:
                for q in range(n_open):
                    k = olist[q]
                    cash = close_slot(sf, si, k, flatten, last_px[si[k, L.I_COIN]], False, t, g,
                                      cash, prm, half_spread, impact, st, trades, tbase, tcap,
                                      n_tr, coin_slot)
                    n_tr += 1
                n_open = 0
                eq = cash
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
        for j in range(eg0, eg1):  # signals never looked at: after the kill, or no bar to fill
            if ev_status[j] == L.ST_OUTSIDE:
                ev_status[j] = L.ST_KILL if killed else L.ST_END
        day_eq[p, slot0 + cur_day - day0] = eq
        st[L.S_BARS] = s1 - s0
        st[L.S_EXPO] = expo_acc
        st[L.S_FINAL] = eq
        st[L.S_MAXDD] = mdd
        st[L.S_KILLED] = 1.0 if killed else 0.0
        total = seg_coin.sum()
        hhi = 1.0
        if total > 0.0:
            hhi = 0.0
            for c in range(n_coins):
                share = seg_coin[c] / total
                hhi += share * share
                coin_expo[p, c] += seg_coin[c]
        st[L.S_HHI] = hhi
        if g == 0:
            chain_peak = peak
            chain_mdd = mdd
        chain *= eq / init
    chain_dd[p] = chain_mdd
    return n_tr


@njit(cache=True, parallel=True, error_model="numpy")
def simulate_nb(open_, high, low, close, funding, listed, bar_day, max_lev, half_spread, impact,
                do_, dh, dl, dc, ratio, seg_start, seg_stop, seg_slot0,
                ev_ptr, ev_bar, ev_coin, ev_dir, ev_stop, ev_target, ev_score, ev_setup, ev_hold,
                ev_trail, ex_ptr, ex_bar, ex_coin, prm, ev_status, trade_ptr, trades, n_trades,
                seg_stats, coin_expo, day_eq, eq_out, chain_dd):
    """Run every parameter set p (events ev_*[ev_ptr[p]:ev_ptr[p+1]]) in parallel.

    Market arrays are (n_bars, n_coins); half_spread and impact are friction v5's per-coin cost
    estimates (any shape when the slippage is flat); do_/dh/dl/dc the detail bars, row
    t * ratio + j for detail bar j of bar t (ratio 0: no detail). Events are the non-zero cells of
    each set's Signals.direction sorted by (bar, coin), exits the True cells of Signals.exit.
    Outputs are written in place; n_trades[p] may exceed the set's buffer (trade_ptr) and then the
    caller reruns that set with a bigger one.
    """
    n_sets = ev_ptr.shape[0] - 1
    for p in prange(n_sets):
        n_trades[p] = _run_set(
            p, open_, high, low, close, funding, listed, bar_day, max_lev, half_spread, impact,
            do_, dh, dl, dc, ratio, seg_start, seg_stop, seg_slot0,
            ev_bar, ev_coin, ev_dir, ev_stop, ev_target, ev_score, ev_setup, ev_hold, ev_trail,
            ev_ptr[p], ev_ptr[p + 1], ex_bar, ex_coin, ex_ptr[p], ex_ptr[p + 1], prm, ev_status,
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
