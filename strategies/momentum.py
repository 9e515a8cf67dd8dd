"""Momentum (the seed bot's trend entry): an EMA fast/slow cross confirmed by a breakout.

Long at the close of bar t when all hold (short mirrored):
- EMA(fast) crossed above EMA(slow) within the last `cross_window` bars and is still above;
- close breaks the highest high of the previous `breakout` bars;
- RSI in [rsi_lo, rsi_hi] (40-80; the short zone mirrors it: 20-60);
- volume >= vol_mult x its average over the previous `vol_window` bars;
- ATR / close >= atr_floor (enough movement to pay the costs);
- ADX >= adx_min and rising over `adx_rise` bars;
- funding: no entry paying over 0.05%/8h, a bonus when paid at least 0.01%/8h;
- the 200-MA gate and the trend-efficiency gate (filters.py); a stop wider than
  `max_stop_pct` of price skips the setup (it would sit beyond the liquidation price).
Stop `stop_atr` x ATR, target `target_atr` x ATR (so target_atr / stop_atr in R).
Exit at the next open when the EMAs cross back. Score: ADX / 25 x efficiency x funding bonus.
`regime_gate` (default off): enter only when the coin's forecast regime is trend (or not chop),
the regime model fitted on the train window (strategies.regime.gate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.market import Market
from harness.signals import Signals
from harness.strategy import Mode
from strategies import indicators as ind
from strategies.base import param, register
from strategies.common import FAMILY_TREND, columnar, finish, pick
from strategies.filters import MAX_STOP_FRAC, efficiency_gate, funding_filter, ma_gate, stop_within
from strategies.regime.gate import GATE_HELP, TREND_GATES, apply_gate, fit_regime


@dataclass(frozen=True)
class Params:
    ema_fast: int = param(8, 3, 15, help="fast EMA span (bars)")
    ema_slow: int = param(21, 16, 60, help="slow EMA span (bars)")
    cross_window: int = param(3, 1, 12, help="the EMA cross must be at most this many bars old")
    breakout: int = param(20, 5, 60, help="close must break the high/low of this many previous bars")
    rsi_n: int = param(14, 5, 30, help="RSI period (Wilder)")
    rsi_lo: float = param(40.0, 25.0, 50.0, help="long RSI zone floor (short zone: 100 - rsi_hi .. 100 - rsi_lo)")
    rsi_hi: float = param(80.0, 60.0, 95.0, help="long RSI zone ceiling")
    vol_window: int = param(20, 5, 60, help="volume average window for the spike test (bars)")
    atr_n: int = param(14, 5, 30, help="ATR period (Wilder) for the stop and the floor")
    atr_floor: float = param(0.003, 0.0005, 0.02, kind="logfloat", help="minimum ATR / close")
    adx_n: int = param(14, 7, 28, help="ADX period (Wilder)")
    adx_rise: int = param(3, 1, 8, help="ADX must be higher than this many bars ago")
    stop_atr: float = param(1.5, 0.5, 4.0, help="stop distance in ATRs (1R)")
    target_atr: float = param(3.0, 1.0, 10.0, help="take-profit distance in ATRs")
    use_funding: bool = param(True, help="apply the funding filter and tailwind bonus")
    use_ma_gate: bool = param(True, help="apply the 200-MA gate")
    eff_window: int = param(20, 5, 60, help="trend-efficiency window (bars); < 0.30 rejects")
    max_stop_pct: float = param(MAX_STOP_FRAC, 0.01, 0.10, help="skip a setup whose stop is wider than this fraction of price (liquidation-safe)")
    regime_gate: str = param("off", choices=TREND_GATES, help=GATE_HELP)


@dataclass(frozen=True)
class Thresholds:
    adx_min: float  # ADX floor
    vol_mult: float  # volume spike multiple


LIVE = Thresholds(adx_min=25.0, vol_mult=1.5)
SHADOW = Thresholds(adx_min=15.0, vol_mult=1.0)


def fit(train: Market, p: Params):
    return fit_regime(train, p.regime_gate)


@register("momentum", Params, fit=fit, description="EMA 8/21 cross + 20-bar breakout, RSI zone, "
          "volume spike, ADX >= 25 rising, funding filter; 1.5 ATR stop, 3 ATR target")
def generate(market: Market, p: Params, mode: Mode = "live", fitted=None) -> Signals:
    th = pick(mode, LIVE, SHADOW)
    market = columnar(market)
    c, h, lo, v = market.close, market.high, market.low, market.volume
    valid = np.isfinite(c)
    fast, slow = ind.ema(c, p.ema_fast), ind.ema(c, p.ema_slow)
    cross = ind.crossed(fast, slow)
    rsi = ind.rsi(c, p.rsi_n)
    atr = ind.atr((h, lo, c), p.atr_n)
    adx = ind.adx(h, lo, c, p.adx_n)
    prior_high = ind.lag(ind.rolling_max(h, p.breakout), 1)
    prior_low = ind.lag(ind.rolling_min(lo, p.breakout), 1)
    avg_vol = ind.lag(ind.sma(v, p.vol_window), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        common = ((v >= th.vol_mult * avg_vol) & (atr >= p.atr_floor * c)
                  & (adx >= th.adx_min) & (adx > ind.lag(adx, p.adx_rise)))
        long = (common & (fast > slow) & ind.any_within(cross > 0, p.cross_window, valid)
                & (c > prior_high) & (rsi >= p.rsi_lo) & (rsi <= p.rsi_hi))
        short = (common & (fast < slow) & ind.any_within(cross < 0, p.cross_window, valid)
                 & (c < prior_low) & (rsi >= 100 - p.rsi_hi) & (rsi <= 100 - p.rsi_lo))
    d = long.astype(np.int8) - short.astype(np.int8)

    allowed, score = efficiency_gate(c, p.eff_window)
    if p.use_ma_gate:
        allowed &= ma_gate(c, d)
    if p.use_funding:
        ok, bonus = funding_filter(market.funding, d)
        allowed &= ok
        score = score * bonus
    stop = p.stop_atr * atr
    d = np.where(allowed & stop_within(stop, c, p.max_stop_pct), d, 0)
    d = apply_gate(d, fitted, market, p.regime_gate)
    return finish(market, "momentum", mode, d, stop, p.target_atr / p.stop_atr,
                  score * adx / 25.0, FAMILY_TREND, exit=cross != 0, atr14=atr if p.atr_n == 14 else None)
