"""The kernel over the session, and its diff against the ledger: the executor's fills.

At every bar the harness kernel (harness.simulate) runs over [session start, now] on the
signals the executor ACCEPTED so far (`accepted_signals`, read back from the ledger), and what
it did since the last bar is appended: positions opened, partial take-profits, funding paid,
positions closed, each fill exactly as the kernel's trade record books it, and for orders that
did not fill, the kernel's own `fill_status`. Nothing here decides a fill; it reads the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from executor.books import TRADED_FRICTION
from executor.ledger import Ledger, LedgerError, iso, iso_many
from executor.records import Entry, Exit, Fill, Session
from executor.settings import Settings
from harness import kernel_layout as L
from harness.market import Market
from harness.signals import REGIMES, SESSIONS, VOL_BUCKETS, Signals
from harness.simulate import simulate

Winners = dict[tuple[str, str], tuple[str, str, str]]  # (signal ts, coin) -> (book, strategy, bucket)
OpenNow = dict[str, tuple[int, str]]  # coin -> (side, book) of the positions open at the close


@dataclass(frozen=True)
class Outcome:
    trades: pd.DataFrame | None  # None: the fast path (flat, nothing pending) skipped the kernel
    fills: pd.DataFrame | None  # the kernel's fill status of every accepted signal of the session
    equity: float
    killed: bool
    halts: int
    winners: Winners  # the decision each accepted (ts, coin) cell was filled from


class _Row(dict):
    """A trade record with attribute access."""

    __getattr__ = dict.__getitem__


def _f(v: Any) -> float:
    return float("nan") if v is None else float(v)


def accepted_signals(led: Ledger, settings: Settings, market: Market, session: Session) -> tuple[Signals, Winners]:
    """The accepted decisions of this session as one Signals (highest score per cell), and
    which book's decision each cell holds."""
    start = iso(session.start)
    sig = Signals.empty(market, "paper")
    d = led.accepted_decisions(start).drop_duplicates(["ts", "coin"], keep="first")
    winners = {(ts, coin): (book, strat, bucket) for ts, coin, book, strat, bucket in zip(
        d["ts"], d["coin"], d["book"], d["strategy"], d["bucket"], strict=True)}
    if len(d):
        r, c = settings.cells(d["ts"], d["coin"])
        sig.direction[r, c] = d["side"].to_numpy(np.int8)
        sig.stop[r, c] = d["stop"].astype(float).to_numpy()
        sig.target[r, c] = d["target"].map(_f).to_numpy(np.float64)
        sig.score[r, c] = d["score"].astype(float).to_numpy()
        sig.session[r, c] = [SESSIONS.index(x) for x in d["session"]]
        sig.regime[r, c] = [REGIMES.index(x) for x in d["regime"]]
        sig.vol_bucket[r, c] = [VOL_BUCKETS.index(x) for x in d["vol_bucket"]]
        sig.setup[r, c] = d["setup"].to_numpy(np.int64)
        sig.hold[r, c] = d["hold"].to_numpy(np.int32)
        sig.trail[r, c] = d["trail"].map(_f).to_numpy(np.float64)
    x = led.accepted_exits(start)
    if len(x):
        sig.exit[settings.cells(x["ts"], x["coin"])] = True
    return sig, winners


def run_kernel(led: Ledger, settings: Settings, session: Session, market: Market, n_real: int,
               ts: pd.Timestamp, last_equity: float, detail: Market | None) -> Outcome:
    """The kernel over [session start, now] (plus the empty bar after now), or the fast path
    when nothing is open or due to fill (the kernel would only repeat the last equity)."""
    sid = session.id
    step = settings.step
    halts = int(led.get(f"halts_seen:{sid}", "0"))
    killed = led.get("killed_session") == str(sid)
    pending = led.n_accepted_at(iso(ts - step))
    if not led.n_open(sid) and (not pending or ts - step < session.start):
        eq = last_equity if ts > session.start else session.initial_equity
        return Outcome(None, None, eq, killed, halts, {})
    sig, winners = accepted_signals(led, settings, market, session)
    cfg = replace(settings.sim, initial_equity=session.initial_equity)
    res = simulate(market, sig, TRADED_FRICTION, cfg, segments=[(settings.row(session.start), n_real + 1)],
                   detail=detail)
    st = res.seg_stats[0, 0]
    return Outcome(res.trades(0), res.fill_status(0), float(res.equity(0).iloc[-2]),
                   bool(st[L.S_KILLED] > 0), int(st[L.S_HALTS]), winners)


def apply(led: Ledger, settings: Settings, session: Session, out: Outcome, n_real: int,
          ts: pd.Timestamp) -> OpenNow:
    """Append what the kernel did since the last bar; the positions open at the close of ts."""
    sid = session.id
    if out.trades is None:
        resolve_orders(led, settings, ts, None, out.winners)
        return {p.coin: (p.side, p.book) for p in led.open_positions(sid)}
    known = led.positions(sid)
    done = {k for k, p in known.items() if p.status == "closed"}
    trades = out.trades
    keys = list(zip(trades["coin"], iso_many(trades["entry_ts"]), strict=True))
    open_now: OpenNow = {}
    seen_open: set[int] = set()
    for tr in trades[[k not in done for k in keys]].to_dict("records"):
        tr = _Row(tr)
        is_open = tr.exit_reason == "end_of_data" and tr.exit_bar == n_real
        pos = known.get((tr.coin, iso(tr.entry_ts)))
        if pos is None:
            pid, book = _open_position(led, settings, session, tr, ts, out.winners)
            partial_before, funding_before = 0, 0.0
        else:
            pid, book = pos.id, pos.book
            partial_before, funding_before = pos.partial_taken, pos.funding
        delta = float(tr.funding) - funding_before
        if delta != 0.0:
            led.record_funding(iso(ts), pid, tr.coin, delta)
        if tr.partial_taken and not partial_before:
            _partial_fill(led, tr, pid, ts)
        if is_open:
            seen_open.add(pid)
            open_now[tr.coin] = (int(tr.side), book)
            led.mark_position(pid, float(tr.funding), int(tr.partial_taken), float(tr.pnl))
        else:
            _close_position(led, tr, pid, ts)
    if {p.id for p in led.open_positions(sid)} != seen_open:
        raise LedgerError(f"{led.path}: the kernel and the ledger disagree on the open positions "
                          f"at {iso(ts)}; was the ledger edited by hand?")
    resolve_orders(led, settings, ts, out.fills, out.winners)
    return open_now


def _open_position(led: Ledger, settings: Settings, session: Session, tr: Any, ts: pd.Timestamp,
                   winners: Winners) -> tuple[int, str]:
    signal_ts = iso(settings.bar_ts(int(tr.signal_bar)))
    book, strategy, bucket = winners.get((signal_ts, tr.coin), ("?", "?", "?"))
    pid = led.open_position(Entry(
        session.id, tr.coin, int(tr.side), book, strategy, bucket, signal_ts, iso(tr.entry_ts),
        float(tr.entry_price), float(tr.size), float(tr.notional), float(tr.stop_distance),
        float(tr.entry_fee)))
    led.record_fill(Fill(iso(tr.entry_ts), iso(ts), pid, tr.coin, int(tr.side), "entry", "signal",
                         float(tr.size), float(tr.entry_price), float(tr.entry_fee),
                         float(tr.entry_slippage_bps)))
    led.fill_order(signal_ts, tr.coin, book, iso(tr.entry_ts), pid)
    return pid, book


def _partial_fill(led: Ledger, tr: Any, pid: int, ts: pd.Timestamp) -> None:
    led.record_fill(Fill(iso(tr.partial_ts), iso(ts), pid, tr.coin, -int(tr.side), "partial", "partial",
                         float(tr.partial_qty), float(tr.partial_price), float(tr.partial_fee),
                         float(tr.partial_slippage_bps)))
    led.add_fee(pid, float(tr.partial_fee))


def _close_position(led: Ledger, tr: Any, pid: int, ts: pd.Timestamp) -> None:
    led.record_fill(Fill(iso(tr.exit_ts), iso(ts), pid, tr.coin, -int(tr.side), "exit", tr.exit_reason,
                         float(tr.exit_qty), float(tr.exit_price), float(tr.exit_fee),
                         float(tr.exit_slippage_bps)))
    led.close_position(pid, Exit(int(tr.partial_taken), float(tr.fees), float(tr.funding),
                                 iso(tr.exit_ts), float(tr.exit_price), tr.exit_reason,
                                 float(tr.pnl), float(tr.r_multiple)))


def resolve_orders(led: Ledger, settings: Settings, ts: pd.Timestamp, fills: pd.DataFrame | None,
                   winners: Winners) -> None:
    """Orders decided before this bar that did not fill at its open: the kernel says why."""
    orders = led.pending_orders(iso(ts))
    if not orders:
        return
    status = {}
    if fills is not None:
        at = settings.market_start + fills["signal_bar"].to_numpy() * settings.step
        status = dict(zip(zip(iso_many(at), fills["coin"], strict=True), fills["status"], strict=True))
    for o in orders:
        winner = winners.get((o.ts, o.coin)) if fills is not None else None
        if winner is not None and winner[0] != o.book:
            why = f"lost to book {winner[0]} (higher score on the coin)"
        else:
            why = status.get((o.ts, o.coin), "outside_session")
        led.mark_unfilled(o.id, why)
