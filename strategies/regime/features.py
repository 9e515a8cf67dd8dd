"""Causal per-coin features of the regime models: the value at bar t uses bars <= t only.

Each feature is a (n_bars, n_coins) array stacked on the last axis. NaN means unknown (the coin
is not listed, the warm-up is not over, or the input is missing); the models never fill a NaN at
the decision bar, they answer UNKNOWN there. Windows count listed bars (strategies.indicators),
so a data gap neither poisons later values nor restarts a warm-up.

- ret_1h        log return since the previous listed close
- ret_24h       log return over the last 24 listed bars
- vol_24h       log of the population std of ret_1h over 24 bars (floored at 1e-6)
- vol_168h      the same over 168 bars (one week)
- funding_24h   mean per-hour funding rate over 24 bars
- volume_trend  log(EMA24(volume) / EMA168(volume))
- range_pct     log of the 24-bar mean of (high - low) / close (floored at 1e-6)
- drawdown      d_t = log p_t - max_{s<=t} log p_s over the market's history (<= 0): the
                feature of the nodrama drawdown HMM; it depends on where the history starts
- efficiency_24h  |log close_t - log close_{t-24}| / sum of |ret_1h| over those 24 bars, in
                [0, 1]: 1 is a straight move, near 0 a path that goes nowhere
- vol_ratio     vol_24h - vol_168h: the last day's volatility against the week's (log ratio)
- oi_change_24h log change of open interest over 24 bars; NaN when the data has none
- hour_sin/cos, dow_sin/cos  UTC hour of day and day of week of the bar's CLOSE: volatility has
  a strong daily and weekly season (quiet weekends, the US session), known in advance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.errors import ConfigError
from harness.market import Market
from strategies.indicators import ema, lag, rolling_std, sma, trend_efficiency

FEATURES = ("ret_1h", "ret_24h", "vol_24h", "vol_168h", "funding_24h", "volume_trend",
            "range_pct", "drawdown", "oi_change_24h", "hour_sin", "hour_cos", "dow_sin", "dow_cos",
            "efficiency_24h", "vol_ratio")
LOG_FLOOR = 1e-6


@dataclass(frozen=True, eq=False)
class Features:
    names: tuple[str, ...]
    values: np.ndarray  # (n_bars, n_coins, n_features) float64

    def get(self, name: str) -> np.ndarray:
        return self.values[:, :, self.index(name)]

    def index(self, name: str) -> int:
        if name not in self.names:
            raise ConfigError(f"unknown regime feature {name!r}; known: {', '.join(self.names)}")
        return self.names.index(name)

    def subset(self, names: tuple[str, ...] | list[str]) -> np.ndarray:
        """(n_bars, n_coins, len(names)) in the order asked."""
        return self.values[:, :, [self.index(n) for n in names]]


def _log_floor(x: np.ndarray) -> np.ndarray:
    """log(max(x, 1e-6)); NaN stays NaN (np.maximum propagates it)."""
    return np.log(np.maximum(x, LOG_FLOOR))


def calendar(market: Market) -> np.ndarray:
    """(n_bars, 4): sin/cos of the UTC hour and weekday of each bar's close."""
    close_s = market.ts_ns // 1_000_000_000 + market.bar_seconds
    hour = (close_s // 3600) % 24
    dow = (close_s // 86400 + 3) % 7  # 1970-01-01 was a Thursday: Monday = 0
    a, b = 2 * np.pi * hour / 24.0, 2 * np.pi * dow / 7.0
    return np.stack([np.sin(a), np.cos(a), np.sin(b), np.cos(b)], axis=1)


def has_open_interest(market: Market) -> bool:
    return bool(np.isfinite(market.open_interest).any())


def regime_features(market: Market) -> Features:
    """All of FEATURES for every bar and coin of `market`."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logc = np.log(np.where(market.close > 0, market.close, np.nan))
        ret = logc - lag(logc, 1)
        ret24 = logc - lag(logc, 24)
        vol24 = _log_floor(rolling_std(ret, 24))
        vol168 = _log_floor(rolling_std(ret, 168))
        funding = sma(np.where(market.listed, market.funding, np.nan), 24)
        volume = np.where(market.listed, market.volume, np.nan)
        vtrend = np.log((ema(volume, 24) + 1e-12) / (ema(volume, 168) + 1e-12))
        range_pct = _log_floor(sma((market.high - market.low) / market.close, 24))
        drawdown = logc - np.fmax.accumulate(logc, axis=0)
        oi = np.where(market.open_interest > 0, market.open_interest, np.nan)
        oi_chg = np.log(oi) - lag(np.log(oi), 24) if np.isfinite(oi).any() else np.full_like(oi, np.nan)
        eff = trend_efficiency(logc, 24)
    cal = np.broadcast_to(calendar(market)[:, None, :], (market.n_bars, market.n_coins, 4))
    cols = [ret, ret24, vol24, vol168, funding, vtrend, range_pct, drawdown, oi_chg]
    values = np.concatenate([np.stack(cols, axis=2), cal, np.stack([eff, vol24 - vol168], axis=2)],
                            axis=2).astype(np.float64)
    values[~market.listed] = np.nan  # an unlisted bar has no features, calendar included
    return Features(FEATURES, values)
