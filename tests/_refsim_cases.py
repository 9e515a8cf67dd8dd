"""Real-data cases for the reference comparison: markets from ../shared/data, signals from simple
rules (EMA crosses with ATR stops, seeded random entries) and plausible friction v5 cost arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd
from _kernel_helpers import signal
from _strategy_markets import HL

from harness.market import Market
from harness.signals import Signals, setup_key
from harness.sources import load_market

MAJORS = ("BTC", "ETH", "SOL", "DOGE")
TAILS = ("REQ", "FTT")  # thin coins with holes in their hourly history
COINS = MAJORS + TAILS
DETAIL_SPAN = ("2025-02-07", "2025-04-01")  # the 15m file covers 2025-02-06 05:45 onwards


def have_data() -> bool:
    return (HL / "candles_1h.parquet").exists() and (HL / "candles_15m.parquet").exists()


def hourly(coins=COINS, start=None, end=None) -> Market:
    return load_market(HL, "1h", coins=list(coins), start=start, end=end)


def detail_15m(coins=COINS) -> tuple[Market, Market]:
    """1h bars and their 15m detail over the span the 15m file covers."""
    return (load_market(HL, "1h", coins=list(coins), start=DETAIL_SPAN[0], end=DETAIL_SPAN[1]),
            load_market(HL, "15m", coins=list(coins), start=DETAIL_SPAN[0], end=DETAIL_SPAN[1]))


def _ema(x: np.ndarray, span: int) -> np.ndarray:
    return pd.DataFrame(x).ewm(span=span, adjust=False, ignore_na=True).mean().to_numpy()


def atr(m: Market, n: int = 14) -> np.ndarray:
    prev = np.vstack([m.close[:1], m.close[:-1]])
    tr = np.fmax(m.high - m.low, np.fmax(np.abs(m.high - prev), np.abs(m.low - prev)))
    return pd.DataFrame(tr).rolling(n, min_periods=n).mean().to_numpy()


def ema_cross(m: Market, seed: int, fast: int = 8, slow: int = 21, stop_atr=(0.5, 6.0),
              repeat: int = 3) -> Signals:
    """Enter on EMA crosses (and for `repeat` bars after, with the cross's setup key) with an ATR
    stop; random targets (some below the partial level), time stops, trailing distances, exits
    when the close falls back through the slow EMA; random scores."""
    rng = np.random.default_rng(seed)
    sig = Signals.empty(m, f"ema_cross_{seed}")
    f, s = _ema(m.close, fast), _ema(m.close, slow)
    a = atr(m)
    up = (f > s) & (np.roll(f, 1, 0) <= np.roll(s, 1, 0))
    dn = (f < s) & (np.roll(f, 1, 0) >= np.roll(s, 1, 0))
    up[:30] = dn[:30] = False
    for side, cross in ((1, up), (-1, dn)):
        for t, c in np.argwhere(cross):
            if not a[t, c] > 0:  # warm-up, or a coin that did not trade
                continue
            key = setup_key(np.array([t]), np.array([c]), np.array([side]), 1)[0]
            stop = a[t, c] * rng.uniform(*stop_atr)
            target = rng.choice([np.nan, 1.0, 2.5, 4.0])
            hold = int(rng.choice([0, 0, 1, 3, 24]))
            trail = rng.choice([np.nan, np.nan, 0.5, 1.5])
            for u in range(t, min(t + 1 + int(rng.integers(0, repeat + 1)), m.n_bars)):
                if not (m.listed[u, c] and a[u, c] > 0) or sig.direction[u, c] != 0:
                    continue
                signal(sig, u, side, stop, coin=c, target=target, score=rng.normal(), setup=key,
                       hold=hold, trail=trail)
    back = ((m.close < s) & (np.roll(m.close, 1, 0) >= np.roll(s, 1, 0))) | (
        (m.close > s) & (np.roll(m.close, 1, 0) <= np.roll(s, 1, 0)))
    sig.exit[:] = back & (rng.random(back.shape) < 0.3) & (sig.direction == 0) & m.listed
    return sig.validate(m)


def random_entries(m: Market, seed: int, rate: float = 0.03, stop_atr=(0.3, 12.0)) -> Signals:
    """Seeded random entries: random side, ATR stop (wide ones liquidate at high leverage), random
    target / hold / trail, scores often tied (coin order breaks ties), some exits."""
    rng = np.random.default_rng(seed)
    sig = Signals.empty(m, f"random_{seed}")
    a = atr(m)
    on = (rng.random((m.n_bars, m.n_coins)) < rate) & m.listed & (a > 0)  # ATR NaN: warm-up
    n = int(on.sum())
    sig.direction[on] = rng.choice([-1, 1], n)
    sig.stop[on] = a[on] * rng.uniform(*stop_atr, n)
    sig.target[on] = rng.choice([np.nan, 0.8, 1.2, 2.0, 3.0, 6.0], n)
    sig.hold[on] = rng.choice([0, 0, 0, 1, 2, 12], n)
    sig.trail[on] = rng.choice([np.nan, np.nan, 0.4, 1.0], n)
    sig.score[on] = rng.integers(0, 3, n).astype(np.float64)
    t, c = np.nonzero(on)
    sig.setup[on] = np.where(rng.random(n) < 0.5, setup_key(t // 6, c, sig.direction[on], 2), 0)
    sig.exit[:] = (rng.random(on.shape) < rate / 3) & ~on & m.listed
    return sig.validate(m)


def cost_arrays(m: Market, warmup: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Plausible friction v5 inputs, causal (bar t uses bars <= t): half spread = a twentieth of
    the trailing mean relative range; impact coefficient = daily volatility / sqrt(daily dollar
    volume). NaN during the warm-up and where a coin has no bars (the flat-rate fallback)."""
    rel_range = pd.DataFrame((m.high - m.low) / m.close)
    half_spread = 0.05 * rel_range.rolling(warmup, min_periods=warmup // 2).mean().to_numpy()
    ret = pd.DataFrame(np.log(m.close)).diff()
    sigma_d = ret.rolling(warmup, min_periods=warmup // 2).std().to_numpy() * np.sqrt(24)
    adv = pd.DataFrame(m.close * m.volume).rolling(warmup, min_periods=warmup // 2).mean().to_numpy() * 24
    impact = sigma_d / np.sqrt(adv)
    impact[~np.isfinite(impact)] = np.nan
    return half_spread, impact
