"""Indicators against vectorbt (EMA, SMA, BBANDS, MSTD, rolling max/min) and, where vectorbt's
definition differs (Wilder smoothing in RSI, ATR, ADX), against the reference formula written
here in plain pandas; vectorbt's EWM versions with span 2n - 1 (the same alpha 1/n) must still
agree once the different seed has washed out.

Checked on real BTC/ETH hourly closes (skipped when ../shared/data is absent) and on a
synthetic array with NaN gaps: a coin's indicator on its valid bars equals the reference on the
gap-free series of those bars, and is NaN on the skipped bars.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import vectorbt as vbt

from harness.errors import ConfigError
from strategies import indicators as ind

DATA = Path(os.environ.get("HLQ_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
CANDLES = DATA / "hyperliquid" / "candles_1h.parquet"


# ---------------------------------------------------------------- reference formulas (pandas)


def wilder_ref(s: pd.Series, n: int, start: int = 0) -> pd.Series:
    """Wilder: the mean of the first n values from `start`, then the alpha = 1/n recursion."""
    s = s.iloc[start:]
    seeded = pd.concat([pd.Series([s.iloc[:n].mean()], index=[s.index[n - 1]]), s.iloc[n:]])
    return seeded.ewm(alpha=1.0 / n, adjust=False).mean()


def _wilder_full(s: pd.Series, n: int, start: int) -> pd.Series:
    out = pd.Series(np.nan, index=s.index)
    w = wilder_ref(s, n, start)
    out.loc[w.index] = w.values
    return out


def rsi_ref(c: pd.Series, n: int) -> pd.Series:
    d = c.diff()
    gain = d.clip(lower=0)
    loss = (-d).clip(lower=0)
    ag, al = _wilder_full(gain, n, 1), _wilder_full(loss, n, 1)
    return 100 - 100 / (1 + ag / al)


def tr_ref(h: pd.Series, lo: pd.Series, c: pd.Series) -> pd.Series:
    pc = c.shift(1)
    tr = pd.concat([h - lo, (h - pc).abs(), (lo - pc).abs()], axis=1).max(axis=1)
    return tr


def atr_ref(h, lo, c, n):
    return _wilder_full(tr_ref(h, lo, c), n, 0)


def adx_ref(h, lo, c, n):
    up, dn = h.diff(), -lo.diff()
    pdm = up.where((up > dn) & (up > 0), 0.0)
    mdm = dn.where((dn > up) & (dn > 0), 0.0)
    tr = tr_ref(h, lo, c)
    pdi = 100 * _wilder_full(pdm, n, 1) / _wilder_full(tr, n, 1)
    mdi = 100 * _wilder_full(mdm, n, 1) / _wilder_full(tr, n, 1)
    dx = 100 * (pdi - mdi).abs() / (pdi + mdi)
    return _wilder_full(dx, n, n)


def efficiency_ref(c: pd.Series, n: int) -> pd.Series:
    return (c - c.shift(n)).abs() / c.diff().abs().rolling(n).sum()


# ---------------------------------------------------------------- data


def _real() -> pd.DataFrame:
    if not CANDLES.exists():
        pytest.skip(f"real data not found at {CANDLES} (set HLQ_SHARED_DATA to the shared data folder)")
    df = pd.read_parquet(CANDLES, filters=[("coin", "in", ["BTC", "ETH"])])
    return df.pivot(index="ts", columns="coin")


def _synthetic() -> pd.DataFrame:
    """Two coins, 1,500 bars: one listed late, both with gaps of 1-7 bars."""
    rng = np.random.default_rng(7)
    n = 1500
    cols = {}
    for k, (p0, start) in enumerate([(100.0, 0), (2.5, 180)]):
        r = rng.standard_t(4, n) * 0.006
        c = p0 * np.exp(np.cumsum(r))
        o = np.concatenate([[p0], c[:-1]])
        spread = np.abs(rng.normal(0, 0.004, n)) * c
        h = np.maximum(o, c) + spread
        lo = np.minimum(o, c) - spread * rng.uniform(0.2, 1.0, n)
        mask = np.zeros(n, bool)
        mask[:start] = True
        for g in rng.choice(np.arange(start + 50, n - 10), 12, replace=False):
            mask[g: g + rng.integers(1, 8)] = True
        for name, arr in (("open", o), ("high", h), ("low", lo), ("close", c), ("volume", rng.lognormal(10, 1, n))):
            cols[(name, f"C{k}")] = np.where(mask, np.nan, arr)
    return pd.DataFrame(cols)


@pytest.fixture(scope="module", params=["real", "synthetic"])
def frame(request) -> pd.DataFrame:
    return _real() if request.param == "real" else _synthetic()


def check_per_coin(ours: np.ndarray, frame: pd.DataFrame, ref, fields=("close",), skip: int = 0,
                   rtol: float = 1e-9, atol: float = 1e-9) -> None:
    """`ours` on each coin's valid bars equals `ref(*series)` on the gap-free series; NaN elsewhere."""
    coins = frame["close"].columns
    for j, coin in enumerate(coins):
        parts = [frame[f][coin] for f in fields]
        valid = np.logical_and.reduce([p.notna().values for p in parts])
        assert np.isnan(ours[~valid, j]).all(), f"{coin}: value on a skipped (NaN) bar"
        series = [p[valid].reset_index(drop=True) for p in parts]
        expected = np.asarray(ref(*series), dtype=float)
        got = ours[valid, j]
        np.testing.assert_array_equal(np.isnan(got[skip:]), np.isnan(expected[skip:]), err_msg=coin)
        np.testing.assert_allclose(got[skip:], expected[skip:], rtol=rtol, atol=atol, err_msg=coin)
        assert np.isfinite(got[-1]), f"{coin}: last value not finite (gap poisoned the series?)"


def hlc(frame):
    return frame["high"].values, frame["low"].values, frame["close"].values


# ---------------------------------------------------------------- against vectorbt


@pytest.mark.parametrize("span", [8, 21, 200])
def test_ema_matches_vectorbt(frame, span):
    check_per_coin(ind.ema(frame["close"].values, span), frame,
                   lambda c: vbt.MA.run(c, span, ewm=True).ma.values)


@pytest.mark.parametrize("n", [20, 200])
def test_sma_matches_vectorbt(frame, n):
    check_per_coin(ind.sma(frame["close"].values, n), frame, lambda c: vbt.MA.run(c, n).ma.values)


def test_bollinger_matches_vectorbt(frame):
    mid, up, lo, width = ind.bollinger(frame["close"].values, 20, 2.0)
    ref = lambda c: vbt.BBANDS.run(c, 20, alpha=2.0)  # noqa: E731
    check_per_coin(mid, frame, lambda c: ref(c).middle.values)
    check_per_coin(up, frame, lambda c: ref(c).upper.values, rtol=1e-8)
    check_per_coin(lo, frame, lambda c: ref(c).lower.values, rtol=1e-8)
    check_per_coin(width, frame, lambda c: ((ref(c).upper - ref(c).lower) / ref(c).middle).values,
                   rtol=1e-6)


@pytest.mark.parametrize("n", [20, 168])
def test_rolling_z_matches_vectorbt(frame, n):
    def ref(c):
        return ((c - vbt.MA.run(c, n).ma) / vbt.MSTD.run(c, n).mstd).values

    check_per_coin(ind.rolling_z(frame["close"].values, n), frame, ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("n", [1, 20, 55])
def test_rolling_max_min_match_vectorbt(frame, n):
    check_per_coin(ind.rolling_max(frame["high"].values, n), frame,
                   lambda h: h.vbt.rolling_max(n, minp=n).values, fields=("high",))
    check_per_coin(ind.rolling_min(frame["low"].values, n), frame,
                   lambda lo: lo.vbt.rolling_min(n, minp=n).values, fields=("low",))


# ---------------------------------------------------------------- Wilder family: reference formula


@pytest.mark.parametrize("n", [14, 2])
def test_rsi_is_wilder(frame, n):
    check_per_coin(ind.rsi(frame["close"].values, n), frame, lambda c: rsi_ref(c, n), rtol=1e-8)


def test_rsi_agrees_with_vectorbt_after_warmup(frame):
    # vectorbt's RSI(ewm=True) uses alpha 2/(w+1): w = 2n - 1 gives Wilder's 1/n with another seed.
    check_per_coin(ind.rsi(frame["close"].values, 14), frame,
                   lambda c: vbt.RSI.run(c, 27, ewm=True).rsi.values, skip=600, rtol=1e-6)


def test_atr_is_wilder(frame):
    check_per_coin(ind.atr(hlc(frame), 14), frame, lambda h, lo, c: atr_ref(h, lo, c, 14),
                   fields=("high", "low", "close"), rtol=1e-8)


def test_atr_agrees_with_vectorbt_after_warmup(frame):
    check_per_coin(ind.atr(hlc(frame), 14), frame,
                   lambda h, lo, c: vbt.ATR.run(h, lo, c, 27, ewm=True).atr.values,
                   fields=("high", "low", "close"), skip=600, rtol=1e-6)


@pytest.mark.parametrize("n", [14, 5])
def test_adx_is_wilder(frame, n):
    h, lo, c = hlc(frame)
    out = ind.adx(h, lo, c, n)
    check_per_coin(out, frame, lambda h, lo, c: adx_ref(h, lo, c, n), fields=("high", "low", "close"),
                   rtol=1e-7)
    assert np.nanmin(out) >= 0 and np.nanmax(out) <= 100


@pytest.mark.parametrize("n", [10, 48])
def test_trend_efficiency(frame, n):
    out = ind.trend_efficiency(frame["close"].values, n)
    check_per_coin(out, frame, lambda c: efficiency_ref(c, n), rtol=1e-7)
    assert np.nanmin(out) >= 0 and np.nanmax(out) <= 1 + 1e-12


# ---------------------------------------------------------------- gaps, causality, edge cases


def test_gaps_are_skipped_not_poisoning():
    x = np.array([np.nan, np.nan, 1.0, 2.0, 3.0, np.nan, np.nan, 4.0, 5.0, np.nan, 6.0])
    np.testing.assert_array_equal(
        ind.sma(x, 3), [np.nan, np.nan, np.nan, np.nan, 2.0, np.nan, np.nan, 3.0, 4.0, np.nan, 5.0])
    np.testing.assert_array_equal(
        ind.lag(x, 1), [np.nan, np.nan, np.nan, 1.0, 2.0, np.nan, np.nan, 3.0, 4.0, np.nan, 5.0])
    np.testing.assert_array_equal(
        ind.rolling_max(x, 2), [np.nan, np.nan, np.nan, 2.0, 3.0, np.nan, np.nan, 4.0, 5.0, np.nan, 6.0])
    # The ATR across a gap uses the last valid close as the previous close.
    h = np.array([11.0, np.nan, 20.0])
    lo = np.array([9.0, np.nan, 19.0])
    c = np.array([10.0, np.nan, 19.5])
    np.testing.assert_array_equal(ind.true_range((h, lo, c)), [2.0, np.nan, 10.0])


def test_indicators_are_causal():
    df = _synthetic()
    h, lo, c = hlc(df)
    cut = 900
    funcs = {
        "ema": lambda h, lo, c: ind.ema(c, 21), "rsi": lambda h, lo, c: ind.rsi(c),
        "atr": lambda h, lo, c: ind.atr((h, lo, c)), "adx": lambda h, lo, c: ind.adx(h, lo, c),
        "z": lambda h, lo, c: ind.rolling_z(c, 50), "bb": lambda h, lo, c: ind.bollinger(c)[3],
        "eff": lambda h, lo, c: ind.trend_efficiency(c, 20), "max": lambda h, lo, c: ind.rolling_max(h, 20),
    }
    rng = np.random.default_rng(1)
    noise = lambda a: np.where(np.arange(len(a))[:, None] > cut, a * rng.uniform(0.5, 2, a.shape), a)  # noqa: E731
    for name, f in funcs.items():
        full = f(h, lo, c)
        np.testing.assert_array_equal(f(h[: cut + 1], lo[: cut + 1], c[: cut + 1]), full[: cut + 1], err_msg=name)
        np.testing.assert_array_equal(f(noise(h), noise(lo), noise(c))[: cut + 1], full[: cut + 1], err_msg=name)


def test_rolling_z_flat_window_is_zero_and_1d_input_works():
    x = np.concatenate([np.full(30, 5.0), [6.0]])
    z = ind.rolling_z(x, 10)
    assert z.shape == x.shape
    assert np.isnan(z[:9]).all() and (z[9:30] == 0).all()
    # z of the last value against the window [5 x 9, 6]: mean 5.1, population std 0.3
    assert z[30] == pytest.approx((6 - 5.1) / 0.3)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ConfigError, match="window must be an integer"):
        ind.ema(np.ones((10, 2)), 0)
    with pytest.raises(ConfigError, match="expected a"):
        ind.sma(np.ones((2, 2, 2)), 3)
    with pytest.raises(ConfigError, match="Market or a"):
        ind.atr(np.ones((10, 2)))
    with pytest.raises(ConfigError, match="different shapes"):
        ind.adx(np.ones((10, 2)), np.ones((10, 3)), np.ones((10, 2)))


def test_memory_layouts_give_identical_results():
    """C order, Fortran order and strided views take different kernel drivers; same numbers."""
    df = _synthetic()
    h, lo, c = (np.tile(a, (1, 9)) for a in hlc(df))  # 18 coins: two blocks of 8 and a tail
    layouts = {
        "C": lambda a: np.ascontiguousarray(a),
        "F": lambda a: np.asfortranarray(a),
        "F bar slice": lambda a: np.asfortranarray(np.vstack([a, a]))[: len(a)],
        "strided": lambda a: np.ascontiguousarray(np.repeat(a, 2, axis=1))[:, ::2],
    }
    funcs = {
        "ema": lambda h, lo, c: ind.ema(c, 21), "rsi": lambda h, lo, c: ind.rsi(c),
        "atr": lambda h, lo, c: ind.atr((h, lo, c)), "adx": lambda h, lo, c: ind.adx(h, lo, c),
        "z": lambda h, lo, c: ind.rolling_z(c, 50), "eff": lambda h, lo, c: ind.trend_efficiency(c, 20),
        "min": lambda h, lo, c: ind.rolling_min(lo, 20), "lag": lambda h, lo, c: ind.lag(c, 3),
        "bb": lambda h, lo, c: np.hstack(ind.bollinger(c)),
    }
    for name, f in funcs.items():
        ref = f(h, lo, c)
        for lay, conv in layouts.items():
            np.testing.assert_array_equal(f(conv(h), conv(lo), conv(c)), ref, err_msg=f"{name} {lay}")
