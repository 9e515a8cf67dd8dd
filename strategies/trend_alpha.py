"""Trend alpha: 4h trend following on 4h bars built causally from the market's own bars.

The 4h bars come from harness.resample (complete buckets only) and are mapped back with
align_to_base, so a 4h bar is used only from the base bar whose close is the 4h close. Its
signal then stands on every base bar until the next 4h close (so a trend that holds over several
4h bars is one run, hence one setup key; the exit flag fires once, on the first base bar).

Long on a 4h close when (short mirrored): EMA(fast) > EMA(slow) on 4h, the close breaks the
highest 4h high of the previous `breakout` 4h bars, and 4h ADX >= adx_min. Stop `stop_atr` x
4h ATR; no fixed target: a trailing stop `trail_r` R behind the best price rides the trend
(Signals.trail). Exit at the next open when a 4h close crosses the slow EMA.
Filters on 4h bars: the 200-MA gate (200 4h bars) and the trend-efficiency gate; a stop wider
than `max_stop_pct` of price skips the setup (4h ATRs of alts often put it past the liquidation
price of a 10x isolated position).
Score: 4h ADX / 25 x efficiency multiplier.
`regime_gate` (default off): a 4h entry only when the coin's forecast regime at the base bar
of that 4h close is trend (or not chop), the regime model fitted on the train window
(strategies.regime.gate); the entry then stands until the next 4h close, as without the gate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.market import Market
from harness.resample import align_to_base, resample
from harness.signals import Signals
from harness.strategy import Mode
from strategies import indicators as ind
from strategies.base import param, register
from strategies.common import FAMILY_TREND, finish, pick
from strategies.filters import MAX_STOP_FRAC, efficiency_gate, ma_gate, stop_within
from strategies.regime.gate import GATE_HELP, TREND_GATES, allowed, fit_regime, regime_codes
from strategies.regime.labels import UNKNOWN

HIGHER = "4h"


@dataclass(frozen=True)
class Params:
    ema_fast: int = param(20, 5, 40, help="fast EMA span on 4h bars")
    ema_slow: int = param(50, 41, 150, help="slow EMA span on 4h bars")
    breakout: int = param(20, 5, 60, help="the 4h close must break the high/low of this many 4h bars")
    adx_n: int = param(14, 7, 28, help="ADX period on 4h bars (Wilder)")
    atr_n: int = param(14, 5, 30, help="ATR period on 4h bars (Wilder)")
    stop_atr: float = param(2.0, 0.75, 5.0, help="stop distance in 4h ATRs (1R)")
    trail_r: float = param(1.5, 0.5, 4.0, help="trailing stop distance in R behind the best price")
    use_ma_gate: bool = param(True, help="apply the 200-MA gate on 4h closes")
    eff_window: int = param(12, 4, 42, help="trend-efficiency window in 4h bars; < 0.30 rejects")
    max_stop_pct: float = param(MAX_STOP_FRAC, 0.01, 0.10, help="skip a setup whose stop is wider than this fraction of price (liquidation-safe)")
    regime_gate: str = param("off", choices=TREND_GATES, help=GATE_HELP)


@dataclass(frozen=True)
class Thresholds:
    adx_min: float  # 4h ADX floor


LIVE = Thresholds(adx_min=20.0)
SHADOW = Thresholds(adx_min=12.0)


def fit(train: Market, p: Params):
    return fit_regime(train, p.regime_gate)


@register("trend_alpha", Params, fit=fit, description="4h trend following (EMA 20/50 + 20-bar breakout + "
          "ADX) from causal 4h bars; ATR stop and configurable trail")
def generate(market: Market, p: Params, mode: Mode = "live", fitted=None) -> Signals:
    th = pick(mode, LIVE, SHADOW)
    m4 = resample(market, HIGHER)
    c, h, lo = m4.close, m4.high, m4.low
    fast, slow = ind.ema(c, p.ema_fast), ind.ema(c, p.ema_slow)
    adx = ind.adx(h, lo, c, p.adx_n)
    atr4 = ind.atr(m4, p.atr_n)
    with np.errstate(invalid="ignore"):
        long = (fast > slow) & (c > ind.lag(ind.rolling_max(h, p.breakout), 1)) & (adx >= th.adx_min)
        short = (fast < slow) & (c < ind.lag(ind.rolling_min(lo, p.breakout), 1)) & (adx >= th.adx_min)
    d4 = long.astype(np.int8) - short.astype(np.int8)
    ok, mult = efficiency_gate(c, p.eff_window)
    if p.use_ma_gate:
        ok &= ma_gate(c, d4)

    def base(values: np.ndarray, fill=np.nan) -> np.ndarray:
        return align_to_base(values, m4, market, fill=fill)

    # The base bar on which each 4h bar first becomes usable (its close is the 4h close).
    j = base(np.arange(m4.n_bars), fill=-1)
    fresh = (j >= 0) & (j != np.concatenate([[-1], j[:-1]]))
    if p.regime_gate != "off":  # the regime at the base bar of each 4h close
        codes4 = np.full(d4.shape, UNKNOWN, dtype=np.int8)
        rows = np.flatnonzero(fresh)
        codes4[j[rows]] = regime_codes(fitted, market)[rows]
        ok &= allowed(codes4, p.regime_gate)
    d4 = np.where(ok, d4, 0)
    exit_ = fresh[:, None] & base(ind.crossed(c, slow) != 0, fill=False)
    stop = p.stop_atr * base(atr4)
    d = np.where(stop_within(stop, market.close, p.max_stop_pct), base(d4, fill=0), 0)
    return finish(market, "trend_alpha", mode, d, stop, np.nan,
                  base(adx / 25.0 * mult), FAMILY_TREND, exit=exit_, trail=p.trail_r)
