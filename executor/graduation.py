"""The paper-to-live graduation check, per bucket and overall.

Graduation needs, over at least 20 trading days (UTC days with processed candles): paper
Sharpe > 0.3 (daily returns, 365-day annualization, harness.metrics.sharpe), max drawdown < 25%
and win rate > 40%. Each check reads pass, fail, or not enough data yet; a drawdown already at
the limit fails at once, and Sharpe and win rate wait for a closed trade. Overall uses the
marked equity of every bar; a bucket uses its own
track: initial equity plus the bucket's realized PnL, booked on its trades' exit days.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.metrics import sharpe

MIN_SHARPE = 0.3
MAX_DRAWDOWN = 0.25
MIN_WIN_RATE = 0.40
MIN_DAYS = 20
PASS, FAIL, WAIT = "pass", "fail", "not enough data yet"


@dataclass(frozen=True)
class Check:
    name: str
    value: float
    rule: str
    verdict: str


@dataclass(frozen=True)
class Graduation:
    scope: str  # "overall" or a bucket key
    days: int
    trades: int
    checks: tuple[Check, ...]

    @property
    def verdict(self) -> str:
        verdicts = {c.verdict for c in self.checks}
        return FAIL if FAIL in verdicts else PASS if verdicts == {PASS} else WAIT


def max_drawdown(equity: np.ndarray, initial: float) -> float:
    """Peak-to-trough fall with the initial equity as the first peak."""
    eq = np.r_[initial, np.asarray(equity, dtype=np.float64)]
    return float(np.max(1.0 - eq / np.maximum.accumulate(eq)))


def daily_returns(day_end_equity: np.ndarray, initial: float) -> np.ndarray:
    eq = np.asarray(day_end_equity, dtype=np.float64)
    return eq / np.r_[initial, eq[:-1]] - 1.0


def _checks(daily: np.ndarray, dd: float, pnl: np.ndarray, days: int) -> tuple[Check, ...]:
    enough = days >= MIN_DAYS
    sr = float(sharpe(daily)[0]) if daily.size else 0.0
    win = float((pnl > 0).mean()) if pnl.size else float("nan")
    return (  # no closed trade yet: a flat track says nothing about the edge
        Check("sharpe", sr, f"> {MIN_SHARPE}",
              (PASS if sr > MIN_SHARPE else FAIL) if enough and pnl.size else WAIT),
        Check("max_drawdown", dd, f"< {MAX_DRAWDOWN:.0%}",
              FAIL if dd >= MAX_DRAWDOWN else PASS if enough else WAIT),
        Check("win_rate", win, f"> {MIN_WIN_RATE:.0%}",
              (PASS if win > MIN_WIN_RATE else FAIL) if enough and pnl.size else WAIT),
        Check("days", float(days), f">= {MIN_DAYS}", PASS if enough else WAIT),
    )


def graduate(equity: pd.Series, trades: pd.DataFrame, initial: float) -> list[Graduation]:
    """Overall first, then one row per bucket with closed trades.

    equity: marked equity at each bar's close, indexed by the bar's UTC open time.
    trades: closed positions with columns bucket, pnl, exit_ts (UTC).
    """
    if len(equity):
        day = equity.index.floor("D")
        day_end = equity.groupby(day).last()
        days = len(day_end)
        overall = _checks(daily_returns(day_end.to_numpy(), initial),
                          max_drawdown(equity.to_numpy(), initial), trades["pnl"].to_numpy(float), days)
    else:
        day_end, days = pd.Series(dtype=float), 0
        overall = _checks(np.zeros(0), 0.0, np.zeros(0), 0)
    out = [Graduation("overall", days, len(trades), overall)]
    for key, g in trades.groupby("bucket", sort=True):
        realized = g.groupby(pd.DatetimeIndex(g["exit_ts"]).floor("D"))["pnl"].sum()
        track = initial + realized.reindex(day_end.index, fill_value=0.0).cumsum()
        out.append(Graduation(str(key), days, len(g), _checks(
            daily_returns(track.to_numpy(), initial), max_drawdown(track.to_numpy(), initial),
            g["pnl"].to_numpy(float), days)))
    return out
