"""Per-coin, per-trade slippage of friction v5 (DESIGN section 5), estimated causally from the
market's own bars: half the estimated bid-ask spread plus square-root market impact.

    slippage = clip(half_spread + k * sigma_d * sqrt(notional / ADV), floor, cap)

Daily bars are the market's bars grouped by UTC day (harness.resample): a day exists once all
of its bars have closed, and a day in which a coin misses any bar is unknown for that coin
(its high, low and volume would be understated). Each statistic is a mean over the trailing
`window_days` days, of the days whose observation is known; an observation that pairs a day
with the day before (the spread estimators, the close-to-close return) needs both days.
Fewer than `min_days` known observations: unknown (NaN), and a fill there pays the flat
`fallback_bps`. Row t of every array uses only the days closed by the close of bar t, so the
last bar of a UTC day (closing at 00:00) is the first to see that day.

Spread estimators, both on daily bars:
- abdi_ranaldo: Abdi & Ranaldo (2017, RFS 30(12)), close-high-low. With c the log close and
  eta = (log high + log low) / 2 the log mid-range, S^2 = 4 E[(c_t - eta_t)(c_t - eta_{t+1})];
  the expectation is the window mean, and a negative mean gives S = 0 (their monthly version).
- corwin_schultz: Corwin & Schultz (2012, JF 67(2)), high-low. Per two-day period, with
  beta = ln(H_t/L_t)^2 + ln(H_{t+1}/L_{t+1})^2 and gamma = ln(max H / min L over both days)^2,
  alpha = (sqrt(2 beta) - sqrt(beta)) / (3 - 2 sqrt 2) - sqrt(gamma / (3 - 2 sqrt 2)) and
  S = 2 (e^alpha - 1) / (1 + e^alpha); day t+1's high and low are first moved by the overnight
  change when it trades wholly above or below day t's close, and negative two-day spreads are
  set to 0 before the window mean (the paper's two adjustments).

- tick (the default): half of one price tick over the price at the bar's close. Hyperliquid
  quotes perps to 5 significant figures (HYPERLIQUID.md), so the tick of a price p is
  10 ** (floor(log10 p) - 4): the tightest book a perp can show.

Why the default is not an OHLC estimator, measured on Hyperliquid 1h data 2024-09..2025-03
(`python -m sweep data costs --estimator ...`): both estimators need the spread to be comparable
with the daily range, and a perp's book (BTC: one $1 tick, ~0.1 bp) is far tighter, so the
estimate is volatility noise. BTC's AR half spread is 0 on 51% of bars and ~63 bps (median) on
the rest, mean 30 bps; CS's is never 0, median 46 bps; both rank BTC and ETH dearer than ~50
illiquid coins. The impact term is what orders coins by liquidity; with the tick spread and
the 1 bp floor, BTC pays ~1 bp at $10k and a tail coin the 200 bps cap. Recorded books and
impact prices (`data sync --contexts`) are what the spread should be calibrated on:
Hyperliquid's impact bid and ask are the average fills of a market sell and buy of the impact
notional, so (impact ask - impact bid) / 2 / mid is the half spread plus the impact a trade of
that size pays, the quantity v5's slippage at that notional estimates (`data costs` shows
both side by side).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from harness.errors import ConfigError
from harness.market import Market
from harness.resample import align_to_base, resample

BPS = 1e-4
ESTIMATORS = ("tick", "abdi_ranaldo", "corwin_schultz")
SIG_FIGS = 5  # Hyperliquid perp prices: at most 5 significant figures
# Hyperliquid's funding impact notional (contract specifications): 20,000 USDC for BTC and
# ETH, 6,000 USDC for every other perp; the impact prices of asset contexts are at this size.
IMPACT_NOTIONAL_MAJORS = {"BTC": 20_000.0, "ETH": 20_000.0}
IMPACT_NOTIONAL_OTHERS = 6_000.0


def impact_notional(coin: str) -> float:
    """USD notional behind a coin's recorded impact prices."""
    return IMPACT_NOTIONAL_MAJORS.get(coin, IMPACT_NOTIONAL_OTHERS)


def impact_half_spread(bid, ask, mid):
    """(impact ask - impact bid) / 2 / mid: half spread plus impact at the impact notional."""
    return (np.asarray(ask, dtype=np.float64) - np.asarray(bid, dtype=np.float64)) / 2.0 / mid


@dataclass(frozen=True)
class CostModel:
    """Friction v5's slippage parameters (recorded on results rows); defaults are v5's.

    min_days = 20 of 30: the spread estimate is a mean of noisy daily products whose
    variance falls as 1/n, and a coin with under three weeks of complete days in the last
    month (new listing, long gaps) has no trailing month to speak of: it pays the fallback.
    """

    window_days: int = 30
    impact_k: float = 1.0
    floor_bps: float = 1.0
    cap_bps: float = 200.0
    min_days: int = 20  # fewest known observations in the window for an estimate
    estimator: str = "tick"

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise ConfigError(f"unknown spread estimator {self.estimator!r}: use one of "
                              f"{', '.join(ESTIMATORS)}")
        if not 2 <= self.min_days <= self.window_days:
            raise ConfigError(f"min_days={self.min_days} with window_days={self.window_days}: "
                              "need 2 <= min_days <= window_days")
        if not 0 <= self.floor_bps <= self.cap_bps:
            raise ConfigError(f"floor_bps={self.floor_bps}, cap_bps={self.cap_bps}: need "
                              "0 <= floor <= cap")
        if self.impact_k < 0:
            raise ConfigError("impact_k must be >= 0")


@dataclass(frozen=True)
class CoinCosts:
    """(n_bars, n_coins) float64 arrays; row t uses only the days closed by bar t's close."""

    half_spread: np.ndarray  # fraction of price (0.0005 = 5 bps); NaN = unknown
    impact_coef: np.ndarray  # k * sigma_d / sqrt(ADV): impact = impact_coef * sqrt(notional)
    sigma_d: np.ndarray  # trailing daily volatility of log close-to-close returns (fraction)
    adv: np.ndarray  # trailing mean daily dollar volume (close x volume), USD

    @property
    def known(self) -> np.ndarray:
        """Where the estimate exists; elsewhere a fill pays the flat fallback."""
        return ~(np.isnan(self.half_spread) | np.isnan(self.impact_coef))


def abdi_ranaldo_s2(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Per pair of consecutive days: 4 (c_{t-1} - eta_{t-1})(c_{t-1} - eta_t), on row t.

    Row 0 is NaN (no day before it); the spread is sqrt(max(mean of these, 0)).
    """
    c = np.log(close)
    eta = (np.log(high) + np.log(low)) / 2
    out = np.full(c.shape, np.nan)
    out[1:] = 4.0 * (c[:-1] - eta[:-1]) * (c[:-1] - eta[1:])
    return out


def corwin_schultz_s(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Per pair of consecutive days: the two-day spread, negative set to 0, on row t."""
    h0, l0, c0, h1, l1 = high[:-1], low[:-1], close[:-1], high[1:], low[1:]
    # the overnight move, in price units as in the authors' code: day t+1 moved back to day t's
    # close for this pair only (the next pair uses day t+1 as it traded)
    gap = np.maximum(c0 - h1, 0.0) + np.minimum(c0 - l1, 0.0)
    h1, l1 = h1 + gap, l1 + gap
    beta = np.log(h0 / l0) ** 2 + np.log(h1 / l1) ** 2
    gamma = np.log(np.maximum(h0, h1) / np.minimum(l0, l1)) ** 2
    denom = 3.0 - 2.0 * math.sqrt(2.0)
    alpha = (np.sqrt(2.0 * beta) - np.sqrt(beta)) / denom - np.sqrt(gamma / denom)
    out = np.full(high.shape, np.nan)
    out[1:] = np.maximum(2.0 * (np.exp(alpha) - 1.0) / (1.0 + np.exp(alpha)), 0.0)
    return out


def _windows(x: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The trailing `w` rows of every row as (n, n_coins, w), NaN set to 0, and its mask."""
    pad = np.full((w,) + x.shape[1:], np.nan)[: max(w - 1, w - x.shape[0])]
    win = sliding_window_view(np.concatenate([pad, x]), w, axis=0)
    ok = np.isfinite(win)
    return np.where(ok, win, 0.0), ok


def trailing_mean(x: np.ndarray, w: int, min_obs: int) -> np.ndarray:
    """Mean of the known values among the last `w` rows; NaN with fewer than `min_obs`."""
    win, ok = _windows(x, w)
    n = ok.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = win.sum(axis=-1) / n
    return np.where(n >= min_obs, mean, np.nan)


def trailing_std(x: np.ndarray, w: int, min_obs: int) -> np.ndarray:
    """Sample standard deviation (ddof 1) of the known values among the last `w` rows."""
    win, ok = _windows(x, w)
    n = ok.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = win.sum(axis=-1) / n
        var = (np.where(ok, win - mean[..., None], 0.0) ** 2).sum(axis=-1) / (n - 1)
    return np.where(n >= max(min_obs, 2), np.sqrt(var), np.nan)


def tick_half_spread(close: np.ndarray) -> np.ndarray:
    """Half a price tick over the price: 0.5 * 10 ** (floor(log10 p) - 4) / p."""
    with np.errstate(invalid="ignore", divide="ignore"):
        tick = 10.0 ** (np.floor(np.log10(close)) - (SIG_FIGS - 1))
        return 0.5 * tick / close


def daily_costs(day: Market, model: CostModel) -> tuple[np.ndarray, ...]:
    """(half_spread, sigma_d, adv) on the rows of a daily market, each row including its day
    (the tick spread is NaN here: it is priced on each bar's own close, see coin_costs)."""
    w, m = model.window_days, model.min_days
    if model.estimator == "tick":
        spread = np.full(day.close.shape, np.nan)
    elif model.estimator == "abdi_ranaldo":
        s2 = trailing_mean(abdi_ranaldo_s2(day.high, day.low, day.close), w, m)
        spread = np.sqrt(np.maximum(s2, 0.0))  # NaN stays NaN
    else:
        spread = trailing_mean(corwin_schultz_s(day.high, day.low, day.close), w, m)
    ret = np.full(day.close.shape, np.nan)
    ret[1:] = np.diff(np.log(day.close), axis=0)
    sigma = trailing_std(ret, w, m)
    adv = trailing_mean(day.close * day.volume, w, m)
    return spread / 2.0, sigma, adv


def coin_costs(market: Market, model: CostModel = CostModel()) -> CoinCosts:
    """Friction v5's per-bar, per-coin cost inputs for any 15m/1h/4h/1d market (see module doc)."""
    day = resample(market, "1d")
    if day.n_bars == 0:  # not one whole day yet: nothing is known
        nan = np.full((market.n_bars, market.n_coins), np.nan)
        return CoinCosts(half_spread=nan, impact_coef=nan, sigma_d=nan, adv=nan)
    half, sigma, adv = (np.ascontiguousarray(align_to_base(v, day, market))
                        for v in daily_costs(day, model))
    if model.estimator == "tick":  # known where the trailing month is (with sigma and ADV)
        half = np.where(np.isnan(sigma), np.nan, tick_half_spread(market.close))
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = model.impact_k * sigma / np.sqrt(adv)  # ADV 0 gives inf: the cap
    return CoinCosts(half_spread=half, impact_coef=np.ascontiguousarray(coef), sigma_d=sigma,
                     adv=adv)


def slippage(costs: CoinCosts, t: int, c: int, notional: float, model: CostModel,
             fallback_bps: float) -> float:
    """Fraction: clip(half_spread + impact_coef * sqrt(|notional|), floor, cap); the flat
    `fallback_bps` (the friction's slippage_bps) where the estimate is unknown."""
    half, coef = costs.half_spread[t, c], costs.impact_coef[t, c]
    if math.isnan(half) or math.isnan(coef):
        return fallback_bps * BPS
    impact = coef * math.sqrt(abs(notional)) if notional else 0.0
    return min(max(float(half + impact), model.floor_bps * BPS), model.cap_bps * BPS)
