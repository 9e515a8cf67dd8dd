"""Filters shared by every strategy (DESIGN section 4): 200-MA gate, trend efficiency, funding,
minimum open interest, order-book imbalance, a liquidation-safe stop width, and a minimum
reward-to-risk.

Each returns an `allowed` bool mask of shape (n_bars, n_coins) (and, where it grades rather than
gates, a score multiplier). `direction` is a (n_bars, n_coins) array of -1/0/+1 or a scalar +1/-1;
bars with direction 0 are always allowed. A filter rejects only on evidence: where its input is
unknown (indicator warm-up, no recorded open interest or book) it passes, with multiplier 1.

Inside `recording()` every filter also appends its verdict (a `Verdict`), so a caller can show
which filter passed or blocked what from the very masks `generate` combined (`sweep signals`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np

from harness.market import Market
from strategies.indicators import sma, trend_efficiency

# The issue states funding thresholds per 8 hours (the seed bot's convention); Hyperliquid's
# rate, and Market.funding, is per HOUR. This is the one place the conversion happens.
FUNDING_HOURS_PER_QUOTE = 8
HEADWIND_CAP_8H = 0.0005  # 0.05% per 8h: a position paying more than this is rejected
TAILWIND_FLOOR_8H = 0.0001  # 0.01% per 8h: a position receiving at least this gets a bonus
HEADWIND_CAP = HEADWIND_CAP_8H / FUNDING_HOURS_PER_QUOTE
TAILWIND_FLOOR = TAILWIND_FLOOR_8H / FUNDING_HOURS_PER_QUOTE

# The harness trades each position at 10x isolated (SimConfig.position_leverage), and a coin with
# 10x max leverage keeps a 5% maintenance margin, so its liquidation price sits about 1/10 - 0.05
# = 5% from the entry: a stop wider than that is never reached, the margin is lost first.
# 4% keeps the stop inside it with room for slippage and fees.
MAX_STOP_FRAC = 0.04

# The ten-strategy paper system's risk rule: no trade whose target is less than twice its risk.
# (Its other rule, at most 3 concurrent positions, is the kernel's SimConfig.max_positions.)
MIN_REWARD_RISK = 2.0

MA_GATE_WINDOW, MA_GATE_TOL = 200, 0.02
EFFICIENCY_REJECT, EFFICIENCY_BOOST = 0.30, 0.70  # below: chop, rejected; above: boosted


GATES = {"ma200": "200-MA", "efficiency": "efficiency", "oi": "OI", "funding": "funding",
         "obi": "book imbalance", "stop_width": "stop width"}  # verdict name -> label


@dataclass(frozen=True, eq=False)
class Verdict:
    """One filter call's answer, arrays as the filter returned them (rows of its input)."""

    gate: str  # a GATES key
    allowed: np.ndarray  # bool
    side: np.ndarray | None  # the sides it judged (-1/0/+1); None: it does not depend on side
    known: np.ndarray | None  # where its input existed (elsewhere it passes by rule)
    boost: np.ndarray | None  # the score multiplier it granted, where it grades


_VERDICTS: ContextVar[list[Verdict] | None] = ContextVar("filter_verdicts", default=None)


@contextmanager
def recording() -> Iterator[list[Verdict]]:
    """Collect the verdict of every filter called inside the block, in call order."""
    token = _VERDICTS.set([])
    try:
        yield _VERDICTS.get()
    finally:
        _VERDICTS.reset(token)


def _record(gate: str, allowed: np.ndarray, side: np.ndarray | None = None,
            known: Callable[[], np.ndarray] | None = None, boost: np.ndarray | None = None) -> None:
    """Append a verdict when recording; `known` is computed only then (sweeps pay nothing).
    Copies: callers combine masks in place (`allowed &= ...`)."""
    log = _VERDICTS.get()
    if log is not None:
        log.append(Verdict(gate, allowed.copy(), None if side is None else np.array(side),
                           None if known is None else known(), None if boost is None else boost.copy()))


def _side(direction, shape: tuple[int, int]) -> np.ndarray:
    return np.broadcast_to(np.sign(np.asarray(direction)), shape)


def ma_gate(close: np.ndarray, direction, n: int = MA_GATE_WINDOW, tol: float = MA_GATE_TOL) -> np.ndarray:
    """No long more than `tol` below the n-bar SMA, no short more than `tol` above it."""
    ma = sma(close, n)
    side = _side(direction, close.shape)
    with np.errstate(invalid="ignore"):
        long_bad = (side > 0) & (close < ma * (1.0 - tol))
        short_bad = (side < 0) & (close > ma * (1.0 + tol))
    allowed = ~(long_bad | short_bad)
    _record("ma200", allowed, side, known=lambda: np.isfinite(ma) & np.isfinite(close))
    return allowed


def efficiency_gate(close: np.ndarray, n: int = 20, reject: float = EFFICIENCY_REJECT,
                    boost: float = EFFICIENCY_BOOST, boost_mult: float = 1.2) -> tuple[np.ndarray, np.ndarray]:
    """Trend efficiency over n bars: below `reject` is chop (blocked); above `boost` the score is
    multiplied by `boost_mult`. Returns (allowed, multiplier)."""
    eff = trend_efficiency(close, n)
    with np.errstate(invalid="ignore"):
        allowed = ~(eff < reject)
        mult = np.where(eff > boost, boost_mult, 1.0)
    _record("efficiency", allowed, known=lambda: np.isfinite(eff), boost=mult)
    return allowed, mult


def funding_filter(funding: np.ndarray, direction, headwind_cap: float = HEADWIND_CAP,
                   tailwind_floor: float = TAILWIND_FLOOR, bonus: float = 0.10,
                   bonus_cap: float = 0.30) -> tuple[np.ndarray, np.ndarray]:
    """Per-HOUR funding (as in Market.funding; defaults are the 8h thresholds divided by 8).

    Headwind (the position pays: long with funding > 0, short with funding < 0) above
    `headwind_cap` is rejected. Tailwind (the position is paid) of at least `tailwind_floor`
    multiplies the score by 1 + min(bonus * tailwind / tailwind_floor, bonus_cap).
    Returns (allowed, multiplier).
    """
    f = np.asarray(funding, dtype=np.float64)
    side = _side(direction, f.shape)
    paid = np.where(np.isfinite(f), f, 0.0) * side  # > 0: the position pays
    allowed = ~(paid > headwind_cap)
    tail = -paid
    mult = np.where(tail >= tailwind_floor,
                    1.0 + np.minimum(bonus * tail / tailwind_floor, bonus_cap), 1.0)
    _record("funding", allowed, side, known=lambda: np.isfinite(f), boost=mult)
    return allowed, mult


def min_open_interest(market: Market, usd: float = 10e6) -> np.ndarray:
    """Open interest (in coins, as Hyperliquid reports it) times close must reach `usd`.

    Market.open_interest is the recorded asset context of the bar (`data sync --contexts`, one
    snapshot an hour from when recording began): the gate blocks only there. Every bar without
    a snapshot (all of the history before recording, and the shared data) has NaN and passes;
    its verdict marks those bars unknown, so `sweep signals` shows them as n/a.
    """
    with np.errstate(invalid="ignore"):
        usd_oi = market.open_interest * market.close
        allowed = ~(usd_oi < usd)
    _record("oi", allowed, known=lambda: np.isfinite(usd_oi))
    return allowed


def book_imbalance_gate(market: Market, direction: np.ndarray, obi_min: float) -> np.ndarray:
    """A long needs Market.book_imbalance >= obi_min (bids outweigh asks), a short <= -obi_min.

    The imbalance is the recorded book of the bar (harness.snapshots: 20 levels a side); a bar
    without one (NaN) passes, and its verdict marks it unknown, so a caller can count the
    signals gated against those passed for lack of data (`gate_tally`).
    """
    obi = market.book_imbalance
    side = _side(direction, obi.shape)
    with np.errstate(invalid="ignore"):
        bad = ((side > 0) & (obi < obi_min)) | ((side < 0) & (obi > -obi_min))
    allowed = ~bad
    _record("obi", allowed, side, known=lambda: np.isfinite(obi))
    return allowed


@dataclass(frozen=True)
class GateTally:
    """What one gate did to the signals it judged (side != 0), over every bar it saw."""

    gate: str
    judged: int
    blocked: int  # on its data
    passed: int  # on its data
    unknown: int  # passed for lack of data (its input was NaN there)


def gate_tally(verdicts: list[Verdict], gate: str) -> GateTally | None:
    """Sum the side-aware verdicts of `gate` (None when it was not called, or is not one)."""
    mine = [v for v in verdicts if v.gate == gate and v.side is not None and v.known is not None]
    if not mine:
        return None
    judged = blocked = unknown = 0
    for v in mine:
        on = np.sign(v.side) != 0
        judged += int(on.sum())
        blocked += int((on & ~v.allowed).sum())
        unknown += int((on & v.allowed & ~v.known).sum())
    return GateTally(gate, judged, blocked, judged - blocked - unknown, unknown)


def stop_within(stop: np.ndarray, close: np.ndarray, max_frac: float = MAX_STOP_FRAC) -> np.ndarray:
    """Allowed where the stop distance is at most `max_frac` of the price (see MAX_STOP_FRAC):
    a setup that needs a wider stop is too volatile for the position's isolated margin."""
    with np.errstate(invalid="ignore"):
        allowed = ~(stop > max_frac * close)
    _record("stop_width", allowed, known=lambda: np.isfinite(stop) & np.isfinite(close))
    return allowed


def reward_risk_gate(target_r, min_rr: float = MIN_REWARD_RISK) -> np.ndarray:
    """Allowed where the target, in R multiples of the stop, is at least `min_rr` (2:1 by default).

    Enforced at the signal, so a setup whose target sits too close is never sent. A NaN target
    (the strategy exits by signal or time, not at a price) has no reward to measure and passes.
    """
    t = np.asarray(target_r, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return ~(t < min_rr)
