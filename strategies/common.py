"""What every strategy does at the end: tags, regime multiplier, setup keys, dtypes, validation.

A strategy computes its raw `direction`, `stop`, `target` and `score`, then returns
`finish(...)`. Live and shadow thresholds: each strategy defines `LIVE` and `SHADOW` instances of
its own frozen thresholds dataclass and calls `pick(mode, LIVE, SHADOW)`; the code is the same.
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import TypeVar

import numpy as np

from harness.errors import ConfigError
from harness.market import ARRAY_FIELDS, Market
from harness.signals import Signals, session_codes, setup_key, vol_bucket_codes
from harness.strategy import Mode
from strategies.indicators import atr
from strategies.regime.btc import btc_regime, regime_multiplier

# Setup families for v3 de-duplication: strategies of one family firing the same side on the
# same coin from the same origin bar are one economic setup, hence one trade.
FAMILY_TREND = 1  # momentum, ema_pullback, trend_alpha
FAMILY_REVERSION = 2  # mean_reversion, zscore_reversion
FAMILY_FUNDING = 3  # ou_funding
FAMILY_RANK = 4  # xsection_rank
FAMILY_BEAR = 5  # gem_bear
FAMILY_PRICE_ACTION = 6  # monday_range, order_block, breaker, sfp: liquidity sweeps and zones
FAMILY_WICK = 7  # wickflow
FAMILY_PAIR = 8  # pairflow (both legs of a pair trade share one key)
FAMILY_PREMIUM = 9  # skewflow
FAMILY_VOL_REGIME = 10  # quantflow
FAMILY_SEASONAL = 11  # hour_of_day

VOL_FAST, VOL_SLOW = 14, 100  # vol_bucket: ATR(14) / ATR(100)

T = TypeVar("T")


def pick(mode: Mode, live: T, shadow: T) -> T:
    """The thresholds for `mode`: strict live ones or the looser shadow ones."""
    if mode == "live":
        return live
    if mode == "shadow":
        return shadow
    raise ConfigError(f"mode must be 'live' or 'shadow', got {mode!r}")


def setup_origin(direction: np.ndarray) -> np.ndarray:
    """Bar where each run of the same non-zero direction began (per coin); -1 where flat.

    A signal that stays on for 5 bars is ONE setup with the origin at its first bar; a flip of
    side or a bar without the signal starts a new one.
    """
    d = direction
    prev = np.vstack([np.zeros((1, d.shape[1]), dtype=d.dtype), d[:-1]])
    start = (d != 0) & (d != prev)
    bars = np.arange(d.shape[0], dtype=np.int64)[:, None]
    origin = np.maximum.accumulate(np.where(start, bars, -1), axis=0)
    return np.where(d != 0, origin, -1)


def _full(value, shape: tuple[int, int], dtype, what: str, name: str) -> np.ndarray:
    """`value` broadcast to `shape` as `dtype`, refusing casts that would invent values."""
    arr = np.asarray(value)
    if dtype is np.bool_ and arr.dtype != np.bool_:
        raise ConfigError(f"{name}: {what} must be a bool array, got {arr.dtype}")
    if dtype is np.int8 and arr.dtype.kind == "f":  # direction from float math: NaN = no signal
        if (np.isfinite(arr) & (arr != np.round(arr))).any():
            raise ConfigError(f"{name}: {what} must hold -1, 0 or +1, got fractional values")
        arr = np.where(np.isfinite(arr), arr, 0)
    try:
        return np.broadcast_to(arr, shape).astype(dtype, copy=False)
    except ValueError:
        raise ConfigError(f"{name}: {what} has shape {arr.shape}, cannot broadcast to {shape}") from None


_TAGS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_COLUMNAR: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_MADE: weakref.WeakSet = weakref.WeakSet()  # the markets columnar() returned


def columnar(market: Market) -> Market:
    """The same market with every array in Fortran order (each coin's series contiguous), copied
    once per Market object and cached (a market it made is returned as it is). The indicator kernels walk coin by coin, so a strategy
    that starts with `market = columnar(market)` avoids a transposing pass per indicator call
    (about 40% of `generate` on a C-ordered 116-coin market); results are identical. The
    arrays are read-only, so the indicators computed from them are shared across calls."""
    if market in _MADE:
        return market
    hit = _COLUMNAR.get(market)
    if hit is None:
        arrays = {f: np.array(getattr(market, f), order="F") for f in ARRAY_FIELDS + ("listed",)}
        for a in arrays.values():  # read-only: indicators of these are shared (indicator_cache)
            a.flags.writeable = False
        hit = dataclasses.replace(market, **arrays)
        _COLUMNAR[market] = hit
        _MADE.add(hit)
    return hit


def market_tags(market: Market, atr14: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(BTC regime (n_bars,), vol_bucket (n_bars, n_coins)) of a market, computed once per Market
    object: they depend on the market alone, and a sweep generates many times on one market
    (Markets are immutable, as their cached fingerprint already assumes)."""
    hit = _TAGS.get(market)
    if hit is None:
        a14 = atr(market, VOL_FAST) if atr14 is None else atr14
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = a14 / atr(market, VOL_SLOW)
        hit = (btc_regime(market), vol_bucket_codes(ratio))
        _TAGS[market] = hit
    return hit


def finish(market: Market, name: str, mode: Mode, direction, stop, target, score, family: int,
           exit=None, hold=None, trail=None, atr14: np.ndarray | None = None,
           setup: np.ndarray | None = None) -> Signals:
    """Assemble validated Signals.

    Direction (-1/0/+1; NaN in a float array means no signal) is zeroed where the coin is not
    listed, the close is unknown or the stop is not a positive finite distance. Stop, target, score, hold and trail are kept only where
    direction != 0 (0 / NaN elsewhere). The score is multiplied by the BTC-regime multiplier
    (0.6 against the regime). `target`, `exit`, `hold` and `trail` may be scalars; `atr14`
    (Wilder ATR(14) of this market) saves recomputing it for vol_bucket. `setup` (int64,
    non-zero where direction != 0) replaces the keys derived from runs of direction, for a
    trade spanning several coins (pairflow: both legs carry one key).
    """
    pick(mode, "live", "shadow")  # validates mode
    shape = (market.n_bars, market.n_coins)
    stop = _full(stop, shape, np.float64, "stop", name)
    with np.errstate(invalid="ignore"):
        ok = market.listed & (stop > 0) & (stop < np.inf) & np.isfinite(market.close)
    d = np.ascontiguousarray(np.where(ok, _full(direction, shape, np.int8, "direction", name), 0),
                             dtype=np.int8)
    active = d != 0
    regime, vol_bucket = market_tags(market, atr14)

    rows, cols = np.nonzero(active)
    keys = np.zeros(shape, dtype=np.int64)
    if setup is None:
        origin = setup_origin(d)
        keys[rows, cols] = setup_key(origin[rows, cols], cols, d[rows, cols], family)
    else:
        keys[rows, cols] = _full(setup, shape, np.int64, "setup", name)[rows, cols]
    score = _full(score, shape, np.float64, "score", name)
    mult = regime_multiplier(regime[rows], d[rows, cols][:, None])[:, 0] if rows.size else 1.0
    score_out = np.zeros(shape)
    score_out[rows, cols] = score[rows, cols] * mult

    def only_active(value, dtype, empty) -> np.ndarray:  # C-ordered, whatever the inputs' order
        out = np.full(shape, empty, dtype=dtype)
        if value is not None:
            out[rows, cols] = _full(value, shape, dtype, "value", name)[rows, cols]
        return out

    sig = Signals(
        strategy=name, direction=d, stop=only_active(stop, np.float64, 0.0),
        target=only_active(target, np.float64, np.nan),
        exit=np.zeros(shape, dtype=np.bool_) if exit is None else _full(exit, shape, np.bool_, "exit", name).copy(),
        score=score_out,
        session=np.repeat(session_codes(market.index, market.bar_seconds)[:, None], market.n_coins, axis=1),
        regime=np.repeat(regime[:, None], market.n_coins, axis=1),
        vol_bucket=vol_bucket.copy(), setup=keys,
        hold=only_active(hold, np.int32, 0), trail=only_active(trail, np.float64, np.nan))
    return sig.validate(market)


# ------------------------------------------------------------ cross-sectional selection

def rebalance_bars(market: Market, every: int) -> np.ndarray:
    """(n_bars,) True on bars whose open time, in bars since the epoch, is a multiple of `every`."""
    bar_ns = market.bar_seconds * 1_000_000_000
    return (market.ts_ns // bar_ns) % every == 0


def top_n_mask(composite: np.ndarray, n: int) -> np.ndarray:
    """True for the n largest finite values of each row (ties broken by coin order)."""
    key = np.where(np.isfinite(composite), -composite, np.inf)
    order = np.argsort(key, axis=1, kind="stable")[:, :n]
    mask = np.zeros(composite.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask & np.isfinite(composite)
