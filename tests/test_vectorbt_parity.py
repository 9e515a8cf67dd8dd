"""The kernel against vectorbt `Portfolio.from_signals` on the v2-equivalent case.

Both sides are configured to the same semantics (vectorbt 1.2, vectorbt/portfolio/nb.py):
- A signal at the close of t fills at the open of t+1: vectorbt gets the signal arrays shifted
  by one bar and `price=open`.
- The fill bar: ours checks its range (the open is the fill, the rest of the bar comes after
  it); vectorbt cannot be configured to: in `simulate_from_signal_func_nb` the stop block of
  bar i runs before the bar's order and only for a stop armed by an earlier fill (`sl_init_i`
  is set when the order fills). So the "stops" signals leave out every entry whose fill bar
  reaches its stop or target; the fill-bar rule itself is pinned by hand-computed cases in
  test_kernel_cases.py (stop inside the fill bar, hold = 1).
- Stops: ours is a price distance from the fill price; vectorbt's is a fraction of its
  `stop_entry_price`, set to FillPrice, so sl_stop = stop / fill and tp_stop = target * stop /
  fill. A bar opening beyond the stop fills at the open on both sides (`get_stop_price_nb`
  returns the open); the stop is checked before the target on both sides.
- Stop fills pay slippage on our side; vectorbt's default StopLimit exit does not, so it gets
  `stop_exit_price="stopmarket"`, which applies slippage to stop fills.
- Sizing: ours "fraction" (notional + entry fee = fraction * equity) is vectorbt's
  SizeType.Percent of cash, flat before every entry here.
- Our segment closes every position at the last bar's close (end_of_data): vectorbt gets an
  exit on the last bar with price = close there.
Differences by design, kept out of the signals (each is covered by a hand-computed case):
- an exit signal and a stop in the same bar: vectorbt lets the bar's stop replace the user
  signal, we fill the exit at the open, before the bar's range exists. So one case has stops
  and no exit signals, the other exit signals and no stops (vectorbt sl NaN; ours a stop 99.9%
  away that no bar reaches);
- reversals: vectorbt's Percent sizing cannot reverse, so every set is single-direction;
- no funding, partial, trailing or liquidation (vectorbt has none), risk controls set so they
  never trigger, no signal on the last two bars.
Each coin is its own simulation (one column each), on its listed bars only.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.friction import V2
from harness.market import Market
from harness.signals import Signals
from harness.simulate import SimConfig, simulate

vbt = pytest.importorskip("vectorbt")

SHARED = Path(os.environ.get("HLQ_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
PARITY = replace(V2, funding=False, version="parity_v2_no_funding")
FEE, SLIP = PARITY.fee_bps * 1e-4, PARITY.slippage_bps * 1e-4
CONFIG = SimConfig(sizing="fraction", fraction=1.0, max_positions=1, daily_loss_halt=50.0,
                   kill_drawdown=50.0)
CASES = [(side, mode) for side in (1, -1) for mode in ("stops", "exits")]
REL = 1e-9


def _listed_only(market: Market, coin: str) -> Market:
    """One coin on its listed bars (a gapless column for both engines)."""
    m = market.select([coin])
    keep = m.listed[:, 0]
    arrays = {n: getattr(m, n)[keep] for n in ("open", "high", "low", "close", "volume", "funding",
                                               "premium", "open_interest", "listed")}
    return Market(index=m.index[keep], coins=m.coins, interval=m.interval, source=m.source,
                  synthetic=m.synthetic, **arrays)


def _ema(x: np.ndarray, n: int) -> np.ndarray:
    return pd.Series(x).ewm(span=n, adjust=False).mean().to_numpy()


def _signals(m: Market, side: int, mode: str) -> Signals:
    c = m.close[:, 0]
    fast, slow = _ema(c, 8), _ema(c, 21)
    above = fast > slow
    up = above & ~np.r_[True, above[:-1]]
    down = ~above & np.r_[False, above[:-1]]
    entry, exit_ = (up, down) if side > 0 else (down, up)
    entry[-2:] = False
    exit_[-2:] = False
    atr = pd.Series(m.high[:, 0] - m.low[:, 0]).rolling(14, min_periods=1).mean().to_numpy()
    sig = Signals.empty(m, f"parity_{side}_{mode}")
    sig.direction[entry, 0] = side
    sig.score[entry, 0] = 1.0
    if mode == "stops":
        t = np.flatnonzero(entry)
        fill = m.open[t + 1, 0] * (1 + side * SLIP)
        stop, target = fill - side * 2.0 * atr[t], fill + side * 6.0 * atr[t]
        lo, hi = m.low[t + 1, 0], m.high[t + 1, 0]
        reach = (lo <= stop) | (hi >= target) if side > 0 else (hi >= stop) | (lo <= target)
        sig.direction[t[reach], 0] = 0  # the fill bar would decide it: vectorbt cannot say
        sig.stop[entry, 0] = 2.0 * atr[entry]
        sig.target[entry, 0] = 3.0
    else:
        sig.stop[entry, 0] = 0.999 * c[entry]
        sig.exit[exit_, 0] = True
    return sig


def _vectorbt(m: Market, sigs: list[Signals]) -> vbt.Portfolio:
    n, k = m.n_bars, len(sigs)
    o, h, lo, c = (np.repeat(getattr(m, f), k, axis=1) for f in ("open", "high", "low", "close"))
    shift = np.zeros((n, k), dtype=bool)
    le, se, lx, sx = shift.copy(), shift.copy(), shift.copy(), shift.copy()
    sl, tp = np.full((n, k), np.nan), np.full((n, k), np.nan)
    for j, s in enumerate(sigs):
        d = s.direction[:-1, 0]
        side = int(d[d != 0][0])
        fill = o[1:, j] * (1 + side * SLIP)
        (le if side > 0 else se)[1:, j] = d != 0
        (lx if side > 0 else sx)[1:, j] = s.exit[:-1, 0]
        if "stops" in s.strategy:
            sl[1:, j] = s.stop[:-1, 0] / fill
            tp[1:, j] = s.target[:-1, 0] * s.stop[:-1, 0] / fill
    price = o.copy()
    price[-1] = c[-1]  # end of data: close at the last close
    lx[-1], sx[-1] = True, True
    return vbt.Portfolio.from_signals(
        close=c, entries=le, exits=lx, short_entries=se, short_exits=sx, price=price, open=o,
        high=h, low=lo, size=CONFIG.fraction, size_type="percent", fees=FEE, slippage=SLIP,
        sl_stop=sl, tp_stop=tp, stop_entry_price="fillprice", stop_exit_price="stopmarket",
        init_cash=CONFIG.initial_equity, freq="1h",
    )


def _check_market(market: Market, coins: list[str]) -> None:
    for coin in coins:
        m = _listed_only(market, coin)
        sigs = [_signals(m, side, mode) for side, mode in CASES]
        ours = simulate(m, sigs, friction=PARITY, config=CONFIG)
        pf = _vectorbt(m, sigs)
        rec = pf.trades.records
        value = pf.value().to_numpy()[-1]
        for j, s in enumerate(sigs):
            tr = ours.trades(j)
            theirs = rec[rec["col"] == j]
            assert len(tr) == len(theirs) >= 20, (coin, s.strategy, len(tr), len(theirs))
            np.testing.assert_array_equal(tr["entry_bar"], theirs["entry_idx"], err_msg=f"{coin} {s.strategy}")
            np.testing.assert_array_equal(tr["exit_bar"], theirs["exit_idx"], err_msg=f"{coin} {s.strategy}")
            for ours_col, their_col in (("entry_price", "entry_price"), ("exit_price", "exit_price"),
                                        ("size", "size")):
                np.testing.assert_allclose(tr[ours_col], theirs[their_col], rtol=REL, atol=0,
                                           err_msg=f"{coin} {s.strategy} {ours_col}")
            np.testing.assert_allclose(tr["pnl"], theirs["pnl"], rtol=0, atol=REL * tr["notional"].max(),
                                       err_msg=f"{coin} {s.strategy} pnl")
            assert ours.metrics(j).final_equity == pytest.approx(value[j], rel=REL), (coin, s.strategy)
            reasons = set(tr["exit_reason"])
            if "stops" in s.strategy:
                assert {"stop", "target"} <= reasons, reasons
            else:
                assert "signal" in reasons, reasons


def test_parity_on_the_embedded_default(tmp_path_factory):
    from harness.sources import load_market

    market = load_market("embedded", store=tmp_path_factory.mktemp("store"))
    _check_market(market, ["BTC", "ETH", "SOL"])


def test_parity_on_real_btc_eth_sol():
    folder = SHARED / "hyperliquid"
    if not (folder / "candles_1h.parquet").is_file():
        pytest.skip(f"real data not found at {folder} (set HLQ_SHARED_DATA to ../shared/data)")
    from harness.sources import load_market

    _check_market(load_market(folder, coins=["BTC", "ETH", "SOL"]), ["BTC", "ETH", "SOL"])
