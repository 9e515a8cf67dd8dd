"""Cross-sectional ranker: every `rebalance` bars, trade the top coins of the universe.

At a rebalance bar t, over the coins listed at t with every input known:
    composite = 0.40 rank(|momentum|) + 0.30 rank(1 / volatility) + 0.30 rank(|funding z|)
where rank is the percentile rank among those coins (pandas' rank(pct=True): average rank of
ties / count, so in (0, 1]), momentum = close / close `mom_lookback` valid bars ago - 1,
volatility = population std of log returns over `vol_window` bars, funding z = rolling z-score
of the per-hour funding over `fz_window` bars. Momentum enters by its size: the direction comes
from its sign (long when momentum > 0, short when < 0), so ranking signed momentum would leave
the short side unreachable.

Only the `top_n` composites generate signals; a selected coin is then skipped (not replaced)
when trend efficiency over `eff_window` bars is < 0.30, when it is on the wrong side of the
200-bar MA (filters.ma_gate), or when its open interest is known and below `min_oi_usd`.
Every other listed coin gets `exit` at the rebalance bar, so a position lasts until its coin
leaves the selection (or its stop): no churn between rebalances. Rebalance bars are fixed by
time (bar-open time in bars since the epoch, modulo `rebalance`), so slicing the data never moves
them. Score = composite x the efficiency boost (x the BTC-regime multiplier in finish).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from harness.market import Market
from harness.signals import Signals
from harness.strategy import Mode
from strategies import indicators as ind
from strategies.base import Panel, PanelColumn, panel_value, param, register
from strategies.common import FAMILY_RANK, finish, pick, rebalance_bars, top_n_mask
from strategies.filters import efficiency_gate, ma_gate, min_open_interest

W_MOMENTUM, W_INV_VOL, W_FUNDING_Z = 0.40, 0.30, 0.30


@dataclass(frozen=True)
class Params:
    mom_lookback: int = param(72, 12, 720, help="momentum lookback (bars)")
    vol_window: int = param(72, 24, 720, help="volatility window of log returns (bars)")
    fz_window: int = param(168, 24, 720, help="funding z-score window (bars)")
    top_n: int = param(10, 3, 30, help="only the top_n composites trade")
    rebalance: int = param(24, 1, 168, help="rebalance every this many bars (fixed by time)")
    eff_window: int = param(24, 8, 168, help="trend-efficiency window (bars); < 0.30 skips")
    min_oi_usd: float = param(10e6, 1e6, 1e8, kind="logfloat", help="minimum open interest in USD where known")
    atr_n: int = param(14, 5, 50, help="ATR period (Wilder) for the stop")
    stop_atr: float = param(2.5, 1.0, 6.0, help="stop distance in ATRs (1R)")


@dataclass(frozen=True)
class Thresholds:
    use_ma_gate: bool  # skip the wrong side of the 200-bar MA
    eff_reject: float  # trend efficiency below this skips


LIVE = Thresholds(use_ma_gate=True, eff_reject=0.30)
SHADOW = Thresholds(use_ma_gate=False, eff_reject=0.20)


@dataclass(frozen=True, eq=False)
class Ranking:
    """Per-bar inputs and the composite (NaN off rebalance bars and where an input is unknown)."""

    momentum: np.ndarray
    inv_vol: np.ndarray
    funding_z: np.ndarray
    ranks: np.ndarray  # (3, n_bars, n_coins): rank(|momentum|), rank(1/vol), rank(|funding z|)
    composite: np.ndarray
    rebalance: np.ndarray  # (n_bars,) bool


def pct_rank(x: np.ndarray) -> np.ndarray:
    """Row-wise percentile rank among the finite values (average ties), NaN elsewhere."""
    x = np.where(np.isfinite(x), x, np.nan)
    r = rankdata(x, axis=1, nan_policy="omit")
    n = np.isfinite(x).sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return r / n


def ranking(market: Market, p: Params) -> Ranking:
    c = np.where(market.listed, market.close, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        mom = c / ind.lag(c, p.mom_lookback) - 1.0
        vol = ind.rolling_std(np.log(c / ind.lag(c, 1)), p.vol_window)
        inv_vol = 1.0 / vol
    fz = ind.rolling_z(np.where(market.listed, market.funding, np.nan), p.fz_window)
    rb = rebalance_bars(market, p.rebalance)
    ranks = np.full((3,) + c.shape, np.nan)
    rows = np.flatnonzero(rb)
    if rows.size:
        m, iv, f = mom[rows], inv_vol[rows], fz[rows]
        known = np.isfinite(m) & np.isfinite(iv) & np.isfinite(f) & market.listed[rows]
        for i, a in enumerate((np.abs(m), iv, np.abs(f))):
            ranks[i, rows] = pct_rank(np.where(known, a, np.nan))
    comp = W_MOMENTUM * ranks[0] + W_INV_VOL * ranks[1] + W_FUNDING_Z * ranks[2]
    return Ranking(mom, inv_vol, fz, ranks, comp, rb)


def composite_ranking(market: Market, p: Params, mode: Mode = "live", fitted=None) -> tuple[Panel, ...]:
    """The ranking in force at the last bar: that of the latest rebalance bar, best first."""
    rk = ranking(market, p)
    done = np.flatnonzero(rk.rebalance)
    if done.size == 0:
        return (Panel("composite", "Composite ranking", (), (), note="no rebalance bar yet"),)
    t = done[-1]
    top = top_n_mask(rk.composite[t:t + 1], p.top_n)[0]
    order = np.argsort(np.where(np.isfinite(rk.composite[t]), -rk.composite[t], np.inf), kind="stable")
    rows = tuple((market.coins[c], bool(top[c]), *(panel_value(a) for a in (
        rk.composite[t, c], *rk.ranks[:, t, c], rk.momentum[t, c], 1.0 / rk.inv_vol[t, c],
        rk.funding_z[t, c]))) for c in order)
    cols = (PanelColumn("coin", "text"), PanelColumn("top", "flag"), PanelColumn("composite"),
            PanelColumn("rank_momentum", label="rank |mom|"),
            PanelColumn("rank_inv_vol", label="rank 1/vol"),
            PanelColumn("rank_funding_z", label="rank |fz|"), PanelColumn("momentum", "percent"),
            PanelColumn("vol_per_bar", "percent", "vol /bar"), PanelColumn("funding_z", label="funding z"))
    when = market.index[t].isoformat()
    return (Panel("composite", f"Composite ranking at the rebalance bar {when}: "
                  f"{W_MOMENTUM:.2f} rank |momentum| + {W_INV_VOL:.2f} rank 1/vol + "
                  f"{W_FUNDING_Z:.2f} rank |funding z|", cols, rows,
                  note=f"the top {p.top_n} trade unless a gate blocks them (table above, at "
                       f"rebalance bars); rebalance every {p.rebalance} bars"),)


@register("xsection_rank", Params, panel=composite_ranking, description="cross-sectional ranker: "
          "0.40 momentum + 0.30 inverse-vol + 0.30 |funding z| ranks, top 10, efficiency / "
          "200-MA / OI gates")
def generate(market: Market, p: Params, mode: Mode = "live", fitted=None) -> Signals:
    th = pick(mode, LIVE, SHADOW)
    rk = ranking(market, p)
    chosen = top_n_mask(rk.composite, p.top_n)
    d = np.where(chosen, np.sign(np.nan_to_num(rk.momentum)), 0).astype(np.int8)
    allowed, boost = efficiency_gate(market.close, p.eff_window, reject=th.eff_reject)
    if th.use_ma_gate:
        allowed &= ma_gate(market.close, d)
    allowed &= min_open_interest(market, p.min_oi_usd)
    d = np.where(allowed, d, 0).astype(np.int8)
    exit_ = rk.rebalance[:, None] & market.listed & (d == 0)
    atr = ind.atr(market, p.atr_n)
    return finish(market, "xsection_rank", mode, d, p.stop_atr * atr, None,
                  np.nan_to_num(rk.composite) * boost, FAMILY_RANK, exit=exit_,
                  atr14=atr if p.atr_n == 14 else None)
