"""What the ledger says now: positions, equity, today's PnL, halt flags, graduation.

Read-only; shared by `python -m executor status` and the /status endpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from executor.engine import Settings, default_kill_file
from executor.graduation import Graduation, graduate
from executor.ledger import Ledger, parse
from harness.market import interval_seconds


def _day_start_equity(led: Ledger, clock: pd.Timestamp, step: pd.Timedelta, initial: float) -> float:
    """Equity at the last bar that closed at or before today's 00:00 UTC."""
    midnight = clock.floor("D")
    v = led.scalar("SELECT equity FROM equity WHERE ts <= ? ORDER BY ts DESC LIMIT 1",
                   ((midnight - step).strftime("%Y-%m-%dT%H:%M:%SZ"),))
    return float(v) if v is not None else initial


def status(led: Ledger, kill_file: Path | None = None) -> dict[str, Any]:
    s = Settings.from_json(led.get("settings") or "{}") if led.get("settings") else None
    if s is None:
        return {"mode": "paper", "started": False}
    step = pd.Timedelta(seconds=interval_seconds(s.interval))
    kill = kill_file or default_kill_file(led.path)
    last = led.con.execute("SELECT ts, clock, equity, n_open, stale, candidates, session FROM bars "
                           "ORDER BY ts DESC LIMIT 1").fetchone()
    session = led.con.execute("SELECT id, start_ts, initial_equity FROM sessions ORDER BY id DESC "
                              "LIMIT 1").fetchone()
    peak = led.scalar("SELECT MAX(equity) FROM equity WHERE session = ?", (session[0],))
    equity = float(last[2]) if last else float(session[2])
    clock = parse(last[1]) if last else s.first_bar
    halt_day = led.get("daily_halt_day")
    next_fill_day = (parse(last[0]) + step).strftime("%Y-%m-%d") if last else None
    positions = led.frame(
        "SELECT id, coin, CASE side WHEN 1 THEN 'long' ELSE 'short' END AS side, strategy, bucket, "
        "entry_ts, entry_price, size, notional, stop_distance, partial_taken, funding, unrealized "
        "FROM positions WHERE status = 'open' ORDER BY entry_ts, coin")
    closed = led.frame("SELECT COUNT(*) AS n, COALESCE(SUM(pnl), 0) AS pnl FROM positions "
                       "WHERE status = 'closed'")
    return {
        "mode": "paper",
        "started": True,
        "feed": s.feed,
        "source": s.source,
        "interval": s.interval,
        "coins": list(s.coins),
        "first_bar": s.first_bar.isoformat(),
        "last_candle": parse(last[0]).isoformat() if last else None,
        "clock": clock.isoformat(),
        "bars": int(led.scalar("SELECT COUNT(*) FROM bars")),
        "session": int(session[0]),
        "initial_equity": s.sim.initial_equity,
        "equity": equity,
        "peak": max(float(peak) if peak is not None else 0.0, float(session[2])),
        "today_pnl": equity - _day_start_equity(led, clock, step, s.sim.initial_equity),
        "realized_pnl": float(closed["pnl"].iloc[0]),
        "closed_trades": int(closed["n"].iloc[0]),
        "open_positions": positions.to_dict(orient="records"),
        "candidates_sha": last[5] if last else None,
        "halts": {
            "kill_file": kill.exists(),
            "kill_file_path": str(kill),
            "kill_switch": led.get("killed_session") == str(session[0]),
            "daily_halt": halt_day is not None and halt_day == next_fill_day,
            "stale_feed": bool(last[4]) if last else False,
        },
    }


def graduation(led: Ledger) -> list[Graduation]:
    s = Settings.from_json(led.get("settings"))
    eq = led.frame("SELECT ts, equity FROM equity ORDER BY ts")
    series = pd.Series(eq["equity"].astype(float).to_numpy(),
                       index=pd.DatetimeIndex(pd.to_datetime(eq["ts"], utc=True)), name="equity")
    trades = led.frame("SELECT bucket, pnl, exit_ts FROM positions WHERE status = 'closed' ORDER BY exit_ts")
    trades["exit_ts"] = pd.to_datetime(trades["exit_ts"], utc=True)
    trades["pnl"] = trades["pnl"].astype(float)
    return graduate(series, trades, s.sim.initial_equity)
