"""Forward-window regime labels chop / trend / reversal, for TRAINING and SCORING only.

Definition (horizon h = 24 bars, barrier theta per coin):

    The label of bar t is read from bars t+1 .. t+h and from nothing else. Anchor
    a = log open[t+1] (the price the harness would fill a decision taken at the close of t).
    Barriers at a + theta and a - theta; a barrier is touched when a bar's log high (low)
    reaches it. Let net = log close[t+h] - a.

    - chop      neither barrier is touched within the h bars, or one is touched and the
                window ends on its side but less than theta beyond the anchor (the move faded);
    - trend     exactly one barrier is touched and the window ends at least theta beyond the
                anchor on that side (keep_frac * theta; keep_frac = 1 by default);
    - reversal  both barriers are touched (in any order, or within one bar), or one is touched
                and the window ends back on the other side of the anchor (net against it <= 0).

    theta = barrier_frac * median over the TRAIN bars of the forward h-bar log range
    (max log high - min log low over t+1..t+h), one constant per coin fitted by
    `fit_barriers` on the training market and then frozen (it is a label parameter, recorded in
    checkpoints). Windows with a missing bar, or reaching past the end of the market, are
    UNKNOWN (-1): so labels computed on a train window never read past its last bar.

A model's input at t never contains bars after t (features.py); these labels do, which is why
they are targets only and never features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from harness.errors import ConfigError
from harness.market import Market

CLASSES = ("chop", "trend", "reversal")
CHOP, TREND, REVERSAL = 0, 1, 2
UNKNOWN = -1


@dataclass(frozen=True)
class LabelSpec:
    horizon: int = 24
    barrier_frac: float = 0.4
    keep_frac: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.horizon, int) or self.horizon < 2:
            raise ConfigError(f"LabelSpec.horizon must be an integer >= 2, got {self.horizon!r}")
        if not self.barrier_frac > 0 or not self.keep_frac > 0:
            raise ConfigError("LabelSpec.barrier_frac and keep_frac must be > 0")

    def describe(self) -> str:
        return (f"forward {self.horizon}-bar window t+1..t+{self.horizon}, anchor log open[t+1], "
                f"barriers +-theta with theta = {self.barrier_frac} x train median forward range; "
                f"trend: one barrier touched and close[t+h] >= {self.keep_frac} theta beyond the "
                "anchor on its side; reversal: both touched, or one touched and close[t+h] back "
                "across the anchor; chop: otherwise")


def _windows(market: Market, h: int) -> tuple[np.ndarray, ...]:
    """Log (high, low) windows over t+1..t+h relative to log open[t+1], and net; (n-h, h, m)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lo_, hi_, cl_, op_ = (np.log(np.where(a > 0, a, np.nan)) for a in
                              (market.low, market.high, market.close, market.open))
    n = market.n_bars - h
    if n <= 0:
        shape = (0, h, market.n_coins)
        return np.empty(shape), np.empty(shape), np.empty((0, market.n_coins))
    anchor = op_[1:n + 1][:, None, :]
    hi = sliding_window_view(hi_[1:], h, axis=0)[:n].transpose(0, 2, 1) - anchor
    lo = sliding_window_view(lo_[1:], h, axis=0)[:n].transpose(0, 2, 1) - anchor
    net = cl_[h:h + n] - anchor[:, 0, :]
    return hi, lo, net


def forward_range(market: Market, horizon: int) -> np.ndarray:
    """(n_bars, n_coins) log range of bars t+1..t+h; NaN where the window is incomplete."""
    hi, lo, _ = _windows(market, horizon)
    out = np.full((market.n_bars, market.n_coins), np.nan)
    out[: hi.shape[0]] = hi.max(axis=1) - lo.min(axis=1)  # NaN anywhere -> NaN
    return out


def fit_barriers(market: Market, spec: LabelSpec = LabelSpec()) -> np.ndarray:
    """theta per coin from the market given (pass the TRAIN window): (n_coins,)."""
    rng = forward_range(market, spec.horizon)
    theta = np.full(market.n_coins, np.nan)
    for c in range(market.n_coins):
        v = rng[:, c][np.isfinite(rng[:, c])]
        if v.size:
            theta[c] = spec.barrier_frac * float(np.median(v))
    return theta


def forward_labels(market: Market, theta: np.ndarray, spec: LabelSpec = LabelSpec()) -> np.ndarray:
    """(n_bars, n_coins) int8 codes into CLASSES, UNKNOWN where the window is incomplete."""
    theta = np.asarray(theta, dtype=np.float64)
    if theta.shape != (market.n_coins,):
        raise ConfigError(f"forward_labels: theta has shape {theta.shape}, expected ({market.n_coins},): "
                          "one barrier per coin, from fit_barriers on the same coins")
    h = spec.horizon
    out = np.full((market.n_bars, market.n_coins), UNKNOWN, dtype=np.int8)
    hi, lo, net = _windows(market, h)
    if hi.shape[0] == 0:
        return out
    up = hi >= theta
    dn = lo <= -theta
    k_up = np.where(up.any(axis=1), up.argmax(axis=1), h)
    k_dn = np.where(dn.any(axis=1), dn.argmax(axis=1), h)
    both = (k_up < h) & (k_dn < h)
    side = np.where(k_up < h, 1.0, np.where(k_dn < h, -1.0, 0.0))
    kept = side * net
    lab = np.full(net.shape, CHOP, dtype=np.int8)
    lab[(side != 0) & ~both & (kept >= spec.keep_frac * theta)] = TREND
    lab[both | ((side != 0) & (kept <= 0))] = REVERSAL
    complete = (np.isfinite(hi).all(axis=1) & np.isfinite(lo).all(axis=1) & np.isfinite(net)
                & np.isfinite(theta))
    out[: net.shape[0]] = np.where(complete, lab, UNKNOWN)
    return out
