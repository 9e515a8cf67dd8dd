"""`sweep check`: the causality gate on demand (sweep/causality.py), one row per strategy."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness.errors import DataError
from harness.market import Market
from sweep import causality, results
from sweep.run_cli import CoinsOpt, DataOpt, ResultsOpt, _coins, err, out


def check_command(
    strategy: str = typer.Option(None, "--strategy", "-s", help="One registered strategy."),
    all_: bool = typer.Option(False, "--all", help="Every registered strategy (the default when "
                              "no --strategy is given); intervals the data lacks are skipped."),
    data: str = DataOpt,
    coins: str = CoinsOpt,
    results_dir: Path = ResultsOpt,
) -> None:
    """Check that no signal at or before a bar changes with the data after it (look-ahead).

    Runs each strategy's causality gate now on the data `sweep run` would use (its interval; the
    last bars before the lockbox): live and shadow mode, the default parameters and sets sampled
    from the search space, cut bars about half on bars that signal, each cut once with the later
    bars removed and once with them randomized. Each verdict is recorded in the `causality` table,
    which `sweep run` reads before its first trial. Exits non-zero when a strategy looks ahead.
    """
    from harness.manifest import harness_hash
    from harness.sources import load_market
    from sweep.signals_cli import choose_strategies
    from sweep.study import code_hash

    harness_hash()  # the freeze first
    chosen = choose_strategies(strategy, all_)
    markets: dict[str, Market] = {}
    for s in chosen:
        if s.interval in markets:
            continue
        try:
            with err.status(f"loading {s.interval} bars..."):
                markets[s.interval] = load_market(data, interval=s.interval, coins=_coins(coins))
        except DataError as exc:
            if strategy is not None:
                raise
            err.print(f"skipped the {s.interval} strategies: {exc}")
    chosen = [s for s in chosen if s.interval in markets]
    if not chosen:
        raise DataError("no strategy can run on this data (see the lines above)")
    run_id = results.new_id()
    verdicts = []
    with Progress(TextColumn("[bold]causality"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                  transient=True) as bar:
        task = bar.add_task("", total=len(chosen))
        for s in chosen:
            bar.update(task, description=s.name)
            v = causality.run(s, markets[s.interval], code_hash(s))
            causality.record(results_dir, v, run_id)
            verdicts.append(v)
            bar.advance(task)
    print_verdicts(verdicts, next(iter(markets.values())).label)
    bad = [v for v in verdicts if not v.passed]
    for v in bad:
        err.print(v.result.failure, markup=False, highlight=False, soft_wrap=True)
    if bad:
        raise causality.CausalityError(
            f"{len(bad)} strategy(ies) look ahead: {', '.join(v.strategy for v in bad)}; each "
            "one's first difference is printed above")


def print_verdicts(verdicts: list[causality.Verdict], label: str) -> None:
    table = Table(title=f"Causality gate on {label} (the last bars before the lockbox)",
                  title_justify="left")
    for name, justify in (("strategy", "left"), ("interval", "left"), ("code", "left"),
                          ("coins x bars", "right"), ("param sets", "right"), ("cuts", "right"),
                          ("signals", "right"), ("verdict", "left"), ("seconds", "right")):
        table.add_column(name, justify=justify)
    for v in verdicts:
        o = v.result
        verdict = ("[red]LOOKS AHEAD[/]" if not v.passed else
                   "[green]causal[/]" if o.signals else "[yellow]causal (no signal: tags only)[/]")
        table.add_row(v.strategy, v.interval, v.code_hash, f"{v.n_coins} x {v.n_bars}",
                      str(o.param_sets), str(o.cuts), f"{o.signals:,}", verdict, f"{v.seconds:.1f}")
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("check")(check_command)
