"""What tests/reference_sim.py records: fills, open positions, closed trades, per-segment counts
and the result of a run (plain dataclasses, readable names)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Fill:
    bar: int
    price: float  # the fill price, slippage applied
    qty: float
    fee: float
    slippage: float  # fraction of the raw price, against you
    raw: float  # the price before slippage (the open, a level, the close)
    at_open: bool = False
    sub: int = -1  # the detail bar of the bar it happened in (intrabar walk), -1 otherwise

    @property
    def slippage_cost(self) -> float:
        return self.qty * abs(self.price - self.raw)


@dataclass
class Position:
    coin: int
    side: int  # +1 long, -1 short
    signal_bar: int
    segment: int
    setup: int
    stop_distance: float  # 1R in price units
    entry: Fill
    size: float  # what is left open
    stop: float  # stop price level
    stop_reason: str  # "stop", "partial" (breakeven after the partial) or "trail"
    target: float  # price level, NaN for none
    partial_level: float  # price level, NaN when off or already taken
    trail_distance: float  # price units, NaN when trailing is off
    best: float  # best price since entry (trailing)
    liq: float  # liquidation price, NaN when liquidation is off
    backstop: float
    margin: float  # isolated margin at entry
    hold_until: int | None  # bar at whose open the time stop closes
    funding: float = 0.0  # paid (received is negative)
    cash_flow: float = 0.0  # cash booked by the fills: price pnl minus fees
    partial: Fill | None = None
    close_request: str | None = None  # signal / time / kill_switch, waiting for a price
    detail: bool = False  # some bar of this trade was walked through detail bars

    @property
    def entry_price(self) -> float:
        return self.entry.price


@dataclass
class Trade:
    coin: int
    side: int
    signal_bar: int
    entry_bar: int
    exit_bar: int
    segment: int
    entry: Fill
    partial: Fill | None
    exit: Fill
    exit_reason: str
    size: float
    notional: float
    stop_distance: float
    pnl: float
    r_multiple: float
    fees: float
    funding: float
    slippage_cost: float
    detail: bool


@dataclass
class Counters:
    """Per-segment counts the kernel also reports."""

    liquidations: int = 0
    backstops: int = 0
    killed: bool = False
    halts: int = 0
    detail_walks: int = 0
    detail_fallbacks: int = 0
    slippage_fallbacks: int = 0
    fees: float = 0.0
    funding: float = 0.0
    slippage_cost: float = 0.0
    exposure: float = 0.0  # sum over bar closes of gross notional / equity
    coin_notional: dict[int, float] = field(default_factory=lambda: defaultdict(float))


@dataclass
class ReferenceResult:
    trades: list[Trade]
    equity: np.ndarray  # per bar of the chained segments (segment k compounds on k-1)
    segment_equity: list[np.ndarray]  # per segment, each from initial equity
    status: dict[tuple[int, int], str]  # (signal bar, coin) -> fill status
    counters: list[Counters]
    initial_equity: float

    @property
    def final_equity(self) -> float:
        growth = np.prod([eq[-1] / self.initial_equity for eq in self.segment_equity])
        return float(self.initial_equity * growth)

    @property
    def max_drawdown(self) -> float:
        eq = np.r_[self.initial_equity, self.equity]
        peak = np.maximum.accumulate(eq)
        return float(np.max(1.0 - eq / peak))
