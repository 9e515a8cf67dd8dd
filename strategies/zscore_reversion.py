"""Z-score reversion on price: fade a stretch away from the rolling mean.

z = (close - SMA_W) / std_W over the last W bars (population std, current bar included;
indicators.rolling_z). Short while z > z_entry, long while z < -z_entry (1.25 sigma live): a run of
such bars is one setup. Exit at the next open once |z| < z_exit (0.5 sigma: back near the mean).
Stop = stop_pct x close (1%); time stop after `max_hold` bars. Score = |z| / z_entry.

Order-book-imbalance gate (`obi_gate`, strategies.filters.book_imbalance_gate): a long needs
imbalance >= obi_min (bids outweigh asks) and a short <= -obi_min. The imbalance is (bid size -
ask size) / (bid + ask) over 20 levels in [-1, 1], Market.book_imbalance: the book recorded in
the bar (`data sync --contexts`, or the paper executor). A bar without a recorded book passes;
the gate's verdicts count the signals gated against those passed for lack of data (`sweep
signals` prints the tally), and a Market with no book at all warns once (BookDataMissing), so
turning the gate on never changes results silently.
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
from strategies.filters import book_imbalance_gate


class BookDataMissing(UserWarning):
    """The order-book-imbalance gate was asked for but the Market has no book data."""


@dataclass(frozen=True)
class Params:
    window: int = param(48, 10, 240, help="rolling z-score window W (bars)")
    z_exit: float = param(0.5, 0.0, 1.0, help="exit at the next open once |z| is inside this")
    stop_pct: float = param(0.01, 0.003, 0.05, kind="logfloat", help="stop distance as a fraction of price (1R)")
    max_hold: int = param(24, 2, 168, help="time stop: close after this many bars")
    obi_gate: bool = param(False, help="require order-book imbalance on the trade's side (bars without a recorded book pass)")


@dataclass(frozen=True)
class Thresholds:
    z_entry: float  # enter beyond +-z_entry sigma
    obi_min: float  # imbalance the gate requires on the trade's side


LIVE = Thresholds(z_entry=1.25, obi_min=0.10)
SHADOW = Thresholds(z_entry=1.0, obi_min=0.0)


def book_gate(market: Market, direction: np.ndarray, obi_min: float) -> np.ndarray:
    """Allowed mask of the order-book-imbalance gate; one warning when no book is recorded."""
    if not np.isfinite(market.book_imbalance).any():
        warnings.warn("zscore_reversion: obi_gate is on but the Market has no recorded book "
                      "imbalance (python -m sweep data sync --contexts records books); the gate "
                      "passes every signal", BookDataMissing, stacklevel=3)
    return book_imbalance_gate(market, direction, obi_min)


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
