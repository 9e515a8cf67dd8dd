"""What the ledger says now: positions, equity, today's PnL, halt flags, graduation.

Read-only; shared by `python -m executor status` and the /status endpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from executor.graduation import Graduation, graduate
from executor.ledger import Ledger, parse
from executor.settings import Settings, default_kill_file


def status(led: Ledger, kill_file: Path | None = None) -> dict[str, Any]:
    """The status document; the kill file is the one the ledger records unless one is given."""
    s = Settings.from_json(led.get("settings"), str(led.path)) if led.get("settings") else None
    if s is None:
        return {"mode": "paper", "started": False}
    kill = kill_file or (Path(s.kill_file) if s.kill_file else default_kill_file(led.path))
    last = led.last_bar()
    session = led.last_session()
    peak = led.peak_equity(session.id)
    equity = float(last["equity"]) if last else session.initial_equity
    clock = parse(last["clock"]) if last else s.first_bar
    halt_day = led.get("daily_halt_day")
    next_fill_day = (parse(last["ts"]) + s.step).strftime("%Y-%m-%d") if last else None
    closed = led.closed_trades()
    day_start = led.equity_at_or_before(clock.floor("D") - s.step)  # the last close before 00:00
    return {
        "mode": "paper",
        "started": True,
        "feed": s.feed,
        "source": s.source,
        "interval": s.interval,
        "coins": list(s.coins),
        "first_bar": s.first_bar.isoformat(),
        "last_candle": parse(last["ts"]).isoformat() if last else None,
        "clock": clock.isoformat(),
        "bars": led.n_bars(),
        "session": session.id,
        "initial_equity": s.sim.initial_equity,
        "equity": equity,
        "peak": max(peak if peak is not None else 0.0, session.initial_equity),
        "today_pnl": equity - (day_start if day_start is not None else s.sim.initial_equity),
        "realized_pnl": float(closed["pnl"].sum()),
        "closed_trades": len(closed),
        "open_positions": led.open_positions_report().to_dict(orient="records"),
        "candidates_sha": last["candidates"] if last else None,
        "halts": {
            "kill_file": kill.exists(),
            "kill_file_path": str(kill),
            "kill_switch": led.get("killed_session") == str(session.id),
            "daily_halt": halt_day is not None and halt_day == next_fill_day,
            "stale_feed": bool(last["stale"]) if last else False,
        },
    }


def graduation(led: Ledger) -> list[Graduation]:
    s = Settings.from_json(led.get("settings"), str(led.path))
    return graduate(led.equity_series(), led.closed_trades(), s.sim.initial_equity)
