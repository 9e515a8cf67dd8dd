"""The rows of a paper ledger the engine reads and writes, typed: what `executor.ledger.Ledger`
takes and returns instead of SQL (a NamedTuple is a row `executemany` inserts as it is)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd


@dataclass(frozen=True)
class Session:
    id: int
    start: pd.Timestamp
    initial_equity: float


@dataclass(frozen=True)
class Position:
    """A position of the current session as the diff against the kernel needs it."""

    id: int
    coin: str
    entry_ts: str
    status: str  # open | closed
    partial_taken: int
    funding: float
    book: str
    side: int


@dataclass(frozen=True)
class Entry:
    """A position the kernel opened: what its trade record and the winning decision say."""

    session: int
    coin: str
    side: int
    book: str
    strategy: str
    bucket: str
    signal_ts: str
    entry_ts: str
    entry_price: float
    size: float
    notional: float
    stop_distance: float
    fees: float


@dataclass(frozen=True)
class Exit:
    """How the kernel closed a position."""

    partial_taken: int
    fees: float
    funding: float
    exit_ts: str
    exit_price: float
    exit_reason: str
    pnl: float
    r_multiple: float


@dataclass(frozen=True)
class Fill:
    """One fill as the kernel booked it (price with slippage, fee, the slippage paid)."""

    ts: str
    bar_ts: str
    position_id: int
    coin: str
    side: int
    kind: str  # entry | partial | exit
    reason: str
    qty: float
    price: float
    fee: float
    slippage_bps: float


@dataclass(frozen=True)
class Order:
    """An accepted live decision waiting for the next bar's open."""

    id: int
    ts: str
    coin: str
    book: str


class Decision(NamedTuple):
    """A shadow or live decision at a bar (kind 'shadow' | 'live')."""

    ts: str
    coin: str
    book: str
    kind: str
    strategy: str
    side: int
    stop: float
    target: float | None
    score: float
    session: str
    regime: str
    vol_bucket: str
    setup: int
    hold: int
    trail: float | None
    bucket: str | None
    accepted: int
    reason: str


class ExitDecision(NamedTuple):
    """A close the strategy (or a blocked reversal) asks for at a bar."""

    ts: str
    coin: str
    book: str
    strategy: str
    reason: str


class ShadowTrade(NamedTuple):
    strategy: str
    coin: str
    side: int
    book: str
    session: str
    regime: str
    vol_bucket: str
    entry_ts: str
    exit_ts: str
    r_multiple: float
    pnl: float
    fees: float
    funding: float
    exit_reason: str
    friction: str


@dataclass(frozen=True)
class BarDone:
    """The row that marks a bar processed, with the equity the kernel reported at its close."""

    ts: str
    clock: str
    session: int
    n_candles: int
    stale: int
    kill_file: int
    candidates: str
    n_live: int
    n_accepted: int
    equity: float
    n_open: int
    peak: float
