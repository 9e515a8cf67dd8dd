"""Numba kernel of the causal HMM forward filter (plain arrays in and out)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def forward_filter_nb(log_emission, startprob, transmat):
    """P(state_t | x_0..x_t) for t = 0..n-1: the forward recursion, normalized at every step.

    log_emission (n, K): log p(x_t | state); a row with a NaN is a missing observation: the
    belief is carried by the transition alone and the output row is NaN. Nothing at t reads a
    row after t, so the filter is causal by construction (no backward pass, no Viterbi).
    """
    n, k = log_emission.shape
    out = np.full((n, k), np.nan)
    belief = startprob.copy()
    prior = np.empty(k)
    started = False
    for t in range(n):
        if started:
            for j in range(k):
                s = 0.0
                for i in range(k):
                    s += belief[i] * transmat[i, j]
                prior[j] = s
        else:
            prior[:] = startprob
        observed = True
        for j in range(k):
            if not np.isfinite(log_emission[t, j]):
                observed = False
        if not observed:
            if started:  # before the first observation the belief stays at startprob
                belief[:] = prior
            continue
        m = -np.inf
        for j in range(k):
            if log_emission[t, j] > m:
                m = log_emission[t, j]
        total = 0.0
        for j in range(k):
            belief[j] = prior[j] * np.exp(log_emission[t, j] - m)
            total += belief[j]
        if total > 0.0:
            for j in range(k):
                belief[j] /= total
        else:  # every state's prior is 0 where the data points: fall back to the likelihood
            total = 0.0
            for j in range(k):
                belief[j] = np.exp(log_emission[t, j] - m)
                total += belief[j]
            for j in range(k):
                belief[j] /= total
        started = True
        for j in range(k):
            out[t, j] = belief[j]
    return out
