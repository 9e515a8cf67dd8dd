"""Risk controls in the executor: the kill-switch file, the daily loss halt, the drawdown kill
switch and a new session after a person removes the file, bucket kill criteria, stale guard.

The markets are built by hand (flat prices, one gap) and a scripted strategy signals at chosen
bars, so each expected number follows from the v4 rules written in harness/kernel_nb.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _executor_helpers import (
    every_bucket,
    feed_bars,
    ledger_table,
    ohlc_market,
    scripted_strategy,
    start_engine,
)

from executor import report
from executor.books import TRADED_FRICTION
from executor.risk import bucket_kill, is_stale
from harness.simulate import SimConfig
from schemas.candidates import KillCriteria
from strategies import base

H = pd.Timedelta(hours=1)
DAY1 = pd.Timestamp("2024-01-02", tz="UTC")  # the first traded day; 2024-01-01 is warm-up
WARM = 24
SLIP = TRADED_FRICTION.slippage_bps * 1e-4


def _market(gap_at: pd.Timestamp | None = None, gap: float = 0.0, days: int = 3):
    """BTC and C1 flat at 100; C1 opens `gap` lower at `gap_at` and stays there."""
    n = 24 * (days + 1)
    index = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    close = np.full((n, 2), 100.0)
    if gap_at is not None:
        close[index >= gap_at, 1] = 100.0 * (1 - gap)
    open_ = np.vstack([close[:1], close[:-1]])
    return ohlc_market(close, open_, coins=("BTC", "C1"))


@pytest.fixture
def scripted(monkeypatch):
    """Register a scripted strategy for one test: script[ts] = {coin: (side, stop fraction)}."""
    script: dict = {}
    monkeypatch.setitem(base._REGISTRY, "scripted", scripted_strategy(script))
    return script


def _positions(engine) -> pd.DataFrame:
    return ledger_table(engine.ledger.path, "positions", "id")


def test_kill_switch_file_blocks_new_entries_until_removed(tmp_path, scripted):
    m = _market()
    for h in (2, 6):
        scripted[DAY1 + h * H] = {"C1": (1, 0.1)}
    kill = tmp_path / "halt.KILL"
    kill.write_text("stopped by hand\n")
    engine = start_engine(tmp_path, m, WARM, every_bucket("scripted", ("C1",)), SimConfig(), kill)
    feed_bars(engine, m, WARM, WARM + 4)  # the 02:00 signal arrives with the file present
    live = ledger_table(engine.ledger.path, "decisions", "ts").query("kind == 'live'")
    assert list(live.reason) == ["kill_switch"] and not live.accepted.any()
    assert len(ledger_table(engine.ledger.path, "orders", "id")) == 0
    assert report.status(engine.ledger, kill)["halts"]["kill_file"]
    kill.unlink()  # a person removes it: the 06:00 signal trades, filled at the 07:00 open
    feed_bars(engine, m, WARM + 4, WARM + 10)
    pos = _positions(engine)
    assert len(pos) == 1 and pos.entry_ts.iloc[0] == "2024-01-02T07:00:00Z"
    assert pos.entry_price.iloc[0] == pytest.approx(100.0 * (1 + SLIP), abs=1e-12)
    assert report.status(engine.ledger, kill)["halts"]["kill_file"] is False
    engine.ledger.close()


def test_daily_loss_halt_is_soft_and_releases_at_midnight(tmp_path, scripted):
    """Long C1 (2x equity notional), a 4% gap down: an 8% day. The halt is soft: the C1 position
    stays open with its stop; no entry fills that day after (BTC's signals are turned away), and
    the signal of the 23:00 bar fills at 00:00 the next day."""
    gap_at = DAY1 + 10 * H
    m = _market(gap_at, 0.04)
    scripted[DAY1 + 2 * H] = {"C1": (1, 0.10)}
    for h in (12, 18, 22, 23):
        scripted[DAY1 + h * H] = {"BTC": (1, 0.10)}
    sim = SimConfig(risk_fraction=0.2, daily_loss_halt=0.05)
    engine = start_engine(tmp_path, m, WARM, every_bucket("scripted", ("BTC", "C1")), sim)
    feed_bars(engine, m, WARM, WARM + 13)  # through 12:00 of day 1
    pos = _positions(engine)
    assert list(zip(pos.coin, pos.status, strict=True)) == [("C1", "open")]  # not flattened
    entry = 100.0 * (1 + SLIP)
    size = 10_000 * 0.2 / (0.10 * 100.0)  # R sizing: equity * risk / stop distance
    assert pos["size"].iloc[0] == pytest.approx(size, rel=1e-12)
    assert report.status(engine.ledger)["halts"]["daily_halt"]
    feed_bars(engine, m, WARM + 13, WARM + 23)  # through 22:00: still the halted day
    assert report.status(engine.ledger)["halts"]["daily_halt"]
    feed_bars(engine, m, WARM + 23, WARM + 26)  # 23:00 closes at midnight: the halt is over
    assert not report.status(engine.ledger)["halts"]["daily_halt"]
    pos = _positions(engine)
    assert list(zip(pos.coin, pos.entry_ts, pos.status, strict=True)) == [
        ("C1", "2024-01-02T03:00:00Z", "open"), ("BTC", "2024-01-03T00:00:00Z", "open")]
    orders = ledger_table(engine.ledger.path, "orders", "ts").set_index("ts")
    for h in (12, 18, 22):
        assert orders.loc[f"2024-01-02T{h:02d}:00:00Z", "reason"] == "daily_halt"
    assert orders.loc["2024-01-02T23:00:00Z", "status"] == "filled"
    eq = ledger_table(engine.ledger.path, "equity", "ts").set_index("ts").equity
    marked = size * (entry - 96.0) + size * entry * TRADED_FRICTION.fee_bps * 1e-4
    assert eq["2024-01-02T10:00:00Z"] == pytest.approx(10_000 - marked, abs=1e-6)
    kinds = ledger_table(engine.ledger.path, "events", "id").kind.tolist()
    assert kinds.count("daily_halt") == 1
    engine.ledger.close()


def test_drawdown_kill_writes_the_file_and_a_new_session_starts_once_removed(tmp_path, scripted):
    m = _market(DAY1 + 10 * H, 0.09)
    scripted[DAY1 + 2 * H] = {"C1": (1, 0.10)}
    for h in (14, 20):
        scripted[DAY1 + h * H] = {"C1": (1, 0.10)}
    scripted[DAY1 + 30 * H] = {"C1": (-1, 0.10)}
    sim = SimConfig(risk_fraction=0.5, kill_drawdown=0.25)  # notional capped at 3x equity
    engine = start_engine(tmp_path, m, WARM, every_bucket("scripted", ("C1",)), sim)
    kill = engine.kill.path
    feed_bars(engine, m, WARM, WARM + 12)
    pos = _positions(engine)
    assert pos.exit_reason.tolist() == ["kill_switch"] and pos.exit_ts.iloc[0] == "2024-01-02T11:00:00Z"
    assert kill.exists() and "kill switch" in kill.read_text()
    assert report.status(engine.ledger)["halts"]["kill_switch"]
    feed_bars(engine, m, WARM + 12, WARM + 22)  # the 14:00 and 20:00 signals are refused
    live = ledger_table(engine.ledger.path, "decisions", "ts").query("kind == 'live'")
    assert live.set_index("ts").loc["2024-01-02T14:00:00Z", "reason"] == "kill_switch"
    assert len(_positions(engine)) == 1
    kill.unlink()
    feed_bars(engine, m, WARM + 22, WARM + 33)
    sessions = ledger_table(engine.ledger.path, "sessions", "id")
    assert len(sessions) == 2 and sessions.start_ts.iloc[1] == "2024-01-02T22:00:00Z"
    eq = ledger_table(engine.ledger.path, "equity", "ts").set_index("ts").equity
    assert sessions.initial_equity.iloc[1] == eq["2024-01-02T21:00:00Z"]
    pos = _positions(engine)
    assert len(pos) == 2 and pos.session.iloc[1] == 2 and pos.side.iloc[1] == -1
    assert pos.entry_ts.iloc[1] == "2024-01-03T07:00:00Z"
    assert not kill.exists()
    engine.ledger.close()


def test_blocked_reversal_still_closes(tmp_path, scripted):
    """With the kill file present a reversal opens nothing but still closes the open position."""
    m = _market()
    scripted[DAY1 + 2 * H] = {"C1": (1, 0.10)}
    scripted[DAY1 + 8 * H] = {"C1": (-1, 0.10)}
    engine = start_engine(tmp_path, m, WARM, every_bucket("scripted", ("C1",)), SimConfig())
    feed_bars(engine, m, WARM, WARM + 6)
    engine.kill.path.write_text("manual\n")
    feed_bars(engine, m, WARM + 6, WARM + 12)
    pos = _positions(engine)
    assert len(pos) == 1 and pos.exit_reason.iloc[0] == "signal"
    assert pos.exit_ts.iloc[0] == "2024-01-02T09:00:00Z"
    exits = ledger_table(engine.ledger.path, "decisions", "ts").query("kind == 'exit'")
    assert exits.reason.tolist() == ["reversal_blocked"]
    engine.ledger.close()


def test_bucket_kill_criteria():
    k = KillCriteria(max_drawdown_r=3.0, window_trades=4, min_win_rate=0.5, expected_r_low=-0.2,
                     expected_r_high=2.0)
    assert bucket_kill([], k) is None
    assert bucket_kill([1.0, -1.0, 1.0], k) is None
    assert "drawdown 3.00R" in bucket_kill([2.0, -1.0, -1.0, -1.0], k)  # peak 2, trough -1
    assert "win rate 25%" in bucket_kill([1.0, -0.5, -0.5, -0.5], k)
    assert "mean R" in bucket_kill([3.0, 3.0, 3.0, -0.1], k) and "not the trades" in bucket_kill(
        [3.0, 3.0, 3.0, -0.1], k)
    assert bucket_kill([0.5, 0.5, -0.1, 0.2, 0.3], k) is None


def test_bucket_kill_stops_the_bucket_in_the_engine(tmp_path, scripted):
    """Two stopped-out longs (about -1.1R each with costs) breach a 1.5R drawdown: the third
    signal of the same bucket (long, ASIA, NEUTRAL, mid) is refused."""
    m = _market()
    close = m.close.copy()
    for h in (0, 3, 5):
        scripted[DAY1 + h * H] = {"C1": (1, 0.01)}
    for h in (2, 5):  # C1 dips 2% for one hour: the 1% stops are hit
        close[WARM + h, 1] = 98.0
    m = ohlc_market(close, np.vstack([close[:1], close[:-1]]), coins=m.coins)
    kill = {"max_drawdown_r": 1.5, "window_trades": 100, "min_win_rate": 0.0,
            "expected_r_low": -100.0, "expected_r_high": 100.0}
    engine = start_engine(tmp_path, m, WARM, every_bucket("scripted", ("C1",), kill=kill), SimConfig())
    feed_bars(engine, m, WARM, WARM + 8)
    pos = _positions(engine)
    assert pos.exit_reason.tolist() == ["stop", "stop"] and pos.bucket.nunique() == 1
    live = ledger_table(engine.ledger.path, "decisions", "ts").query("kind == 'live'")
    assert live.reason.tolist()[:2] == ["accepted", "accepted"]
    assert live.reason.iloc[2].startswith("bucket_kill: bucket drawdown 2.2")
    engine.ledger.close()


def test_stale_candles_open_nothing(tmp_path, scripted):
    """A candle handed over more than two intervals after it opened is acted on by nobody."""
    m = _market()
    scripted[DAY1 + 2 * H] = {"C1": (1, 0.1)}
    scripted[DAY1 + 5 * H] = {"C1": (1, 0.1)}
    engine = start_engine(tmp_path, m, WARM, every_bucket("scripted", ("C1",)), SimConfig())
    feed_bars(engine, m, WARM, WARM + 4, lag=2 * H + pd.Timedelta(seconds=1))
    feed_bars(engine, m, WARM + 4, WARM + 8)
    bars = ledger_table(engine.ledger.path, "bars", "ts")
    assert bars.stale.tolist() == [1] * 4 + [0] * 4
    live = ledger_table(engine.ledger.path, "decisions", "ts").query("kind == 'live'")
    assert live.reason.tolist() == ["stale_feed", "accepted"]
    assert _positions(engine).entry_ts.tolist() == ["2024-01-02T06:00:00Z"]
    engine.ledger.close()


def test_stale_rule():
    h = pd.Timedelta(hours=1)
    t = pd.Timestamp("2025-01-01 10:00", tz="UTC")
    assert not is_stale(t, t + 2 * h, h)
    assert is_stale(t, t + 2 * h + pd.Timedelta(seconds=1), h)
    assert is_stale(None, t, h)
