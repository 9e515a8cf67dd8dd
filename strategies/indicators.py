"""Technical indicators over (n_bars, n_coins) arrays (1-d arrays work too), numba underneath.

Conventions (checked against vectorbt or a reference formula in tests/test_indicators.py):
- NaN bars (not listed, gaps) are skipped: each coin is computed on its valid bars as if the
  gaps did not exist, and skipped bars come out NaN (see strategies/indicators_nb.py).
- Windows count valid bars; the first value appears once the window is full (NaN before).
- `ema` is pandas' `ewm(span, adjust=False, min_periods=span)` (vectorbt's MA with ewm=True).
- `rsi`, `atr` and `adx` use Wilder's smoothing (alpha = 1/n) seeded with the simple mean of
  the first n values, as in Wilder (1978); vectorbt smooths with alpha = 2/(n+1) instead.
- Standard deviations are population (ddof=0), as in Bollinger's bands and vectorbt's BBANDS.

Shared across calls (a sweep evaluates many parameter sets on one market: EMA(21) of the same
closes is computed once, not once per trial): an indicator of read-only inputs (a `columnar`
market's arrays, or another cached indicator) is kept in a bounded per-process cache keyed by
the indicator, its parameters and its inputs' identity, and returned read-only. Identity is
safe because the inputs cannot change in place, and an entry dies with its inputs (weak
references), so it never outlives, or crosses to, another market.
"""

from __future__ import annotations

import numpy as np

from harness.errors import ConfigError
from harness.market import Market
from strategies import indicators_nb as nb
from strategies.indicator_cache import CACHE


def _as2d(x: np.ndarray, what: str) -> tuple[np.ndarray, bool]:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        return a[:, None], True
    if a.ndim != 2:
        raise ConfigError(f"{what}: expected a (n_bars, n_coins) or (n_bars,) array, got shape {a.shape}")
    return a, False


def _by_rows(*arrays: np.ndarray) -> bool:
    """Each coin's series unit-stride (Fortran order, or bar slices of it): the kernels walk the
    transposed rows in place; anything else goes through the blocked column drivers."""
    return all(a.strides[0] == a.itemsize for a in arrays)


def _check_window(n: int, what: str, minimum: int = 1) -> int:
    if int(n) != n or n < minimum:
        raise ConfigError(f"{what}: window must be an integer >= {minimum}, got {n!r}")
    return int(n)


def _out(a: np.ndarray, was_1d: bool) -> np.ndarray:
    return a[:, 0] if was_1d else a


def _apply1(x: np.ndarray, kind: int, n: int, what: str, minimum: int = 1) -> np.ndarray:
    n = _check_window(n, what, minimum)

    def compute() -> np.ndarray:
        a, one = _as2d(x, what)
        out = nb.apply1_rows(a.T, kind, n).T if _by_rows(a) else nb.apply1_cols(a, kind, n)
        return _out(out, one)

    return CACHE.get(("apply1", kind, n), (x,), compute)


def _moments(x: np.ndarray, n: int, k: float, z: bool, what: str) -> tuple[np.ndarray, ...]:
    n = _check_window(n, what, 2)

    def compute() -> tuple[np.ndarray, ...]:
        a, one = _as2d(x, what)
        if _by_rows(a):
            res = tuple(r.T for r in nb.moments_rows(a.T, n, float(k), z))
        else:
            res = nb.moments_cols(a, n, float(k), z)
        return tuple(_out(r, one) for r in (res[:1] if z else res))

    return CACHE.get(("moments", n, float(k), z), (x,), compute)


def _apply3(hlc: tuple[np.ndarray, ...], kind: int, n: int, one: bool,
            inputs: tuple[np.ndarray, ...]) -> np.ndarray:
    def compute() -> np.ndarray:
        h, lo, c = hlc
        if _by_rows(h, lo, c):
            out = nb.apply3_rows(h.T, lo.T, c.T, kind, n).T
        else:
            out = nb.apply3_cols(h, lo, c, kind, n)
        return _out(out, one)

    return CACHE.get(("apply3", kind, n), inputs, compute)


def ema(x: np.ndarray, span: int) -> np.ndarray:
    return _apply1(x, nb.EMA, span, "ema")


def sma(x: np.ndarray, n: int) -> np.ndarray:
    return _apply1(x, nb.SMA, n, "sma")


def rolling_std(x: np.ndarray, n: int) -> np.ndarray:
    """Population standard deviation over the last n valid bars."""
    return _apply1(x, nb.STD, n, "rolling_std")


def rolling_max(x: np.ndarray, n: int) -> np.ndarray:
    return _apply1(x, nb.ROLL_MAX, n, "rolling_max")


def rolling_min(x: np.ndarray, n: int) -> np.ndarray:
    return _apply1(x, nb.ROLL_MIN, n, "rolling_min")


def lag(x: np.ndarray, k: int = 1) -> np.ndarray:
    """The value k valid bars earlier (a gap-aware shift: the bar before a gap is one bar back)."""
    return _apply1(x, nb.LAG, k, "lag")


def wilder(x: np.ndarray, n: int) -> np.ndarray:
    """Wilder's smoothing (alpha = 1/n) seeded with the mean of the first n values."""
    return _apply1(x, nb.WILDER, n, "wilder")


def rsi(close: np.ndarray, n: int = 14) -> np.ndarray:
    """Wilder RSI in [0, 100]; 100 when there was no loss in the window, 50 when flat."""
    return _apply1(close, nb.RSI, n, "rsi")


def trend_efficiency(close: np.ndarray, n: int) -> np.ndarray:
    """|net move| / path length over the last n bars, in [0, 1] (0 on a flat path)."""
    return _apply1(close, nb.EFF, n, "trend_efficiency")


def rolling_z(x: np.ndarray, n: int) -> np.ndarray:
    """(x - mean) / population std over the last n valid bars (current bar included); 0 if flat."""
    return _moments(x, n, 0.0, True, "rolling_z")[0]


def bollinger(close: np.ndarray, n: int = 20, k: float = 2.0) -> tuple[np.ndarray, ...]:
    """(mid, upper, lower, width): SMA(n) +- k population std; width = (upper - lower) / mid."""
    return _moments(close, n, k, False, "bollinger")


def _hlc(market_or_hlc, what: str) -> tuple[tuple[np.ndarray, ...], bool, tuple]:
    """(2-d high, low, close), whether they were 1-d, and the arrays as given (the cache key)."""
    if isinstance(market_or_hlc, Market):
        hlc = (market_or_hlc.high, market_or_hlc.low, market_or_hlc.close)
    else:
        try:
            hlc = tuple(market_or_hlc)
        except TypeError:
            hlc = ()
        if len(hlc) != 3:
            raise ConfigError(f"{what}: pass a Market or a (high, low, close) tuple of arrays")
    arrs = [_as2d(a, what) for a in hlc]
    shapes = {a.shape for a, _ in arrs}
    if len(shapes) != 1:
        raise ConfigError(f"{what}: high, low and close have different shapes {sorted(shapes)}")
    return tuple(a for a, _ in arrs), arrs[0][1], hlc


def true_range(market_or_hlc) -> np.ndarray:
    hlc, one, given = _hlc(market_or_hlc, "true_range")
    return _apply3(hlc, nb.TR, 1, one, given)


def atr(market_or_hlc, n: int = 14) -> np.ndarray:
    """Wilder ATR in price units; accepts a Market or (high, low, close)."""
    hlc, one, given = _hlc(market_or_hlc, "atr")
    return _apply3(hlc, nb.ATR, _check_window(n, "atr"), one, given)


def adx(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int = 14) -> np.ndarray:
    """Wilder ADX in [0, 100]; first value after 2n - 1 valid bars."""
    hlc, one, given = _hlc((high, low, close), "adx")
    return _apply3(hlc, nb.ADX, _check_window(n, "adx"), one, given)


def crossed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """int8: +1 where `a` crossed above `b` at this bar (a > b now, a <= b one valid bar
    earlier), -1 where it crossed below, 0 otherwise (and on bars where either is NaN)."""
    def compute() -> np.ndarray:
        diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
        prev = lag(diff, 1)
        with np.errstate(invalid="ignore"):
            up = (diff > 0) & (prev <= 0)
            down = (diff < 0) & (prev >= 0)
        return up.astype(np.int8) - down.astype(np.int8)

    return CACHE.get(("crossed",), (a, b), compute)


def any_within(event: np.ndarray, k: int, valid: np.ndarray) -> np.ndarray:
    """True where `event` (bool) happened in the last k valid bars, this one included."""
    x = np.where(valid, np.asarray(event, dtype=np.float64), np.nan)
    with np.errstate(invalid="ignore"):
        return rolling_max(x, k) > 0
