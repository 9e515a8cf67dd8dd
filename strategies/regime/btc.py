"""BTC regime (LONG / SHORT / NEUTRAL): a score multiplier for every strategy, never a gate.

Two causal views of BTC, combined by one rule:

- 4h trend state (the longer window): 4h bars built from complete buckets only
  (harness.resample), EMA(20) and EMA(50) of the 4h closes (about 3 and 8 days).
  UP when EMA20 > EMA50 and the 4h close > EMA50; DOWN when EMA20 < EMA50 and the close
  < EMA50; FLAT otherwise. Each 1h bar sees the last 4h bar that closed at or before its close.
- 1h bias: close vs EMA(48) of 1h closes and that EMA's slope over 12 bars. +1 when the close
  is above a rising EMA, -1 below a falling one, 0 otherwise.

Rule: the 4h trend sets the side and the 1h bias can veto it. LONG = 4h UP and bias >= 0;
SHORT = 4h DOWN and bias <= 0; NEUTRAL otherwise (no 4h trend, or the last two days lean
against it). On markets of 4h bars or longer the trend state is computed on the market's own
bars. No BTC in the market: NEUTRAL everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.errors import ConfigError
from harness.market import Market
from harness.resample import align_to_base, resample
from strategies.indicators import ema, lag

COUNTER_REGIME_MULTIPLIER = 0.6
NEUTRAL, LONG, SHORT = 0, 1, 2  # codes into harness.signals.REGIMES
TREND_INTERVAL = "4h"


@dataclass(frozen=True)
class BtcRegimeParams:
    bias_span: int = 48
    bias_slope_bars: int = 12
    trend_fast: int = 20
    trend_slow: int = 50

    def __post_init__(self) -> None:
        if not 1 <= self.trend_fast < self.trend_slow:
            raise ConfigError(f"BtcRegimeParams: need 1 <= trend_fast < trend_slow, got "
                              f"{self.trend_fast}, {self.trend_slow}")


def bias_1h(close: np.ndarray, span: int, slope_bars: int) -> np.ndarray:
    """(n,) int8 in {-1, 0, +1}: close vs EMA(span) and the EMA's change over slope_bars."""
    e = ema(close, span)
    prev = lag(e, slope_bars)
    with np.errstate(invalid="ignore"):
        up = (close > e) & (e > prev)
        down = (close < e) & (e < prev)
    return (up.astype(np.int8) - down.astype(np.int8)).astype(np.int8)


def trend_state(close: np.ndarray, fast: int, slow: int) -> np.ndarray:
    """(n,) int8 in {-1, 0, +1} from EMA(fast) vs EMA(slow) and the close vs EMA(slow)."""
    f, s = ema(close, fast), ema(close, slow)
    with np.errstate(invalid="ignore"):
        up = (f > s) & (close > s)
        down = (f < s) & (close < s)
    return (up.astype(np.int8) - down.astype(np.int8)).astype(np.int8)


def btc_regime(market: Market, params: BtcRegimeParams = BtcRegimeParams()) -> np.ndarray:
    """(n_bars,) int8 regime codes; NEUTRAL everywhere when the market has no BTC."""
    if "BTC" not in market.coins:
        return np.zeros(market.n_bars, dtype=np.int8)
    btc = market.select(["BTC"])
    close = btc.close[:, 0]
    bias = bias_1h(close, params.bias_span, params.bias_slope_bars)
    if btc.bar_seconds < 4 * 3600:
        higher = resample(btc, TREND_INTERVAL)
        state = trend_state(higher.close[:, 0], params.trend_fast, params.trend_slow)
        trend = align_to_base(state, higher, btc, fill=0).astype(np.int8)
    else:
        trend = trend_state(close, params.trend_fast, params.trend_slow)
    out = np.full(market.n_bars, NEUTRAL, dtype=np.int8)
    out[(trend == 1) & (bias >= 0)] = LONG
    out[(trend == -1) & (bias <= 0)] = SHORT
    return out


def regime_multiplier(regime: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """(n_bars, n_coins) score multiplier: 0.6 where the signal fights the BTC regime, else 1."""
    r = regime[:, None]
    counter = ((r == LONG) & (direction < 0)) | ((r == SHORT) & (direction > 0))
    return np.where(counter, COUNTER_REGIME_MULTIPLIER, 1.0)
