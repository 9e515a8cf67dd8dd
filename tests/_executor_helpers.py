"""Candidates documents and direct backtests for the executor tests."""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd

from executor.books import TRADED_FRICTION
from harness.manifest import harness_hash
from harness.market import Market
from harness.signals import REGIMES, SESSIONS, SIDES, VOL_BUCKETS, Signals
from harness.simulate import SimConfig, SimResult, simulate
from schemas.candidates import SCHEMA_VERSION, Gates
from strategies.base import get_strategy, make_params

EVIDENCE = {
    "n": 40, "mean_r": 0.4, "t_stat": 3.2, "p_value": 0.0014, "p_corrected": 0.02,
    "correction": "holm", "m_tests": 12, "win_rate": 0.5, "sharpe": 1.5, "max_dd_r": 6.0,
    "trial_sharpe": 2.5, "dsr": 0.97, "spa_p": 0.01, "p_oos_loss": 0.1, "pbo": 0.2,
    "n_trials": 200, "n_trials_effective": 40.0, "pooled_trials": 3,
    "stress": {"fee_mult": 1.5, "n": 40, "mean_r": 0.3},
    "lockbox": {"n": 8, "mean_r": 0.35, "t_stat": 1.1, "p_negative": 0.85, "mde": 0.7,
                "side_n": 20, "side_mean_r": 0.3, "passed": True},
}
LOOSE_KILL = {"max_drawdown_r": 1000.0, "window_trades": 1000, "min_win_rate": 0.0,
              "expected_r_low": -1000.0, "expected_r_high": 1000.0}


def bucket(strategy: str, coins, side: str, session: str, regime: str, vol_bucket: str,
           params: dict | None = None, interval: str = "1h", kill: dict | None = None) -> dict:
    return {"strategy": strategy, "interval": interval, "params": dict(params or {}),
            "run_id": "testrun", "trial": 0, "coins": list(coins), "side": side,
            "session": session, "regime": regime, "vol_bucket": vol_bucket,
            "evidence": EVIDENCE, "kill": dict(kill or LOOSE_KILL)}


def every_bucket(strategy: str, coins, params: dict | None = None, interval: str = "1h",
                 sides=("long", "short"), sessions=SESSIONS, regimes=REGIMES,
                 vols=VOL_BUCKETS, kill: dict | None = None) -> list[dict]:
    return [bucket(strategy, coins, *k, params=params, interval=interval, kill=kill)
            for k in itertools.product(sides, sessions, regimes, vols)]


def candidates_doc(buckets: list[dict], harness: str | None = None) -> dict:
    return {"schema_version": SCHEMA_VERSION, "generated_at": "2025-01-01T00:00:00Z",
            "harness_hash": harness or harness_hash(), "friction_version": TRADED_FRICTION.version,
            "data_fingerprint": "test", "data_source": "test", "gates": asdict(Gates()),
            "buckets": buckets}


def write_candidates(path: Path, buckets: list[dict], harness: str | None = None) -> Path:
    path.write_text(json.dumps(candidates_doc(buckets, harness), indent=1))
    return path


def masked_signals(market: Market, strategy: str, params: dict, buckets: list[dict],
                   first: int) -> Signals:
    """The strategy's live signals with every cell outside the buckets zeroed: the backtest
    twin of what the executor accepts (fit on the warm-up bars, as the executor does)."""
    strat = get_strategy(strategy)
    p = make_params(strat.params_cls, params)
    sig = strat.generate(market, p, "live", strat.fit(market.slice(0, first), p))
    keep = np.zeros_like(sig.direction, dtype=bool)
    for t, c in zip(*np.nonzero(sig.direction), strict=True):
        tags = (market.coins[c], SIDES[int(sig.direction[t, c])], SESSIONS[sig.session[t, c]],
                REGIMES[sig.regime[t, c]], VOL_BUCKETS[sig.vol_bucket[t, c]])
        keep[t, c] = any(b["strategy"] == strategy and tags[0] in b["coins"]
                         and tags[1:] == (b["side"], b["session"], b["regime"], b["vol_bucket"])
                         for b in buckets)
    return replace(sig, direction=np.where(keep, sig.direction, 0).astype(np.int8))


def backtest(market: Market, sig: Signals, first: int, config: SimConfig) -> SimResult:
    return simulate(market, sig, TRADED_FRICTION, config, segments=[(first, market.n_bars)])


def ledger_table(path: Path, table: str, order: str, drop: tuple[str, ...] = ()) -> pd.DataFrame:
    import sqlite3

    con = sqlite3.connect(path)
    try:
        df = pd.read_sql_query(f"SELECT * FROM {table} ORDER BY {order}", con)
    finally:
        con.close()
    return df.drop(columns=list(drop))


# ---- in-process engine runs on hand-made markets -------------------------------------------

def ohlc_market(close: np.ndarray, open_: np.ndarray | None = None, coins=("BTC", "C1"),
                start: str = "2024-01-01", wick: float = 0.002) -> Market:
    """Hourly market; open defaults to the previous close, high/low widen the body by `wick`."""
    close = np.asarray(close, dtype=np.float64)
    opn = np.vstack([close[:1], close[:-1]]) if open_ is None else np.asarray(open_, dtype=np.float64)
    shape = close.shape
    return Market(
        index=pd.date_range(start, periods=shape[0], freq="h", tz="UTC"), coins=tuple(coins),
        interval="1h", open=opn, high=np.maximum(opn, close) * (1 + wick),
        low=np.minimum(opn, close) * (1 - wick), close=close, volume=np.full(shape, 1e6),
        funding=np.zeros(shape), premium=np.full(shape, np.nan), open_interest=np.full(shape, np.nan),
        listed=np.isfinite(close), source="test ohlc")


def scripted_strategy(script: dict[pd.Timestamp, dict[str, tuple[int, float]]], name: str = "scripted"):
    """A RegisteredStrategy that signals (side, stop as a fraction of the close) at scripted bars."""
    from dataclasses import dataclass

    from strategies.base import RegisteredStrategy
    from strategies.common import finish

    @dataclass(frozen=True)
    class Params:
        pass

    def generate(market: Market, p, mode="live", fitted=None) -> Signals:
        d = np.zeros((market.n_bars, market.n_coins), dtype=np.int8)
        stop = np.zeros((market.n_bars, market.n_coins))
        for ts, cells in script.items():
            t = int(market.index.searchsorted(ts))
            if t < market.n_bars and market.index[t] == ts:
                for coin, (side, frac) in cells.items():
                    c = market.coin_index(coin)
                    d[t, c], stop[t, c] = side, frac * market.close[t, c]
        return finish(market, name, mode, d, stop, np.nan, 1.0, family=9)

    return RegisteredStrategy(name, Params, generate)


def start_engine(tmp: Path, market: Market, first: int, buckets: list[dict], sim: SimConfig,
                 kill_file: Path | None = None):
    """An Engine on a new ledger in `tmp` whose warm-up is market[:first]."""
    from executor.books import load_books
    from executor.engine import Engine
    from executor.ledger import Ledger
    from executor.settings import settings_for
    from executor.window import empty_candles, empty_funding, market_rows

    loaded = load_books(write_candidates(tmp / "c.json", buckets))
    led = Ledger.open(tmp / "p.sqlite")
    settings = settings_for(loaded, market.coins, market.index[0], market.index[first], sim,
                            "replay", market.label, market.synthetic,
                            kill_file=kill_file or tmp / "p.KILL")

    def history():
        parts = [market_rows(market, t) for t in range(first)]
        if not parts:
            return empty_candles(), empty_funding()
        return (pd.concat([p[0] for p in parts], ignore_index=True),
                pd.concat([p[1] for p in parts], ignore_index=True))

    return Engine.start(led, loaded, settings, history())


def feed_bars(engine, market: Market, t0: int, t1: int, lag: pd.Timedelta | None = None) -> None:
    """Hand bars [t0, t1) of `market` to the engine as a replay would (at the bar's close, or
    `lag` after its open: a late feed)."""
    from executor.feeds import BarRows
    from executor.window import market_rows

    step = pd.Timedelta(seconds=market.bar_seconds)
    for t in range(t0, t1):
        candles, funding = market_rows(market, t)
        engine.process(BarRows(market.index[t], candles, funding, market.index[t] + (lag or step)))
