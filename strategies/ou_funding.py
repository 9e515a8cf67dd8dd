"""OU funding reversion: fade a funding-rate extreme on a coin whose funding mean-reverts fast.

Per coin, the funding rate is modelled as an Ornstein-Uhlenbeck process (theta, mu, sigma,
half-life = ln 2 / theta hours), fitted by AR(1) regression (strategies/ou_nb.py):
- `fit(market_train, p)` fits one OU per coin on the TRAIN window (the harness calls it per
  walk-forward fold); `generate` then uses those half-lives;
- without a fitted state, `generate` fits causally on the last `ou_window` bars at each
  candidate bar (the rolling-window fallback).

The extreme is measured by a z-score of funding, `z_method`:
- "kalman" (default): the standardised innovation of a local-level Kalman filter,
  z[t] = (f[t] - m[t-1]) / sqrt(P[t-1] + Q + R), with m, P the filtered level and its variance
  after bar t-1 (see ou_nb.kalman_zscore). Q = 1e-8 and R = 5e-6 are variances of the funding
  rate in its 8-hour quote (the per-hour rate x 8, the unit of Hyperliquid's funding formula);
  in that unit z > 2 is a move of about 0.46% per 8h off the level, roughly the 0.25% most
  extreme coin-hours of ../shared/data. A single spike moves the level by only K ~ 4%, so the
  z-score is not inflated by one outlier the way a short rolling window's is.
- "rolling": (f - mean) / std over the last `z_window` bars.

Signal at bar t when |z| > z_entry and the half-life is in [hl_min, hl_max] hours: short when
funding is extreme high (crowded longs pay; a short receives funding), long when extreme low.
Live also requires that the position is paid funding at entry. Time stop = hold_mult x
half-life (in bars), stop = stop_atr x ATR. Score = quality(half_life, z)
= exp(-half_life / 12) * min(|z| / 3, 1), which ranks coins (fast reversion, clear extreme);
`half_life_dashboard` (its panel in `sweep signals`) ranks every coin by it at the last bar.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.market import Market
from harness.signals import Signals
from harness.strategy import Mode
from strategies import indicators as ind
from strategies import ou_nb
from strategies.base import Panel, PanelColumn, panel_value, param, register
from strategies.common import FAMILY_FUNDING, finish, pick
from strategies.filters import FUNDING_HOURS_PER_QUOTE

QUALITY_HALF_LIFE_HOURS = 12.0  # quality halves every 12 * ln 2 ~ 8.3 h of half-life
QUALITY_Z_CAP = 3.0  # |z| beyond 3 earns no more quality
MIN_PAIRS = 48  # fewest (f[t], f[t+1]) pairs an OU fit needs


@dataclass(frozen=True)
class Params:
    z_method: str = param("kalman", choices=("kalman", "rolling"),
                          help="funding z-score: Kalman innovation or rolling-window fallback")
    kalman_q: float = param(1e-8, 1e-10, 1e-6, kind="logfloat",
                            help="Kalman level noise variance per bar (8h-quoted funding)")
    kalman_r: float = param(5e-6, 5e-8, 5e-4, kind="logfloat",
                            help="Kalman observation noise variance (8h-quoted funding)")
    z_window: int = param(168, 24, 720, help="rolling z-score window (bars), z_method=rolling")
    ou_window: int = param(336, 96, 2160, help="rolling OU fit window (bars) when nothing is fitted")
    hold_mult: float = param(2.0, 1.0, 4.0, help="time stop = hold_mult x half-life")
    atr_n: int = param(14, 5, 50, help="ATR period (Wilder) for the stop")
    stop_atr: float = param(2.0, 0.5, 5.0, help="stop distance in ATRs (1R)")


@dataclass(frozen=True)
class Thresholds:
    z_entry: float  # |z| above this is an extreme
    hl_min: float  # half-life band, hours
    hl_max: float
    paid: bool  # the position must receive funding at entry


LIVE = Thresholds(z_entry=2.0, hl_min=2.0, hl_max=24.0, paid=True)
SHADOW = Thresholds(z_entry=1.5, hl_min=1.0, hl_max=48.0, paid=False)


@dataclass(frozen=True, eq=False)
class OUFit:
    """One OU fit per coin (per-hour funding units; theta per hour, half-life in hours)."""

    coins: tuple[str, ...]
    theta: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    half_life: np.ndarray
    n_bars: int  # length of the window it was fitted on

    def aligned(self, market: Market) -> np.ndarray:
        """(4, n_coins) theta, mu, sigma, half-life aligned with `market.coins` (NaN: not fitted)."""
        pos = {c: i for i, c in enumerate(self.coins)}
        fit = np.vstack([self.theta, self.mu, self.sigma, self.half_life])
        fit = np.hstack([fit, np.full((4, 1), np.nan)])  # column -1: a coin not fitted
        return fit[:, [pos.get(c, -1) for c in market.coins]]


def quality(half_life: np.ndarray, z: np.ndarray) -> np.ndarray:
    """exp(-half_life / 12) * min(|z| / 3, 1): fast reversion and a clear extreme rank first."""
    return np.exp(-np.asarray(half_life) / QUALITY_HALF_LIFE_HOURS) * np.minimum(
        np.abs(np.asarray(z)) / QUALITY_Z_CAP, 1.0)


def _funding(market: Market) -> np.ndarray:
    """Per-hour funding, NaN where the coin is not listed (0 there means unknown, not zero)."""
    return np.where(market.listed, market.funding, np.nan)


def _hours(market: Market) -> float:
    return market.bar_seconds / 3600.0


def fit_ou(market: Market, p: Params) -> OUFit:
    """OU per coin on all of `market` (the train window); deterministic."""
    res = ou_nb.ou_fit_columns(_funding(market), _hours(market), MIN_PAIRS)
    return OUFit(market.coins, res[0], res[1], res[2], res[3], market.n_bars)


def ou_in_force(market: Market, p: Params, fitted: OUFit | None, where: np.ndarray) -> np.ndarray:
    """(4, n_bars, n_coins) theta, mu, sigma, half-life that `generate` uses at the bars of
    `where`: the fitted OU when there is one, else the causal rolling fit (NaN elsewhere)."""
    if fitted is None:
        return ou_nb.rolling_ou_fit(_funding(market), p.ou_window, _hours(market), MIN_PAIRS, where)
    return np.broadcast_to(fitted.aligned(market)[:, None, :], (4,) + where.shape)


def funding_z(market: Market, p: Params) -> np.ndarray:
    """The funding z-score of `p.z_method` (see the module doc); NaN where unknown."""
    f = _funding(market)
    if p.z_method == "rolling":
        return ind.rolling_z(f, p.z_window)
    z, _ = ou_nb.kalman_zscore(f * FUNDING_HOURS_PER_QUOTE, p.kalman_q, p.kalman_r)
    return z


def half_life_dashboard(market: Market, p: Params, mode: Mode = "live",
                        fitted: OUFit | None = None) -> tuple[Panel, ...]:
    """Every coin at the last bar ranked by quality, with the OU in force and the funding z."""
    t = market.n_bars - 1
    where = np.zeros((market.n_bars, market.n_coins), dtype=bool)
    where[t] = True
    theta, mu, sigma, hl = ou_in_force(market, p, fitted, where)[:, t]
    z = funding_z(market, p)[t]
    q = quality(hl, z)
    f = _funding(market)[t]
    order = np.argsort(np.where(np.isfinite(q), -q, np.inf), kind="stable")
    rows = tuple((market.coins[c], *(panel_value(a[c]) for a in (q, z, hl, theta, mu, sigma, f)))
                 for c in order)
    fit = (f"OU fitted on {fitted.n_bars} bars" if fitted is not None
           else f"rolling OU over the last {p.ou_window} bars")
    return (Panel("half_life", "Half-life dashboard: quality = exp(-half_life / 12) * min(|z| / 3, 1)",
                  (PanelColumn("coin", "text"), PanelColumn("quality"), PanelColumn("z"),
                   PanelColumn("half_life_h", label="half-life h"),
                   PanelColumn("theta_per_h", label="theta /h"), PanelColumn("mu"),
                   PanelColumn("sigma"), PanelColumn("funding_per_h", "percent", "funding /h")),
                  rows, note=f"{fit}; z: {p.z_method}; funding, mu and sigma per hour"),)



@register("ou_funding", Params, fit=fit_ou, panel=half_life_dashboard,
          description="fade funding extremes (Kalman |z| > 2) on coins whose funding OU "
          "half-life is 2-24 h; time stop 2x half-life")
def generate(market: Market, p: Params, mode: Mode = "live", fitted: OUFit | None = None) -> Signals:
    th = pick(mode, LIVE, SHADOW)
    f = _funding(market)
    z = funding_z(market, p)
    with np.errstate(invalid="ignore"):
        side = -np.sign(np.where(np.abs(z) > th.z_entry, z, 0.0))  # fade the extreme
        if th.paid:
            side = np.where(side * f < 0, side, 0.0)  # short needs f > 0, long f < 0
    cand = side != 0
    hl = ou_in_force(market, p, fitted, cand)[3]
    with np.errstate(invalid="ignore"):
        ok = cand & (hl >= th.hl_min) & (hl <= th.hl_max)
    d = np.where(ok, side, 0).astype(np.int8)
    hl_ok = np.where(ok, hl, 1.0)
    hold = np.maximum(np.ceil(p.hold_mult * hl_ok / _hours(market)), 1.0)
    atr = ind.atr(market, p.atr_n)
    return finish(market, "ou_funding", mode, d, p.stop_atr * atr, None,
                  np.where(ok, quality(hl_ok, np.nan_to_num(z)), 0.0), FAMILY_FUNDING,
                  hold=hold, atr14=atr if p.atr_n == 14 else None)
