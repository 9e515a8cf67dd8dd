"""Z-score reversion on price: fade a stretch away from the rolling mean.

z = (close - SMA_W) / std_W over the last W bars (population std, current bar included;
indicators.rolling_z). Short while z > z_entry, long while z < -z_entry (1.25 sigma live): a run of
such bars is one setup. Exit at the next open once |z| < z_exit (0.5 sigma: back near the mean).
Stop = stop_pct x close (1%); time stop after `max_hold` bars. Score = |z| / z_entry.

Order-book-imbalance gate (`obi_gate`): with book data, a long needs imbalance >= obi_min (bids
outweigh asks) and a short <= -obi_min. The imbalance is (bid depth - ask depth) / (bid + ask) in
[-1, 1], read from a `book_imbalance` (n_bars, n_coins) array on the Market when it has one.
Today's Market carries no book data: the gate then PASSES every signal and warns once
(BookDataMissing), so turning it on never silently changes results without saying so.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from harness.market import Market
from harness.signals import Signals
from harness.strategy import Mode
from strategies import indicators as ind
from strategies.base import param, register
from strategies.common import FAMILY_REVERSION, finish, pick

BOOK_FIELD = "book_imbalance"  # the Market attribute the gate reads when book data exists


class BookDataMissing(UserWarning):
    """The order-book-imbalance gate was asked for but the Market has no book data."""


@dataclass(frozen=True)
class Params:
    window: int = param(48, 10, 240, help="rolling z-score window W (bars)")
    z_exit: float = param(0.5, 0.0, 1.0, help="exit at the next open once |z| is inside this")
    stop_pct: float = param(0.01, 0.003, 0.05, kind="logfloat", help="stop distance as a fraction of price (1R)")
    max_hold: int = param(24, 2, 168, help="time stop: close after this many bars")
    obi_gate: bool = param(False, help="require order-book imbalance on the trade's side (passes without book data)")


@dataclass(frozen=True)
class Thresholds:
    z_entry: float  # enter beyond +-z_entry sigma
    obi_min: float  # imbalance the gate requires on the trade's side


LIVE = Thresholds(z_entry=1.25, obi_min=0.10)
SHADOW = Thresholds(z_entry=1.0, obi_min=0.0)


def book_gate(market: Market, direction: np.ndarray, obi_min: float) -> np.ndarray:
    """Allowed mask of the order-book-imbalance gate; all True (and one warning) without book data."""
    obi = getattr(market, BOOK_FIELD, None)
    if obi is None:
        warnings.warn(f"zscore_reversion: obi_gate is on but the Market has no {BOOK_FIELD!r} "
                      "book data; the gate passes every signal", BookDataMissing, stacklevel=3)
        return np.ones(direction.shape, dtype=bool)
    obi = np.asarray(obi, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad = ((direction > 0) & (obi < obi_min)) | ((direction < 0) & (obi > -obi_min))
    return ~bad  # unknown imbalance (NaN) passes


@register("zscore_reversion", Params, description="fade price beyond +-1.25 sigma of its rolling "
          "mean, exit inside 0.5 sigma, 1% stop, time stop; optional order-book gate")
def generate(market: Market, p: Params, mode: Mode = "live", fitted=None) -> Signals:
    th = pick(mode, LIVE, SHADOW)
    c = market.close
    z = ind.rolling_z(c, p.window)
    with np.errstate(invalid="ignore"):
        d = (z < -th.z_entry).astype(np.int8) - (z > th.z_entry).astype(np.int8)
        exit_ = np.abs(z) < p.z_exit
    if p.obi_gate:
        d = np.where(book_gate(market, d, th.obi_min), d, 0)
    return finish(market, "zscore_reversion", mode, d, p.stop_pct * c, None,
                  np.abs(np.nan_to_num(z)) / th.z_entry, FAMILY_REVERSION, exit=exit_,
                  hold=p.max_hold)
