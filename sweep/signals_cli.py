"""`python -m sweep signals`: what every strategy says now (sweep/signals.py), as tables or JSON."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from harness.errors import ConfigError, DataError
from harness.market import Market
from strategies.base import Panel, RegisteredStrategy, get_strategy, registry
from strategies.filters import GATES
from sweep import results
from sweep.param_values import parse_params
from sweep.run_cli import CoinsOpt, DataOpt, ResultsOpt, _coins
from sweep.signals import StrategySignals, decision_bar, parse_at, signals_at, to_document

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)

VERDICT_STYLE = {"pass": "green", "boost": "bold green", "block": "bold red", "n/a": "dim", "-": "dim"}


def _price(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.6g}"


def _cell(v: Any, fmt: str) -> str:
    if v is None:
        return "-"
    if fmt == "flag":
        return "yes" if v else ""
    if fmt == "percent":
        return f"{v:.2%}" if abs(v) >= 1e-3 or v == 0 else f"{v:.4%}"
    if fmt == "number" and isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def choose_strategies(strategy: str | None, all_: bool) -> list[RegisteredStrategy]:
    if strategy and all_:
        raise ConfigError("give --strategy NAME or --all, not both")
    if strategy:
        return [get_strategy(strategy)]
    return [s for _, s in sorted(registry().items())]


def _params(s: RegisteredStrategy, text: str | None, incumbent: bool, market: Market,
            results_dir: Path, required: bool) -> tuple[Any, str]:
    """(params, where they came from) for --params JSON, --incumbent or the defaults."""
    if text is not None:
        return parse_params(s.params_cls, text, s.name), "--params"
    if not incumbent:
        return s.default_params(), "defaults"
    from harness.folds import FoldSpec
    from harness.friction import DEFAULT_FRICTION, get_friction
    from harness.manifest import harness_hash
    from sweep.autoresearch import incumbent_of
    from sweep.study import best_trial

    h = harness_hash()
    best = best_trial(results_dir, s.name, h, market.fingerprint, get_friction(DEFAULT_FRICTION).version,
                      FoldSpec().folds(market.interval))
    if best is None:
        why = (f"no scored {s.name} trial in {results_dir} under harness {h} on this data "
               f"({market.label}, fingerprint {market.fingerprint})")
        if required:
            raise ConfigError(f"--incumbent: {why}; run `sweep run --strategy {s.name}` on it "
                              "first, or drop --incumbent for the defaults")
        return s.default_params(), f"defaults ({why})"
    inc = incumbent_of(s.params_cls, best)
    return inc.params, f"incumbent {inc.source} (score {inc.score:.4g})"


def signals_command(
    strategy: str = typer.Option(None, "--strategy", "-s", help="One registered strategy."),
    all_: bool = typer.Option(False, "--all", help="Every registered strategy (the default "
                              "when no --strategy is given)."),
    data: str = DataOpt,
    coins: str = CoinsOpt,
    at: str = typer.Option(None, "--at", help="Decide at the last bar closed by this UTC time "
                           "(ISO 8601, e.g. 2025-03-01T12:00). Default: the last bar of the data."),
    mode: str = typer.Option("live", "--mode", help="Threshold set: live (strict) or shadow (loose)."),
    params: str = typer.Option(None, "--params", help="JSON object of parameters for --strategy "
                               "(the others at their defaults)."),
    incumbent: bool = typer.Option(False, "--incumbent", help="Use each strategy's best scored "
                                   "trial under the current harness hash, v5 friction and the "
                                   "default folds on this data (the incumbent scan and noise use)."),
    results_dir: Path = ResultsOpt,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document "
                                 "(schemas/signals.schema.json) instead of tables."),
    rows: int = typer.Option(20, "--rows", min=1, help="Panel rows shown per table (JSON: all)."),
) -> None:
    """What every strategy says at the last closed bar (or at --at): the coins that signal, with
    side, entry reference, stop, target, score, tags and which shared filter passed or blocked
    them, plus each strategy's own panel (ou_funding's half-life dashboard, xsection_rank's
    composite ranking, gem_bear's momentum ranking).

    Each strategy runs on the data cut after the decision bar, so nothing later is used; a
    strategy that fits is fitted on the bars up to it.
    """
    from harness.manifest import harness_hash
    from harness.sources import load_market
    from schemas.signals import validate_document

    harness_hash()  # the freeze first: an edited harness refuses here
    if mode not in ("live", "shadow"):
        raise ConfigError(f"--mode must be live or shadow, got {mode!r}")
    chosen = choose_strategies(strategy, all_)
    if params is not None and (len(chosen) != 1 or incumbent):
        raise ConfigError("--params needs one --strategy and no --incumbent")
    when = parse_at(at)
    markets: dict[str, Market] = {}
    missing: dict[str, str] = {}  # interval -> why the data cannot give it (--all only)
    for s in chosen:  # load and check everything before computing anything
        if s.interval not in markets and s.interval not in missing:
            try:
                with err.status(f"loading {s.interval} bars..."):
                    markets[s.interval] = load_market(data, interval=s.interval, coins=_coins(coins))
            except DataError as exc:
                if strategy is not None:
                    raise
                missing[s.interval] = str(exc)
                continue
            decision_bar(markets[s.interval], when)
    for s in chosen:
        if s.interval in missing:
            err.print(f"skipped {s.name} ({s.interval} bars): {missing[s.interval]}")
    chosen = [s for s in chosen if s.interval in markets]
    if not chosen:
        raise DataError(f"no strategy can run on this data: {'; '.join(missing.values())}")
    reports = []
    for s in chosen:
        m = markets[s.interval]
        p, source = _params(s, params, incumbent, m, results_dir, required=strategy is not None)
        with err.status(f"{s.name}: generating at the decision bar..."):
            reports.append(signals_at(s, m, p, mode, decision_bar(m, when), source))
    first = next(iter(markets.values()))
    doc = to_document(reports, first.label, first.synthetic, when, results.now())
    validate_document(doc)
    if as_json:
        sys.stdout.write(json.dumps(doc, allow_nan=False) + "\n")
        return
    for r in reports:
        print_report(r, rows)


def print_report(r: StrategySignals, max_rows: int) -> None:
    n_sig = sum(row.status == "signal" for row in r.rows)
    n_blk = len(r.rows) - n_sig
    out.print(f"[bold]{r.strategy}[/] · {r.mode} · {r.interval} bar {r.bar_open:%Y-%m-%d %H:%M} "
              f"UTC, decided at its close {r.bar_close:%Y-%m-%d %H:%M}")
    out.print(f"  {r.market_label} · {r.n_coins} coins · params: {r.params_source}")
    if r.rows:
        table = Table(title=f"{n_sig} signal(s), {n_blk} blocked by a filter", title_justify="left")
        for name in ("coin", "side", "status", "entry ref", "stop", "risk", "target", "target R",
                     "score", "hold", "session", "regime", "vol"):
            table.add_column(name, justify="left" if name in ("coin", "side", "status", "session",
                                                              "regime", "vol") else "right")
        for g in r.gates:
            table.add_column(GATES[g])
        for row in r.rows:
            risk = row.stop_distance / row.entry_ref if row.stop_distance else None
            cells = [row.coin, row.side, row.status if row.status == "signal" else "[red]blocked[/]",
                     _price(row.entry_ref), _price(row.stop), _cell(risk, "percent"),
                     _price(row.target), _cell(row.target_r, "number"), _cell(row.score, "number"),
                     "-" if row.hold is None else str(row.hold), row.session, row.regime, row.vol_bucket]
            cells += [f"[{VERDICT_STYLE[row.gates[g]]}]{row.gates[g]}[/]" for g in r.gates]
            table.add_row(*cells)
        out.print(table)
    else:
        called = f" (filters called: {', '.join(GATES[g] for g in r.gates)})" if r.gates else ""
        out.print(f"no signal at this bar{called}")
    if r.tallies:
        out.print("  gates over every bar up to the decision: " + "; ".join(
            f"{GATES[x.gate]} judged {x.judged:,} signals: {x.blocked:,} blocked, {x.passed:,} "
            f"passed on data, {x.unknown:,} passed for lack of data" for x in r.tallies))
    if r.exits:
        shown = ", ".join(r.exits[:12]) + (f" and {len(r.exits) - 12} more" if len(r.exits) > 12 else "")
        out.print(f"exit flag (closes an open position at the next open): {shown}")
    for p in r.panels:
        print_panel(p, max_rows)
    out.print()


def print_panel(p: Panel, max_rows: int) -> None:
    out.print(f"[bold]{p.title}[/]")
    if p.note:
        out.print(f"  {p.note}")
    if not p.columns:
        return
    table = Table()
    for c in p.columns:
        table.add_column(c.header, justify="left" if c.format in ("text", "flag") else "right")
    for row in p.rows[:max_rows]:
        table.add_row(*[_cell(v, c.format) for v, c in zip(row, p.columns, strict=True)])
    out.print(table)
    if len(p.rows) > max_rows:
        out.print(f"({len(p.rows)} rows, {max_rows} shown; --rows N for more, --json for all)")


def register(app: typer.Typer) -> None:
    app.command("signals")(signals_command)
