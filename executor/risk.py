"""The executor's own guards, on top of the kernel's risk controls.

The kernel (harness/kernel_nb.py) already sizes by R, caps positions and gross leverage, halts
entries for the rest of the UTC day after the daily loss limit, and flattens and halts on the
drawdown kill switch. Here live: the kill-switch FILE (written when the kernel's switch trips,
or by a person; while it exists no new entry is accepted, and only a person removes it), the
stale-feed guard, and each promoted bucket's own kill criteria from live_candidates.json.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.atomic import atomic_write
from harness.errors import ConfigError
from harness.simulate import SimConfig
from schemas.candidates import KillCriteria

STALE_INTERVALS = 2  # no new entries when the candle acted on is older than this many bars


def is_stale(newest_candle: pd.Timestamp | None, now: pd.Timestamp, step: pd.Timedelta) -> bool:
    """True when the newest candle's open time is more than two intervals before `now`."""
    return newest_candle is None or now - newest_candle > STALE_INTERVALS * step


@dataclass(frozen=True)
class KillSwitch:
    """A file whose presence halts new entries; the executor writes it, a person removes it."""

    path: Path

    def present(self) -> bool:
        return self.path.exists()

    def write(self, message: str) -> None:
        """Atomic (temp file + rename) so a reader never sees half a message."""
        atomic_write(self.path, message.rstrip() + "\nRemove this file to allow new entries again.\n")


def bucket_kill(r_multiples: list[float] | np.ndarray, kill: KillCriteria) -> str | None:
    """Why a bucket stops trading on its own closed paper trades (in exit order), or None.

    Drawdown of cumulative R from its peak (peak starts at 0) at any time; then, once
    `window_trades` trades exist, win rate and mean R over the last window against the band.
    """
    r = np.asarray(r_multiples, dtype=np.float64)
    if r.size == 0:
        return None
    cum = np.cumsum(r)
    dd = float(np.max(np.maximum.accumulate(np.r_[0.0, cum])[1:] - cum))
    if dd >= kill.max_drawdown_r:
        return f"bucket drawdown {dd:.2f}R >= {kill.max_drawdown_r:g}R"
    n = kill.window_trades
    if r.size >= n:
        last = r[-n:]
        win = float((last > 0).mean())
        if win < kill.min_win_rate:
            return f"win rate {win:.0%} over the last {n} trades < {kill.min_win_rate:.0%}"
        mean = float(last.mean())
        if mean < kill.expected_r_low:
            return f"mean R {mean:.2f} over the last {n} trades < {kill.expected_r_low:.2f}"
        if mean > kill.expected_r_high:
            return (f"mean R {mean:.2f} over the last {n} trades > {kill.expected_r_high:.2f}: "
                    "not the trades the evidence describes")
    return None


def _check_risk(equity: float, risk_fraction: float, max_positions: int, max_leverage: float,
                daily_loss_halt: float, kill_drawdown: float) -> None:
    for name, v in (("equity", equity), ("max-leverage", max_leverage)):
        if not (math.isfinite(v) and v > 0):
            raise ConfigError(f"--{name} must be a positive number, got {v}")
    if max_positions < 1:
        raise ConfigError(f"--max-positions must be >= 1, got {max_positions}")
    for name, v in (("risk-fraction", risk_fraction), ("daily-loss-halt", daily_loss_halt),
                    ("kill-drawdown", kill_drawdown)):
        if not 0 < v < 1:
            raise ConfigError(f"--{name} must be a fraction in (0, 1), got {v}")


def check_sim(sim: SimConfig) -> SimConfig:
    """The executor's risk options: positive finite equity and leverage, at least one position,
    fractions in (0, 1); ConfigError naming the command-line option otherwise."""
    _check_risk(sim.initial_equity, sim.risk_fraction, sim.max_positions, sim.max_leverage,
                sim.daily_loss_halt, sim.kill_drawdown)
    return sim


def sim_config(equity: float, risk_fraction: float, max_positions: int, max_leverage: float,
               daily_loss_halt: float, kill_drawdown: float) -> SimConfig:
    """The kernel's SimConfig from the command line, each option checked first."""
    _check_risk(equity, risk_fraction, max_positions, max_leverage, daily_loss_halt, kill_drawdown)
    return SimConfig(initial_equity=equity, risk_fraction=risk_fraction, max_positions=max_positions,
                     max_leverage=max_leverage, daily_loss_halt=daily_loss_halt,
                     kill_drawdown=kill_drawdown)
