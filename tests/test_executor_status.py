"""`executor status`, the graduation check, /health and /status, and the `sweep sql` views."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
from _executor_helpers import every_bucket, feed_bars, ohlc_market, scripted_strategy, start_engine

from executor import cli, report
from executor.graduation import FAIL, PASS, WAIT, graduate
from executor.health import HealthServer
from harness.simulate import SimConfig
from schemas import ledgers
from strategies import base
from sweep import results

INITIAL = 10_000.0


def _hourly(day_end: list[float], dip: float | None = None) -> pd.Series:
    """Hourly equity whose UTC days end at `day_end`; an optional intraday dip on day 1."""
    idx = pd.date_range("2025-01-01", periods=24 * len(day_end), freq="h", tz="UTC")
    eq = np.repeat(day_end, 24).astype(float)
    if dip is not None:
        eq[24 + 12] = dip
    return pd.Series(eq, index=idx)


def _trades(pnls: list[float], bucket: str = "s/long/ASIA/NEUTRAL/mid", day: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"bucket": bucket, "pnl": pnls,
                         "exit_ts": pd.date_range("2025-01-01 05:00", periods=len(pnls), freq="D",
                                                  tz="UTC") + pd.Timedelta(days=day)})


def test_graduation_passes_on_a_good_track():
    rng = np.random.default_rng(3)
    ends = list(INITIAL * np.cumprod(1 + 0.004 + 0.01 * rng.standard_normal(25)))
    g = graduate(_hourly(ends), _trades([50.0, -20.0, 30.0, 40.0, -10.0]), INITIAL)[0]
    r = np.array(ends) / np.r_[INITIAL, ends[:-1]] - 1.0
    expected = r.mean() / r.std(ddof=1) * math.sqrt(365)
    checks = {c.name: c for c in g.checks}
    assert checks["sharpe"].value == pytest.approx(expected, rel=1e-12) and checks["sharpe"].verdict == PASS
    peak = np.maximum.accumulate(np.r_[INITIAL, ends])
    assert checks["max_drawdown"].value == pytest.approx(np.max(1 - np.r_[INITIAL, ends] / peak))
    assert checks["win_rate"].value == pytest.approx(0.6) and checks["win_rate"].verdict == PASS
    assert g.days == 25 and g.verdict == PASS


def test_graduation_waits_for_twenty_days_but_fails_a_deep_drawdown_at_once():
    short = [INITIAL * (1 + 0.01 * i) for i in range(10)]
    g = graduate(_hourly(short), _trades([10.0]), INITIAL)[0]
    assert {c.name: c.verdict for c in g.checks} == {"sharpe": WAIT, "max_drawdown": WAIT,
                                                       "win_rate": WAIT, "days": WAIT}
    assert g.verdict == WAIT
    g = graduate(_hourly(short, dip=0.7 * INITIAL), _trades([10.0]), INITIAL)[0]
    c = {c.name: c for c in g.checks}
    assert c["max_drawdown"].value == pytest.approx(1 - 0.7 * INITIAL / short[1])
    assert c["max_drawdown"].verdict == FAIL and g.verdict == FAIL
    flat = graduate(_hourly([INITIAL] * 30), _trades([]), INITIAL)[0]
    assert {c.name: c.verdict for c in flat.checks}["sharpe"] == WAIT and flat.verdict == WAIT
    bad = [INITIAL * (1 - 0.001 * i) for i in range(21)]
    g = graduate(_hourly(bad), _trades([-5.0, -5.0, 5.0]), INITIAL)[0]
    assert {c.name: c.verdict for c in g.checks}["sharpe"] == FAIL
    assert {c.name: c.verdict for c in g.checks}["win_rate"] == FAIL


def test_bucket_track_is_realized_pnl_by_exit_day():
    ends = [INITIAL] * 22
    trades = pd.concat([_trades([100.0, -400.0, 50.0], "b1"), _trades([10.0], "b2", day=3)])
    rows = {g.scope: g for g in graduate(_hourly(ends), trades, INITIAL)}
    assert set(rows) == {"overall", "b1", "b2"}
    b1 = {c.name: c for c in rows["b1"].checks}
    assert b1["max_drawdown"].value == pytest.approx(1 - 9_700.0 / 10_100.0)
    assert b1["win_rate"].value == pytest.approx(2 / 3) and rows["b1"].trades == 3
    track = np.r_[10_100.0, 9_700.0, 9_750.0, [9_750.0] * 19]
    r = track / np.r_[INITIAL, track[:-1]] - 1
    assert b1["sharpe"].value == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(365), rel=1e-12)


@pytest.fixture(scope="module")
def ledger_with_trades(tmp_path_factory):
    """A small scripted paper run on a rising C1: long C1, then a short that reverses it (closed
    as `signal` after a partial take-profit) and is stopped out as C1 keeps rising; a BTC long
    stays open."""
    tmp_path = tmp_path_factory.mktemp("status")
    script: dict = {}
    n = 24 * 3
    close = np.full((n, 2), 100.0)
    close[30:, 1] = np.linspace(100, 110, n - 30)
    m = ohlc_market(close, coins=("BTC", "C1"))
    day1 = pd.Timestamp("2024-01-02", tz="UTC")
    script[day1 + pd.Timedelta(hours=1)] = {"C1": (1, 0.02)}
    script[day1 + pd.Timedelta(hours=20)] = {"C1": (-1, 0.02), "BTC": (1, 0.02)}
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(base._REGISTRY, "scripted", scripted_strategy(script))
        engine = start_engine(tmp_path, m, 24, every_bucket("scripted", ("BTC", "C1")), SimConfig())
        feed_bars(engine, m, 24, n - 6)  # the last bar closes at 2024-01-03 18:00
    yield engine
    engine.ledger.close()


def test_status_command_tables_and_json(ledger_with_trades, monkeypatch, capsys):
    path = str(ledger_with_trades.ledger.path)
    doc = report.status(ledger_with_trades.ledger)
    assert doc["closed_trades"] == 2 and len(doc["open_positions"]) == 1
    monkeypatch.setattr(sys, "argv", ["executor", "status", "--ledger", path])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for word in ("Paper ledger", "Open positions", "Graduation", "overall", "BTC"):
        assert word in out
    monkeypatch.setattr(sys, "argv", ["executor", "status", "--ledger", path, "--json"])
    with pytest.raises(SystemExit):
        cli.main()
    data = json.loads(capsys.readouterr().out)
    assert data["equity"] == pytest.approx(doc["equity"]) and data["closed_trades"] == 2
    assert data["graduation"][0]["scope"] == "overall" and data["graduation"][0]["verdict"] == WAIT
    eq = ledger_with_trades.ledger.frame("SELECT ts, equity FROM equity ORDER BY ts")
    midnight = eq.set_index("ts").equity["2024-01-02T23:00:00Z"]  # closed at 2024-01-03 00:00
    assert data["today_pnl"] == pytest.approx(eq.equity.iloc[-1] - midnight) and data["today_pnl"] != 0


def test_health_endpoints(ledger_with_trades):
    server = HealthServer(0).start()
    try:
        def get(path):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        assert get("/health")[0] == 503  # nothing published yet
        doc = report.status(ledger_with_trades.ledger)
        server.publish({**doc, "feed_stale": False, "equity": float("nan")})
        code, body = get("/health")
        assert code == 200 and body["ok"] and body["last_candle"] == doc["last_candle"]
        code, body = get("/status")
        assert code == 200 and body["equity"] is None and len(body["open_positions"]) == 1
        assert get("/nope")[0] == 404
        # issue 15 item 10: not ok while the kill-switch file exists (looked at on each request)
        kill = ledger_with_trades.kill.path
        assert doc["halts"]["kill_file_path"] == str(kill) and not kill.exists()
        kill.write_text("stop\n")
        code, body = get("/health")
        assert code == 503 and not body["ok"] and body["kill_file"]
        kill.unlink()
        assert get("/health")[0] == 200
    finally:
        server.stop()


def test_ledger_views_in_sweep_sql(ledger_with_trades, tmp_path):
    res = tmp_path / "results"
    ledgers.register_ledger(res, ledger_with_trades.ledger.path)
    ledgers.register_ledger(res, ledger_with_trades.ledger.path)  # once per path
    assert len((res / ledgers.LEDGERS_FILE).read_text().splitlines()) == 1
    # a notebook imports results alone: every table and view is registered there
    probe = ("import sys; from sweep import results; "
             "print(results.query(sys.argv[1], 'SELECT count(*) AS n FROM paper_positions').n[0])")
    done = subprocess.run([sys.executable, "-c", probe, str(res)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "3", done.stderr
    df = results.query(res, "SELECT status, count(*) AS n FROM paper_positions GROUP BY 1 ORDER BY 1")
    assert df.values.tolist() == [["closed", 2], ["open", 1]]
    ts = results.query(res, "SELECT typeof(ts) AS t, count(*) AS n FROM paper_equity GROUP BY 1")
    assert ts.t.iloc[0].startswith("TIMESTAMP") and ts.n.iloc[0] == 42
    fills = results.query(res, "SELECT kind, reason FROM paper_fills ORDER BY id")
    assert fills.values.tolist() == [["entry", "signal"], ["partial", "partial"], ["exit", "signal"],
                                     ["entry", "signal"], ["entry", "signal"], ["exit", "stop"]]
