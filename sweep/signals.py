"""What every strategy says at one bar (`sweep signals`), from the code the sweep scores.

The decision bar is the last bar of the data, or the last bar closed by `--at`. Each strategy is
fitted (when it fits anything) on the bars up to and including it, like the paper executor on
its warm-up, and generated on the market cut after it, so no later bar can reach the answer; by
causality its row equals `generate`'s on the whole market. While `generate` runs, the shared
filters record their verdicts (strategies.filters.recording): the pass / block flags are the
masks `generate` itself combined. A gate evaluated on coarser bars (trend_alpha's 4h) is read
at its own last bar, which is the one in force at the decision bar. A blocked row is a coin a
side-aware gate (200-MA, funding, book imbalance) judged and the signal did not keep. Each
side-aware gate also gets a tally over every bar up to the decision (strategies.filters.
gate_tally): signals it judged, blocked, passed on its data, and passed for lack of data (no
recorded book, say). Strategies with a panel (strategies.base.Panel) add their own view.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import ConfigError
from harness.market import Market
from harness.signals import REGIMES, SESSIONS, SIDES, VOL_BUCKETS, Signals
from harness.strategy import Mode
from strategies.base import Panel, RegisteredStrategy
from strategies.filters import GATES, GateTally, Verdict, gate_tally, recording
from sweep.times import utc_time

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class SignalRow:
    """One coin at the decision bar: a signal, or a candidate a filter blocked."""

    coin: str
    status: str  # "signal" | "blocked"
    side: str  # "long" | "short"
    entry_ref: float  # the decision bar's close (the fill is the next bar's open)
    stop: float | None  # stop price: entry_ref - side x stop distance (None when blocked)
    stop_distance: float | None  # 1R in price units
    target: float | None  # target price (None: no fixed target)
    target_r: float | None
    score: float | None
    hold: int | None  # time stop in bars (None: none)
    session: str
    regime: str
    vol_bucket: str
    gates: dict[str, str]  # gate -> pass | block | boost | n/a (its input unknown: passes)


@dataclass(frozen=True)
class StrategySignals:
    strategy: str
    interval: str
    mode: str
    params: dict[str, Any]
    params_source: str  # "defaults", "--params", or "<study> #<trial>" (the incumbent)
    market_label: str
    n_coins: int
    bar: int  # index of the decision bar in the market
    bar_open: pd.Timestamp
    bar_close: pd.Timestamp
    gates: tuple[str, ...]  # the GATES keys this strategy called, in call order
    rows: tuple[SignalRow, ...]  # signals by score, then blocked candidates
    exits: tuple[str, ...]  # coins flagged `exit`: a position open there closes at the next open
    panels: tuple[Panel, ...]
    tallies: tuple[GateTally, ...] = ()  # side-aware gates over bars 0..bar, in call order


def decision_bar(market: Market, at: pd.Timestamp | None) -> int:
    """Index of the last bar closed by `at` (the last bar when None); ConfigError outside."""
    if market.n_bars == 0:
        raise ConfigError(f"{market.label}: no bars")
    if at is None:
        return market.n_bars - 1
    bar = pd.Timedelta(seconds=market.bar_seconds)
    closes = market.index + bar
    first, last = closes[0], closes[-1]
    if at < first or at >= last + bar:
        raise ConfigError(f"--at {at.isoformat()} is outside {market.label}: its {market.interval} "
                          f"bars close from {first.isoformat()} to {last.isoformat()}; pick a "
                          "time in that span (or drop --at for the last bar)")
    return int(closes.searchsorted(at, side="right")) - 1


def parse_at(text: str | None) -> pd.Timestamp | None:
    """`--at` as a UTC timestamp (a time without zone is UTC)."""
    return None if text is None else utc_time(text, "--at")


def signals_at(strategy: RegisteredStrategy, market: Market, params: Any, mode: Mode, t: int,
               params_source: str = "defaults") -> StrategySignals:
    """The strategy's decision at bar t of `market`, from bars 0..t only."""
    cut = market.slice(0, t + 1)
    fitted = strategy.fit(cut, params)
    with recording() as verdicts:
        sig = strategy.generate(cut, params, mode, fitted)
    panels = strategy.panels(cut, params, mode, fitted)
    gates = tuple(dict.fromkeys(v.gate for v in verdicts if v.allowed.shape[0]))
    rows = _rows(sig, cut, verdicts, gates)
    exits = tuple(cut.coins[c] for c in np.flatnonzero(sig.exit[t]))
    bar = pd.Timedelta(seconds=market.bar_seconds)
    tallies = tuple(x for x in (gate_tally(verdicts, g) for g in gates) if x is not None)
    return StrategySignals(strategy.name, market.interval, mode, dataclasses.asdict(params),
                           params_source, market.label, market.n_coins, t, market.index[t],
                           market.index[t] + bar, gates, rows, exits, panels, tallies)


def _rows(sig: Signals, market: Market, verdicts: list[Verdict], gates: tuple[str, ...]
          ) -> tuple[SignalRow, ...]:
    t = market.n_bars - 1
    d = sig.direction[t]
    candidate = np.zeros(market.n_coins, dtype=np.int8)
    for v in verdicts:  # the sides the side-aware gates judged
        if v.side is not None and v.side.shape[0]:
            candidate = np.where(candidate == 0, np.sign(v.side[-1]), candidate).astype(np.int8)
    signal = np.flatnonzero(d != 0)
    blocked = np.flatnonzero((d == 0) & (candidate != 0))
    rows = []
    for c in signal[np.argsort(-sig.score[t, signal], kind="stable")]:
        side = int(d[c])
        dist = float(sig.stop[t, c])
        ref = float(market.close[t, c])
        tr = float(sig.target[t, c])
        rows.append(SignalRow(
            market.coins[c], "signal", SIDES[side], ref, ref - side * dist, dist,
            ref + side * tr * dist if math.isfinite(tr) else None, tr if math.isfinite(tr) else None,
            float(sig.score[t, c]), int(sig.hold[t, c]) or None, *_tags(sig, t, c),
            {g: _verdict(verdicts, g, c, side) for g in gates}))
    for c in blocked:
        side = int(candidate[c])
        status = {g: _verdict(verdicts, g, c, side) for g in gates}
        if "block" not in status.values():
            continue  # dropped by the strategy's own rule, not by a shared filter
        rows.append(SignalRow(market.coins[c], "blocked", SIDES[side], float(market.close[t, c]),
                              None, None, None, None, None, None, *_tags(sig, t, c), status))
    return tuple(rows)


def _tags(sig: Signals, t: int, c: int) -> tuple[str, str, str]:
    return (SESSIONS[sig.session[t, c]], REGIMES[sig.regime[t, c]],
            VOL_BUCKETS[sig.vol_bucket[t, c]])


def _verdict(verdicts: list[Verdict], gate: str, c: int, side: int) -> str:
    """One gate's word on coin c for `side` at the last row it judged (several calls: all)."""
    words = []
    for v in verdicts:
        if v.gate != gate or not v.allowed.shape[0]:
            continue
        if v.side is not None and np.sign(v.side[-1, c]) != side:
            continue  # this call judged another side (or none) of the coin
        if not v.allowed[-1, c]:
            words.append("block")
        elif v.known is not None and not v.known[-1, c]:
            words.append("n/a")
        elif v.boost is not None and v.boost[-1, c] > 1.0:
            words.append("boost")
        else:
            words.append("pass")
    for w in ("block", "boost", "pass", "n/a"):
        if w in words:
            return w
    return "-"


# ---------------------------------------------------------------------------------- JSON

def _num(x: Any) -> Any:
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def panel_document(p: Panel) -> dict[str, Any]:
    names = [c.name for c in p.columns]
    return {"name": p.name, "title": p.title, "note": p.note,
            "columns": [{"name": c.name, "format": c.format, "label": c.header} for c in p.columns],
            "rows": [dict(zip(names, map(_num, row), strict=True)) for row in p.rows]}


def to_document(reports: list[StrategySignals], data_label: str, synthetic: bool,
                at: pd.Timestamp | None, generated_at: pd.Timestamp) -> dict[str, Any]:
    """The `--json` document (schemas/signals.schema.json)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": generated_at.isoformat(),
        "data": data_label, "synthetic": synthetic,
        "at": None if at is None else at.isoformat(),
        "gate_labels": dict(GATES),
        "strategies": [{
            "strategy": r.strategy, "interval": r.interval, "mode": r.mode,
            "params": {k: _num(v) for k, v in r.params.items()}, "params_source": r.params_source,
            "market": r.market_label, "n_coins": r.n_coins, "bar": r.bar,
            "bar_open": r.bar_open.isoformat(), "bar_close": r.bar_close.isoformat(),
            "gates": list(r.gates),
            "signals": [{k: _num(v) if k != "gates" else dict(v)
                         for k, v in dataclasses.asdict(row).items()} for row in r.rows],
            "exits": list(r.exits),
            "panels": [panel_document(p) for p in r.panels],
            "gate_tallies": [dataclasses.asdict(x) for x in r.tallies],
        } for r in reports],
    }
