"""The kernel benchmark case (DESIGN section 12) and the three things it is timed against.

Case: 17,520 hourly bars x 1,000 parameter sets on one coin, a seeded synthetic path (Student-t
returns with clustered volatility, so stops and targets fire as on real data) with a BTC-like
volume (about $1B a day), so friction v5's per-coin slippage is estimated (half a tick plus
square-root impact, a few bps) rather than capped. Set i trades an EMA(fast_i)/EMA(slow_i)
cross both ways with an ATR stop (k_i x ATR14) and a 3R target.

- ours: `simulate` under the default friction (v5: fees, per-coin slippage, funding, partial,
  trailing, liquidation, risk controls, every fill recorded) plus `all_metrics()`. The cost
  estimate is made once per market and cached (`coin_costs_cached`), as in a sweep: the warm-up
  call pays it.
- vectorbt: `Portfolio.from_signals` on the same entries (fees, slippage, sl_stop, tp_stop,
  next-open prices) plus `.sharpe_ratio()` and `.max_drawdown()`.
- the bare loop: the near-limit reference, a numba loop over sets and bars that does only what
  any such backtest must (next-open fills with fee and slippage, stop and target, opposite
  signals, the mark, in-loop drawdown and daily-return Sharpe), on the same Signals.
- detail: the same case with 15m bars synthesized inside each hourly bar (open first, close
  last, the hour's high and low reached in one of them each, every 15m bar within the hour).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from numba import njit, prange

N_BARS = 17_520
N_SETS = 1_000
SEED = 20_240_101
COINS_PER_HOUR = 1_000.0  # x ~$40k: ~$1B a day, BTC-like
TARGET_R = 3.0
DETAIL_RATIO = 4  # 15m inside 1h


def _path(n_bars: int, seed: int):
    rng = np.random.default_rng(seed)
    log_vol = np.zeros(n_bars)
    shocks = rng.normal(0, 0.08, n_bars)
    for t in range(1, n_bars):
        log_vol[t] = 0.98 * log_vol[t - 1] + shocks[t]
    ret = 0.005 * np.exp(log_vol) * rng.standard_t(4, n_bars) / np.sqrt(2.0)
    close = 40_000.0 * np.exp(np.cumsum(ret))
    open_ = np.r_[40_000.0, close[:-1]]
    wick = 0.002 * np.exp(log_vol)
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 1, n_bars)) * wick)
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 1, n_bars)) * wick)
    funding = 1.25e-5 + 2e-5 * rng.standard_normal(n_bars)
    volume = COINS_PER_HOUR * np.exp(0.5 * rng.standard_normal(n_bars) + 0.5 * log_vol)
    return open_, high, low, close, funding, volume, rng


def kernel_case(n_bars: int = N_BARS, n_sets: int = N_SETS, seed: int = SEED,
                with_vectorbt: bool = True):
    """(market, signals, vectorbt inputs or None) of the benchmark case."""
    from harness.market import Market
    from harness.signals import Signals

    open_, high, low, close, funding, volume, _ = _path(n_bars, seed)
    index = pd.date_range("2023-01-01", periods=n_bars, freq="h", tz="UTC")

    def col(x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x[:, None])

    nan = np.full((n_bars, 1), np.nan)
    market = Market(index, ("BTC",), "1h", col(open_), col(high), col(low), col(close),
                    col(volume), col(funding), nan, nan.copy(),
                    np.ones((n_bars, 1), dtype=bool), source=f"bench synthetic (seed {seed})",
                    synthetic=True)
    atr = pd.Series(high - low).rolling(14, min_periods=1).mean().to_numpy()
    ema_cache: dict[int, np.ndarray] = {}

    def ema(n: int) -> np.ndarray:
        if n not in ema_cache:
            ema_cache[n] = pd.Series(close).ewm(span=n, adjust=False).mean().to_numpy()
        return ema_cache[n]

    base = Signals.empty(market, "bench_ema_cross")
    target = np.full((n_bars, 1), TARGET_R)
    score = np.ones((n_bars, 1))
    mults = (1.5, 2.0, 2.5, 3.0)
    stops = {k: col(k * atr) for k in mults}
    sigs, long_e, short_e, sl = [], [], [], []
    for i in range(n_sets):
        fast = 5 + i % 50
        slow = fast + 5 * (1 + (i // 50) % 20)
        above = ema(fast) > ema(slow)
        up = above & ~np.r_[True, above[:-1]]
        down = ~above & np.r_[False, above[:-1]]
        direction = np.zeros((n_bars, 1), dtype=np.int8)
        direction[up, 0] = 1
        direction[down, 0] = -1
        k = mults[i % len(mults)]
        sigs.append(Signals(base.strategy, direction, stops[k], target, base.exit, score,
                            base.session, base.regime, base.vol_bucket, base.setup, base.hold,
                            base.trail))
        if with_vectorbt:
            long_e.append(np.r_[False, up[:-1]])  # filled at the next open
            short_e.append(np.r_[False, down[:-1]])
            sl.append(np.r_[np.nan, (k * atr / close)[:-1]])
    if not with_vectorbt:
        return market, sigs, None
    vbt_inputs = {"open": col(open_), "high": col(high), "low": col(low), "close": col(close),
                  "entries": np.column_stack(long_e), "short_entries": np.column_stack(short_e),
                  "sl_stop": np.column_stack(sl)}
    return market, sigs, vbt_inputs


def detail_market(market, seed: int = SEED):
    """15m bars consistent with each hourly bar of a one-coin market: the first opens at the
    hour's open, the last closes at its close, the path in between stays inside the hour's
    range, and one 15m bar reaches the high and one the low."""
    from harness.market import Market

    rng = np.random.default_rng(seed + 1)
    o, h, lo, c = (getattr(market, f)[:, 0] for f in ("open", "high", "low", "close"))
    n, r = len(o), DETAIL_RATIO
    pts = np.empty((n, r + 1))
    pts[:, 0], pts[:, r] = o, c
    pts[:, 1:r] = lo[:, None] + rng.random((n, r - 1)) * (h - lo)[:, None]
    sub_o, sub_c = pts[:, :-1], pts[:, 1:]
    sub_h, sub_l = np.maximum(sub_o, sub_c), np.minimum(sub_o, sub_c)
    rows = np.arange(n)
    sub_h[rows, rng.integers(0, r, n)] = h
    sub_l[rows, rng.integers(0, r, n)] = lo
    index = pd.date_range(market.index[0], periods=n * r, freq="15min", tz="UTC")

    def col(x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x.reshape(-1)[:, None])

    nan = np.full((n * r, 1), np.nan)
    vol = np.repeat(market.volume[:, 0] / r, r)
    return Market(index, market.coins, "15m", col(sub_o), col(sub_h), col(sub_l), col(sub_c),
                  col(vol), np.zeros((n * r, 1)), nan, nan.copy(), np.ones((n * r, 1), dtype=bool),
                  source="bench synthetic 15m", synthetic=True)


def run_kernel(market, sigs, detail=None) -> float:
    from harness.simulate import simulate

    t0 = time.perf_counter()
    res = simulate(market, sigs, detail=detail)
    res.all_metrics()
    return time.perf_counter() - t0


def run_vectorbt(inp: dict, columns: slice = slice(None)) -> float:
    import vectorbt as vbt

    from harness.friction import V4

    t0 = time.perf_counter()
    sl = inp["sl_stop"][:, columns]
    pf = vbt.Portfolio.from_signals(
        close=inp["close"], entries=inp["entries"][:, columns],
        short_entries=inp["short_entries"][:, columns], price=inp["open"], open=inp["open"],
        high=inp["high"], low=inp["low"], size=1.0, size_type="percent",
        upon_opposite_entry="close", fees=V4.fee_bps * 1e-4, slippage=V4.slippage_bps * 1e-4,
        sl_stop=sl, tp_stop=TARGET_R * sl, init_cash=10_000.0, freq="1h",
    )
    pf.sharpe_ratio()
    pf.max_drawdown()
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------- bare loop

@njit(cache=True, parallel=True, error_model="numpy")
def bare_loop_nb(open_, high, low, close, direction, stop_of, stops, day, target_r, fee, slip,
                 risk, max_lev, init):
    """Per set (prange): enter at the next open on a signal (risk sizing, leverage cap, fee and
    slippage), close at the stop or target inside a bar (stop first) or at the next open on an
    opposite signal; mark at every close; max drawdown and the Sharpe of daily returns in-loop.
    Returns (n_sets, 3): final equity, annualized Sharpe, max drawdown."""
    n_sets, n_bars = direction.shape
    out = np.empty((n_sets, 3))
    for p in prange(n_sets):
        st = stops[stop_of[p]]
        cash = init
        side = 0
        size = entry = stop = tgt = 0.0
        peak = init
        mdd = 0.0
        day_start = init
        cur = day[0]
        s1 = s2 = 0.0
        nd = 0
        eq = init
        for t in range(1, n_bars):
            sig = direction[p, t - 1]
            o = open_[t]
            if side != 0 and sig == -side:  # opposite signal: out at this open
                px = o * (1.0 - side * slip)
                cash += side * size * (px - entry) - size * px * fee
                side = 0
            if side == 0 and sig != 0:
                eq_now = cash
                fill = o * (1.0 + sig * slip)
                size = eq_now * risk / st[t - 1]
                if size * fill > max_lev * eq_now:
                    size = max_lev * eq_now / fill
                cash -= size * fill * fee
                side = sig
                entry = fill
                stop = fill - side * st[t - 1]
                tgt = fill + side * target_r * st[t - 1]
            if side != 0:
                adverse = low[t] if side > 0 else high[t]
                favour = high[t] if side > 0 else low[t]
                px = 0.0
                if side * (o - stop) <= 0.0 or side * (adverse - stop) <= 0.0:
                    px = min(o, stop) if side > 0 else max(o, stop)
                elif side * (favour - tgt) >= 0.0:
                    px = max(o, tgt) if side > 0 else min(o, tgt)
                if px > 0.0:
                    px *= 1.0 - side * slip
                    cash += side * size * (px - entry) - size * px * fee
                    side = 0
            eq = cash + (side * size * (close[t] - entry) if side != 0 else 0.0)
            if eq > peak:
                peak = eq
            elif 1.0 - eq / peak > mdd:
                mdd = 1.0 - eq / peak
            if day[t] != cur:
                r = eq / day_start - 1.0
                s1 += r
                s2 += r * r
                nd += 1
                day_start = eq
                cur = day[t]
        mean = s1 / max(nd, 1)
        var = s2 / max(nd, 1) - mean * mean
        out[p, 0] = eq
        out[p, 1] = mean / np.sqrt(var) * np.sqrt(365.0) if var > 0.0 else 0.0
        out[p, 2] = mdd
    return out


def run_bare(market, sigs) -> float:
    """The bare loop on the same Signals: stacking what it reads is part of its time."""
    from harness.friction import V4

    t0 = time.perf_counter()
    direction = np.stack([s.direction[:, 0] for s in sigs])
    ids: dict[int, int] = {}
    stop_of = np.array([ids.setdefault(id(s.stop), len(ids)) for s in sigs], dtype=np.int64)
    first = {i: s.stop for s in sigs for i in (ids[id(s.stop)],)}
    stops = np.stack([first[i][:, 0] for i in range(len(ids))])
    day = market.ts_ns // (86_400 * 10**9)
    bare_loop_nb(market.open[:, 0], market.high[:, 0], market.low[:, 0], market.close[:, 0],
                 direction, stop_of, stops, day, TARGET_R, V4.fee_bps * 1e-4,
                 V4.slippage_bps * 1e-4, 0.01, 3.0, 10_000.0)
    return time.perf_counter() - t0
