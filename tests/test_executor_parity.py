"""Paper and backtest agree: a month replayed through the executor gives the kernel's trades.

The backtest twin is computed independently of the executor's plumbing: the strategy's live
signals on the whole period, every cell outside the promoted buckets zeroed, one `simulate`
call. The executor instead sees one candle at a time, rebuilds its Market from its ledger,
accepts decisions bar by bar and diffs kernel runs; identical entries, exits and PnL (1e-9)
prove the masking, warm-up, diffing and idempotency do not break parity.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _executor_helpers import (
    backtest,
    bucket,
    every_bucket,
    ledger_table,
    masked_signals,
    write_candidates,
)

from executor.runner import PaperOptions, open_paper, run
from harness.simulate import SimConfig
from harness.sources import load_market

SHARED = Path(os.environ.get("HLQ_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
COINS = ("ARB", "AVAX", "BTC", "DOGE", "ETH", "LINK", "SOL")
TOL = 1e-9


def _replay(tmp: Path, buckets: list[dict], data: str, interval: str, start: str, end: str,
            warmup: int, sim: SimConfig):
    opts = PaperOptions(candidates=write_candidates(tmp / "c.json", buckets), ledger=tmp / "p.sqlite",
                        feed="replay", data=data, start=start, end=end, warmup_bars=warmup, sim=sim,
                        results=None)
    engine, feed = open_paper(opts)
    run(engine, feed, opts)
    return engine, feed, opts


def _twin(feed, strategy: str, buckets: list[dict], sim: SimConfig):
    m = feed.market
    sig = masked_signals(m, strategy, {}, buckets, feed.first)
    return m, backtest(m, sig, feed.first, sim)


def _check_parity(engine, market, res) -> int:
    trades = res.trades(0)
    pos = ledger_table(engine.ledger.path, "positions", "entry_ts, coin")
    closed_k = trades[trades.exit_reason != "end_of_data"].sort_values(["entry_ts", "coin"], ignore_index=True)
    open_k = trades[trades.exit_reason == "end_of_data"].sort_values(["entry_ts", "coin"], ignore_index=True)
    closed_l = pos[pos.status == "closed"].reset_index(drop=True)
    open_l = pos[pos.status == "open"].reset_index(drop=True)
    assert len(closed_k) == len(closed_l) and len(open_k) == len(open_l)
    iso = lambda s: pd.to_datetime(s, utc=True)  # noqa: E731
    assert list(closed_k.coin) == list(closed_l.coin)
    assert (closed_k.side.to_numpy() == closed_l.side.to_numpy()).all()
    assert (iso(closed_k.entry_ts) == iso(closed_l.entry_ts)).all()
    assert (iso(closed_k.exit_ts) == iso(closed_l.exit_ts)).all()
    assert list(closed_k.exit_reason) == list(closed_l.exit_reason)
    for a, b in (("entry_price", "entry_price"), ("exit_price", "exit_price"), ("pnl", "pnl"),
                 ("r_multiple", "r_multiple"), ("fees", "fees"), ("funding", "funding"), ("size", "size")):
        np.testing.assert_allclose(closed_l[b].astype(float), closed_k[a], rtol=0, atol=TOL)
    assert list(open_k.coin) == list(open_l.coin)
    assert (iso(open_k.entry_ts) == iso(open_l.entry_ts)).all()
    np.testing.assert_allclose(open_l.entry_price.astype(float), open_k.entry_price, rtol=0, atol=TOL)
    # equity at every bar close, but the last (the backtest liquidates there, the executor marks)
    eq_k = res.equity(0)
    eq_l = ledger_table(engine.ledger.path, "equity", "ts")
    assert len(eq_l) == len(eq_k)
    assert (iso(eq_l.ts) == eq_k.index).all()
    np.testing.assert_allclose(eq_l.equity.to_numpy()[:-1], eq_k.to_numpy()[:-1], rtol=0, atol=TOL)
    return len(trades)


def test_month_replay_matches_the_backtest(tmp_path):
    """A month of the embedded market at 4h, zscore_reversion, some of its buckets promoted.

    An active case: partial take-profits, breakeven and trailing stops and daily loss halts
    happen in it, and the position limit turns orders away."""
    sim = SimConfig(max_positions=3)
    buckets = every_bucket("zscore_reversion", COINS[:-1], interval="4h", vols=("low", "mid"))
    buckets.append(bucket("zscore_reversion", ("SOL",), "long", "US_MAIN", "NEUTRAL", "high", interval="4h"))
    engine, feed, opts = _replay(tmp_path, buckets, "embedded", "4h", "2024-03-01", "2024-04-01", 300, sim)
    market, res = _twin(feed, "zscore_reversion", buckets, sim)
    n = _check_parity(engine, market, res)
    assert n >= 8, "the case must trade to prove anything"
    led = engine.ledger
    live = ledger_table(led.path, "decisions", "ts, coin", ()).query("kind == 'live'")
    assert (live.reason == "no_bucket").sum() > 0, "some signals must fall outside the buckets"
    # every filled order is a position, each position has its entry fill, exits add up
    orders = ledger_table(led.path, "orders", "id")
    pos = ledger_table(led.path, "positions", "id")
    assert set(orders.loc[orders.status == "filled", "position_id"]) == set(pos.id)
    assert not (orders.status == "pending").any() or orders.loc[orders.status == "pending", "ts"].max() == live.ts.max()
    # every fill is the kernel's own (price, quantity, fee, slippage), never recomputed
    fills = ledger_table(led.path, "fills", "id")
    closed = pos[pos.status == "closed"].set_index("id")
    kt = res.trades(0)
    kt = kt[kt.exit_reason != "end_of_data"].assign(entry_ts=lambda d: d.entry_ts.astype(str))
    by_key = {(c, pd.Timestamp(e).strftime("%Y-%m-%dT%H:%M:%SZ")): r for c, e, r in
              zip(kt.coin, kt.entry_ts, kt.itertuples(), strict=True)}
    for pid, p in closed.iterrows():
        k = by_key[(p.coin, p.entry_ts)]
        f = fills[fills.position_id == pid].set_index("kind")
        want = {"entry": (k.size, k.entry_price, k.entry_fee, k.entry_slippage_bps),
                "exit": (k.exit_qty, k.exit_price, k.exit_fee, k.exit_slippage_bps)}
        if k.partial_taken:
            want["partial"] = (k.partial_qty, k.partial_price, k.partial_fee, k.partial_slippage_bps)
        assert set(f.index) == set(want)
        for kind, vals in want.items():
            np.testing.assert_allclose(f.loc[kind, ["qty", "price", "fee", "slippage_bps"]].astype(float),
                                       vals, rtol=1e-12)
    # a stop moved to breakeven by the partial exits at the entry price or worse (a gap)
    be = closed[closed.exit_reason == "partial"]
    assert len(be), "the case must take partial profits"
    final = fills[fills.kind == "exit"].set_index("position_id").loc[be.index]
    level = be.entry_price * (1 - be.side * final.slippage_bps * 1e-4)
    assert (be.side * (final.price - level) <= 1e-9).all()
    fund = ledger_table(led.path, "funding", "ts").groupby("position_id").amount.sum()
    np.testing.assert_allclose(fund.reindex(closed.index, fill_value=0.0), closed.funding, atol=1e-9)

    # idempotent: the same replay again processes nothing and writes nothing
    before = {t: len(ledger_table(led.path, t, "rowid")) for t in ("decisions", "fills", "equity", "bars")}
    assert run(engine, feed, opts) == 0
    assert {t: len(ledger_table(led.path, t, "rowid")) for t in before} == before
    led.close()


@pytest.mark.slow
def test_real_month_hourly_matches_the_backtest(tmp_path):
    """March 2025 of the real Hyperliquid 1h data (slow: 720 candles one at a time)."""
    data = SHARED / "hyperliquid"
    if not (data / "candles_1h.parquet").exists():
        pytest.skip(f"real data not found at {data} (set HLQ_SHARED_DATA)")
    sim = SimConfig()
    buckets = every_bucket("ema_pullback", ("BTC", "ETH", "SOL"), sides=("short",))
    buckets += every_bucket("ema_pullback", ("BTC", "ETH"), sides=("long",), vols=("mid",))
    engine, feed, _ = _replay(tmp_path, buckets, str(data), "1h", "2025-03-01", "2025-03-31", 500, sim)
    _, res = _twin(feed, "ema_pullback", buckets, sim)
    assert _check_parity(engine, feed.market, res) > 0
    engine.ledger.close()


def test_warmup_comes_from_before_start(tmp_path):
    """The strategies see `warmup_bars` bars before the first traded one, from the same data."""
    buckets = every_bucket("trend_alpha", ("BTC",), interval="4h", sides=("long",), sessions=("ASIA",),
                           regimes=("LONG",), vols=("mid",))
    opts = PaperOptions(candidates=write_candidates(tmp_path / "c.json", buckets),
                        ledger=tmp_path / "p.sqlite", feed="replay", data="embedded", start="2024-03-01",
                        end="2024-03-02", warmup_bars=50, results=None)
    engine, feed = open_paper(opts)
    m = load_market("embedded", "4h", coins=["BTC"], start="2024-01-01", end="2024-03-01")
    candles = ledger_table(engine.ledger.path, "candles", "ts")
    assert len(candles) == 50
    assert pd.Timestamp(candles.ts.iloc[0]) == m.index[-50]
    assert feed.first_bar == pd.Timestamp("2024-03-01", tz="UTC")
    engine.ledger.close()


def test_window_rebuilds_the_market_bar_by_bar():
    """Candles and funding rows in, one bar at a time: the same Market as built at once, gaps
    (one coin, or every coin) and funding on unlisted bars included."""
    from dataclasses import replace

    from executor.window import Window, market_rows
    from harness.market import ARRAY_FIELDS

    m = load_market("embedded", "1h", coins=["BTC", "ETH", "SOL"], start="2024-02-01", end="2024-02-04")
    listed = m.listed.copy()
    listed[10, 1] = False
    listed[20, :] = False
    arrays = {k: np.where(listed, getattr(m, k), np.nan) for k in ("open", "high", "low", "close", "volume")}
    funding = m.funding.copy()
    funding[20, :] = 1e-5  # paid while no coin traded
    m = replace(m, listed=listed, funding=funding, _fingerprint=[], **arrays)
    w = Window("1h", m.coins, m.index[0], m.source)
    head = [market_rows(m, t) for t in range(24)]
    w.add(pd.concat([h[0] for h in head]), pd.concat([h[1] for h in head]))
    for t in range(24, m.n_bars):
        w.add(*market_rows(m, t), bar=m.index[t])
    got = w.market(m.n_bars + 1)
    assert (got.index[:-1] == m.index).all() and got.coins == m.coins
    for name in ARRAY_FIELDS + ("listed",):
        np.testing.assert_array_equal(getattr(got, name)[:-1], getattr(m, name), err_msg=name)
    assert not got.listed[-1].any() and np.isnan(got.close[-1]).all()  # the empty bar after now
