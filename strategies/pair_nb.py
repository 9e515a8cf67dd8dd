"""Numba kernel behind strategies/pairflow.py: which pair trades hold which coins, bar by bar."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def pair_book(z, legs, n_coins, z_entry, z_exit, max_hold):
    """Open and close pair trades from spread z-scores, decided at each bar's close.

    z (n_bars, n_pairs): z-score of log(A) - log(B) per pair, NaN where unknown; legs
    (n_pairs, 2): the coin indices of A and B. At each bar:
    1. an open pair that has been held `max_hold` bars is freed (the harness's time stop closes
       its legs at the next open); one whose z came back inside the band (side * z < z_exit,
       side = the sign of z at entry) closes: `exit` on both legs;
    2. flat pairs with |z| > z_entry open, the largest |z| first, when neither leg is held by
       another open pair (a coin holds one position): z > 0 means A is rich, so A short, B long;
    3. every open pair holds its direction on both legs.
    Returns direction (n_bars, n_coins) int8, exit bool, and origin (the bar the pair holding
    the coin opened, -1 where none) and pair (its index, -1 where none), both int64.
    """
    n_bars, n_pairs = z.shape
    direction = np.zeros((n_bars, n_coins), dtype=np.int8)
    exit_ = np.zeros((n_bars, n_coins), dtype=np.bool_)
    origin = np.full((n_bars, n_coins), -1, dtype=np.int64)
    pair = np.full((n_bars, n_coins), -1, dtype=np.int64)
    side = np.zeros(n_pairs, dtype=np.int64)
    opened = np.zeros(n_pairs, dtype=np.int64)
    busy = np.zeros(n_coins, dtype=np.bool_)
    for t in range(n_bars):
        for q in range(n_pairs):
            if side[q] == 0:
                continue
            a, b = legs[q, 0], legs[q, 1]
            zt = z[t, q]
            if t - opened[q] >= max_hold or (zt == zt and side[q] * zt < z_exit):
                if t - opened[q] < max_hold:
                    exit_[t, a] = exit_[t, b] = True
                side[q] = 0
                busy[a] = busy[b] = False
        while True:
            best, best_abs = -1, z_entry
            for q in range(n_pairs):
                zt = z[t, q]
                if side[q] == 0 and abs(zt) > best_abs and not busy[legs[q, 0]] and not busy[legs[q, 1]]:
                    best, best_abs = q, abs(zt)
            if best < 0:
                break
            side[best] = 1 if z[t, best] > 0 else -1
            opened[best] = t
            busy[legs[best, 0]] = busy[legs[best, 1]] = True
        for q in range(n_pairs):
            if side[q] != 0:
                a, b = legs[q, 0], legs[q, 1]
                direction[t, a], direction[t, b] = -side[q], side[q]
                origin[t, a] = origin[t, b] = opened[q]
                pair[t, a] = pair[t, b] = q
    return direction, exit_, origin, pair
