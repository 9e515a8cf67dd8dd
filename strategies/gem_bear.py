"""GEM bear specialist (daily bars): hold the steadiest risers of a safe-haven basket.

At each rebalance bar t, per coin, fit y = a0 * a1^x to the last `fit_window` closes
(x = 0 .. fit_window-1) by least squares on ln y = ln a0 + x ln a1, with r the correlation of
(x, ln y). Then
    momentum = r^(2n) * (a1 - 1) * 100,   n = r2_exponent   (so r^(2n) = (r^2)^n),
i.e. the fitted growth per bar in percent, discounted by how well the exponential fits.
A coin is eligible long when r^2 >= r2_min, a1 - 1 >= min_growth (the growth filter: only rising
coins are held), momentum <= mom_cap (a parabolic move is not a trend to join) and ATR / close
>= atr_floor (a coin that barely moves, like a stablecoin, cannot pay its fees: its stop is
smaller than a round trip's cost). With `sides="both"` a coin is also eligible short, mirrored:
r^2 >= r2_min, a1 < 1, 1 - a1 >= min_growth, momentum >= -mom_cap and the ATR floor (the
steadiest fallers). The `top_n` eligible coins by |momentum| are held on their side. Weights are
inverse ATR: w = (close / ATR) / sum over the selected coins, with ATR taken relative to price so
coins at different price levels compare; the weight is the signal's score and `report()` prints
it. Other listed coins get `exit` at the rebalance bar. Stop = stop_atr x ATR. Rebalance bars
are fixed by time (bars since the epoch).

Few trades by design on its showcase basket: one decision per coin per rebalance, and safe havens
rarely trend. The 2022 bear basket (../shared/data/binance/bear_portfolio_2022_1d.parquet: 245
days of EUR, PAXG and two stablecoins that stop in the autumn) leaves 164 out-of-sample days
with the default folds and two coins that move enough to pay their costs; nothing rose from
May to mid-November, so the long-only specialist holds cash and closes 0-5 trades, and with the
short side at most about 15 (live thresholds). DESIGN's minimum of 30 closed trades cannot be
met there, so every trial on it is rejected (`trades < 30`, the minimum recorded on each
results row as `min_trades`). Its research dataset is ../shared/data/hyperliquid at 1d (172
perps, Sep 2024 - Mar 2025 with the 2025 altcoin bear), where `sweep run --strategy gem_bear
--data ../shared/data/hyperliquid` with the defaults scores most of its trials.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.errors import ConfigError
from harness.market import Market
from harness.signals import SIDES, Signals
from harness.strategy import Mode
from strategies import indicators as ind
from strategies.base import Panel, PanelColumn, panel_value, param, register
from strategies.common import FAMILY_BEAR, finish, pick, rebalance_bars, top_n_mask

ROW_CHUNK = 256  # rows of windows materialised at once (bounds memory on hourly data)


@dataclass(frozen=True)
class Params:
    fit_window: int = param(60, 20, 120, help="closes in the exponential fit (bars)")
    r2_exponent: int = param(1, 1, 4, help="n in momentum = r^(2n) * (a1 - 1) * 100")
    min_growth: float = param(0.0, 0.0, 0.002, help="growth filter: fitted a1 - 1 per bar must reach this")
    mom_cap: float = param(1.0, 0.2, 5.0, help="skip coins whose momentum exceeds this (parabolic)")
    top_n: int = param(2, 1, 4, help="hold the top_n eligible coins by momentum")
    rebalance: int = param(7, 1, 14, help="rebalance every this many bars (fixed by time)")
    atr_n: int = param(14, 5, 30, help="ATR period (Wilder) for weights and the stop")
    stop_atr: float = param(3.0, 1.0, 6.0, help="stop distance in ATRs (1R)")
    atr_floor: float = param(0.002, 0.0005, 0.01, kind="logfloat",
                             help="minimum ATR / close: a coin that moves less cannot pay its costs")
    sides: str = param("long", choices=("long", "both"),
                       help="long: hold the steadiest risers; both: also short the steadiest fallers")


@dataclass(frozen=True)
class Thresholds:
    r2_min: float  # minimum r-squared of the exponential fit


LIVE = Thresholds(r2_min=0.60)
SHADOW = Thresholds(r2_min=0.30)


@dataclass(frozen=True, eq=False)
class ExpFit:
    """ln y = ln a0 + x ln a1 over the window ending at each row; NaN where a close is missing."""

    a0: np.ndarray
    a1: np.ndarray
    r: np.ndarray


def exp_regression(close: np.ndarray, rows: np.ndarray, window: int) -> ExpFit:
    """Fit y = a0 * a1^x (x = 0 .. window-1) on the `window` closes ending at each of `rows`.

    Returns arrays of shape (len(rows), n_coins); a0 is the fitted value at the window's first
    bar. A window with a missing or non-positive close, or fewer bars than `window`, gives NaN;
    a flat window gives a1 = 1 and r = 0.
    """
    if window < 3:
        raise ConfigError(f"gem_bear: fit_window must be >= 3, got {window}")
    close = np.asarray(close, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        logc = np.where(close > 0, np.log(close), np.nan)
    x = np.arange(window, dtype=np.float64) - (window - 1) / 2.0  # centred
    sxx = float(x @ x)
    out = [np.full((rows.size, close.shape[1]), np.nan) for _ in range(3)]
    ok_rows = rows >= window - 1
    for lo in range(0, rows.size, ROW_CHUNK):
        sel = np.flatnonzero(ok_rows[lo:lo + ROW_CHUNK]) + lo
        if sel.size == 0:
            continue
        idx = rows[sel][:, None] - (window - 1) + np.arange(window)  # (k, window)
        y = logc[idx]  # (k, window, n_coins)
        ybar = y.mean(axis=1)
        yc = y - ybar[:, None, :]
        sxy = np.einsum("w,kwc->kc", x, yc)
        syy = np.einsum("kwc,kwc->kc", yc, yc)
        slope = sxy / sxx
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(syy > 0, sxy / np.sqrt(sxx * syy), 0.0)
        r = np.where(np.isfinite(ybar), r, np.nan)
        out[0][sel] = np.exp(ybar - slope * (window - 1) / 2.0)
        out[1][sel] = np.exp(slope)
        out[2][sel] = r
    return ExpFit(*out)


def momentum(fit: ExpFit, r2_exponent: int) -> np.ndarray:
    """r^(2n) * (a1 - 1) * 100."""
    return (fit.r ** 2) ** r2_exponent * (fit.a1 - 1.0) * 100.0


@dataclass(frozen=True, eq=False)
class GemRanking:
    """Everything the strategy decided at its rebalance rows (arrays (len(rows), n_coins))."""

    rows: np.ndarray
    fit: ExpFit
    momentum: np.ndarray
    eligible: np.ndarray
    selected: np.ndarray
    side: np.ndarray  # int8: +1 long, -1 short where selected, else 0
    weight: np.ndarray  # inverse-ATR weights of the selected coins, summing to 1 per row


def rank_at(market: Market, p: Params, rows: np.ndarray, mode: Mode = "live") -> GemRanking:
    th = pick(mode, LIVE, SHADOW)
    c = np.where(market.listed, market.close, np.nan)
    fit = exp_regression(c, rows, p.fit_window)
    mom = momentum(fit, p.r2_exponent)
    atr = ind.atr(market, p.atr_n)[rows]
    with np.errstate(invalid="ignore", divide="ignore"):
        fits = (fit.r ** 2 >= th.r2_min) & (atr >= p.atr_floor * c[rows]) & market.listed[rows]
        long_ok = fits & (fit.a1 - 1.0 >= p.min_growth) & (mom <= p.mom_cap)
        short_ok = (fits & (fit.a1 < 1.0) & (1.0 - fit.a1 >= p.min_growth) & (mom >= -p.mom_cap)
                    & (p.sides == "both"))
        eligible = long_ok | short_ok
        selected = top_n_mask(np.where(eligible, np.abs(mom), np.nan), p.top_n)
        inv_atr = c[rows] / atr
        raw = np.where(selected & np.isfinite(inv_atr), inv_atr, 0.0)
        total = raw.sum(axis=1, keepdims=True)
        weight = np.where(total > 0, raw / total, 0.0)
    selected &= weight > 0
    side = np.where(selected, np.where(long_ok, 1, -1), 0).astype(np.int8)
    return GemRanking(rows, fit, mom, eligible, selected, side, weight)


def report(market: Market, p: Params | None = None, bar: int = -1, mode: Mode = "live") -> pd.DataFrame:
    """One row per coin at `bar`: fit, momentum, eligibility, selection and weight."""
    p = p or Params()
    t = bar % market.n_bars
    g = rank_at(market, p, np.array([t]), mode)
    return pd.DataFrame({
        "coin": market.coins, "a0": g.fit.a0[0], "a1": g.fit.a1[0], "r2": g.fit.r[0] ** 2,
        "momentum": g.momentum[0], "eligible": g.eligible[0], "selected": g.selected[0],
        "side": g.side[0], "weight": g.weight[0],
    }).sort_values("momentum", key=np.abs, ascending=False, na_position="last", ignore_index=True)


def momentum_ranking(market: Market, p: Params, mode: Mode = "live", fitted=None) -> tuple[Panel, ...]:
    """The holdings in force at the last bar: the ranking of the latest rebalance bar."""
    done = np.flatnonzero(rebalance_bars(market, p.rebalance))
    if done.size == 0:
        return (Panel("momentum", "Momentum ranking", (), (), note="no rebalance bar yet"),)
    t = done[-1]
    g = rank_at(market, p, np.array([t]), mode)
    mom = g.momentum[0]
    order = np.argsort(np.where(np.isfinite(mom), -np.abs(mom), np.inf), kind="stable")
    rows = tuple((market.coins[c], SIDES.get(int(g.side[0, c]), ""), panel_value(mom[c]),
                  panel_value(g.fit.r[0, c] ** 2), panel_value(g.fit.a1[0, c] - 1.0),
                  bool(g.eligible[0, c]), panel_value(g.weight[0, c])) for c in order)
    cols = (PanelColumn("coin", "text"), PanelColumn("held", "text"), PanelColumn("momentum"),
            PanelColumn("r2", label="r^2"), PanelColumn("growth_per_bar", "percent", "growth /bar"),
            PanelColumn("eligible", "flag"), PanelColumn("weight", "percent"))
    th = pick(mode, LIVE, SHADOW)
    return (Panel("momentum", f"Momentum ranking at the rebalance bar {market.index[t].isoformat()}: "
                  f"r^{2 * p.r2_exponent} (a1 - 1) 100 over {p.fit_window} bars", cols, rows,
                  note=f"eligible: r^2 >= {th.r2_min:g}, growth >= {p.min_growth:g}, "
                       f"|momentum| <= {p.mom_cap:g}, ATR >= {p.atr_floor:.2%} of price; "
                       f"the top {p.top_n} are held ({p.sides}); rebalance every {p.rebalance} bars"),)


@register("gem_bear", Params, interval="1d", panel=momentum_ranking, description="bear specialist on daily bars: "
          "exponential-regression momentum r^2n (a1 - 1) 100, r^2 filter, top_n, inverse-ATR "
          "weights; research it on ../shared/data/hyperliquid at 1d (the 245-day 2022 basket "
          "cannot make the 30 trades a score needs)")
def generate(market: Market, p: Params, mode: Mode = "live", fitted=None) -> Signals:
    rows = np.flatnonzero(rebalance_bars(market, p.rebalance))
    g = rank_at(market, p, rows, mode)
    shape = (market.n_bars, market.n_coins)
    d = np.zeros(shape, dtype=np.int8)
    score = np.zeros(shape)
    exit_ = np.zeros(shape, dtype=bool)
    d[rows] = g.side
    score[rows] = g.weight
    exit_[rows] = ~g.selected & market.listed[rows]
    atr = ind.atr(market, p.atr_n)
    return finish(market, "gem_bear", mode, d, p.stop_atr * atr, None, score, FAMILY_BEAR,
                  exit=exit_, atr14=atr if p.atr_n == 14 else None)
