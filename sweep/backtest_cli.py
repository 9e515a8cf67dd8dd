"""`sweep backtest`: one fixed parameter set on chosen data and dates (sweep.backtest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from harness.errors import ConfigError
from harness.friction import DEFAULT_FRICTION, FEE_STRESS
from harness.manifest import harness_hash
from strategies.base import get_strategy
from sweep.backtest import (
    METRIC_ROWS,
    BacktestRecord,
    BacktestSpec,
    check_out_dir,
    fmt,
    fold_plan,
    run_backtest,
    trial_note,
    trial_spec,
    write_record,
)
from sweep.backtest_inputs import incumbent_trial, parse_ref, recorded_trial
from sweep.param_values import parse_params
from sweep.run_cli import _LENGTH, DataOpt, DetailOpt, ResultsOpt, _coins, _num

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)


def print_record(rec: BacktestRecord) -> None:
    m = rec.meta
    out.print(f"[bold]{m['strategy']}[/] ({m['source']}) on {m['market']['label']} · "
              f"{m['interval']} · {len(m['market']['coins'])} coins · {m['friction']} · "
              f"{'walk-forward, ' + str(m['folds']['k']) + ' folds' if m['walk_forward'] else 'one segment'}"
              + (f" · detail {m['detail']}" if m["detail"] else ""))
    table = Table(title="Metrics", title_justify="left")
    table.add_column("metric")
    table.add_column("base", justify="right")
    table.add_column(f"fee stress x{FEE_STRESS:g}", justify="right")
    for key, label, kind in METRIC_ROWS:
        table.add_row(label, fmt(m["base"][key], kind), fmt(m["stress"][key], kind))
    out.print(table)
    folds = Table(title="Out-of-sample segments" if m["walk_forward"] else "The one segment",
                  title_justify="left")
    for c in ("#", "from", "to", "trades", "annualized", "max DD", "Sharpe", "score"):
        folds.add_column(c, justify="left" if c in ("from", "to") else "right")
    for i, ((a, b), fm, s) in enumerate(zip(m["segments"], m["fold_metrics"], m["fold_scores"],
                                             strict=True)):
        folds.add_row(str(i), a[:16], b[:16], fmt(fm["n_trades"], "d"), fmt(fm["annualized"], "%"),
                      fmt(fm["max_dd"], "%"), fmt(fm["sharpe"]), fmt(s))
    out.print(folds)
    if m["lockbox"]:
        out.print(f"lockbox (not evaluated): {m['lockbox'][0][:16]} to {m['lockbox'][1][:16]}")
    for study, a, b in m["lockbox_touched"]:
        out.print(f"[yellow]read the lockbox of study {study} ({a[:16]} to {b[:16]}): logged in "
                  "lockbox_touches[/]")
    if m["lockbox_unchecked"]:
        out.print(f"{m['lockbox_unchecked']} run(s) of {m['strategy']} record no data locator: "
                  "their lockbox could not be checked against this backtest")
    out.print(f"the score is the {m['meaning']}")
    if m["rejected"]:
        out.print(f"rejected: {m['rejected']} (the score is -inf)")
    if m["recorded_score"] is not None:
        out.print(trial_note(m))


def _spec(strategy: str | None, params: str | None, trial: str | None, incumbent: bool,
          results_dir: Path, fold_args: dict[str, Any], no_folds: bool, friction: str | None,
          mode: str | None, **kw: Any) -> BacktestSpec:
    given = [n for n, v in (("--params", params), ("--trial", trial), ("--incumbent", incumbent)) if v]
    if len(given) != 1:
        raise ConfigError("give exactly one of --params JSON, --trial STUDY#N or --incumbent"
                          + (f" (got {', '.join(given)})" if given else ""))
    if no_folds and any(v is not None for v in fold_args.values()):
        raise ConfigError("--no-folds excludes --folds, --train, --test, --purge and --embargo: "
                          "choose one segment or walk-forward")
    if params is not None:
        if strategy is None:
            raise ConfigError("--params needs --strategy NAME (`python -m sweep strategies` lists them)")
        reg = get_strategy(strategy)
        p = parse_params(reg.params_cls, params, strategy)
        interval = kw.get("interval") or reg.interval
        return BacktestSpec(strategy=strategy, params=p, source="--params",
                            folds=None if no_folds else fold_plan(fold_args, interval),
                            friction=friction or DEFAULT_FRICTION, mode=mode or "live",
                            results=results_dir, **kw)
    if trial is not None:
        rec = recorded_trial(results_dir, *parse_ref(trial))
    elif strategy is None:
        raise ConfigError("--incumbent needs --strategy NAME")
    else:
        rec = incumbent_trial(results_dir, strategy, harness_hash())
    if strategy is not None and strategy != rec.strategy:
        raise ConfigError(f"trial {rec.ref} is a {rec.strategy} trial, not {strategy}: drop "
                          "--strategy or pick another trial")
    return trial_spec(rec, f"{'incumbent' if incumbent else 'trial'} {rec.ref}", fold_args,
                      no_folds, friction, mode, results=results_dir, **kw)


def backtest_command(
    strategy: str = typer.Option(None, "--strategy", "-s", help="Registered strategy (`sweep "
                                 "strategies`); with --trial it may be left out."),
    params: str = typer.Option(None, "--params", help="JSON object of parameter values, e.g. "
                               "'{\"ema_fast\": 8}'; the others keep their defaults. Checked "
                               "against the strategy's ranges and types."),
    trial: str = typer.Option(None, "--trial", help="STUDY#N: a recorded trial's parameters, with "
                              "its data, folds, friction, mode and detail unless overridden "
                              "(with none overridden its recorded score is reproduced)."),
    incumbent: bool = typer.Option(False, "--incumbent", help="The best scored trial of "
                                   "--strategy under this harness on any data (`sweep "
                                   "leaderboard`'s #1), run as --trial runs it."),
    data: str = DataOpt,
    interval: str = typer.Option(None, "--interval", help="Bar interval; default: the trial's, "
                                 "else the strategy's own."),
    coins: str = typer.Option(None, "--coins", help="Comma-separated coins (default: the trial's, "
                              "else every coin of the data)."),
    start: str = typer.Option(None, "--start", help="First bar (UTC date or time); must lie in the data."),
    end: str = typer.Option(None, "--end", help="Bars opening before this time (exclusive); must lie in the data."),
    friction: str = typer.Option(None, "--friction", help=f"Friction model: legacy, v2, v3, v4, v5 "
                                 f"(default: the trial's, else {DEFAULT_FRICTION})."),
    detail: str = DetailOpt,
    folds: int = typer.Option(None, "--folds", min=1, help="Walk-forward folds over the span "
                              "(default: the trial's, else 4; the last 15% is the lockbox, never run)."),
    train: str = typer.Option(None, "--train", help=f"Train window: {_LENGTH} (default: the "
                              "trial's, else one test window minus purge and embargo)."),
    test: str = typer.Option(None, "--test", help=f"Test window: {_LENGTH} (default: the "
                             "trial's, else the bars before the lockbox / (folds + 1))."),
    purge: str = typer.Option(None, "--purge", help=f"Gap between a train and its test window: "
                              f"{_LENGTH} (default: the trial's, else 24h)."),
    embargo: str = typer.Option(None, "--embargo", help=f"Bars after a test window no train "
                                f"window starts in: {_LENGTH} (default: the trial's, else 24h)."),
    no_folds: bool = typer.Option(False, "--no-folds", help="One segment over the whole span "
                                  "[--start, --end), warmed up and fitted on the bars before --start."),
    mode: str = typer.Option(None, "--mode", help="Threshold set: live or shadow (default: the "
                             "trial's, else live)."),
    results_dir: Path = ResultsOpt,
    touch_lockbox: bool = typer.Option(False, "--touch-lockbox", help="Allow out-of-sample bars "
                                       "inside the lockbox of a study of this strategy; every "
                                       "touch is logged in lockbox_touches first (promote then "
                                       "treats that lockbox as spent for these params)."),
    out_dir: Path = typer.Option(None, "--out", help="Write trades, daily returns and equity as "
                                 "Parquet (and backtest.json) into this folder, for `sweep report "
                                 "--backtest`."),
) -> None:
    """Evaluate ONE parameter set on any data and dates: base and 1.5x fee stress, walk-forward
    (default) or as one segment (--no-folds).

    Prints the metrics, the out-of-sample segments and what the score means; the last line is
    `score: <number>` (-inf when a hard rejection applies). Nothing is written to the results
    tables.
    """
    harness_hash()  # the freeze first: an edited harness refuses before anything is evaluated
    if out_dir is not None:
        check_out_dir(out_dir)
    fold_args = {"k": folds, "train": train, "test": test, "purge": purge, "embargo": embargo}
    spec = _spec(strategy, params, trial, incumbent, results_dir, fold_args, no_folds, friction, mode,
                 data=data, interval=interval, coins=_coins(coins), start=start, end=end,
                 detail=detail, touch_lockbox=touch_lockbox)
    with err.status(f"backtesting {spec.strategy} ({spec.source})...") as status:
        rec = run_backtest(spec, step_done=lambda what: status.update(f"{spec.strategy}: {what}..."))
        if out_dir is not None:
            write_record(rec, out_dir)
    print_record(rec)
    if out_dir is not None:
        out.print(f"wrote {out_dir}/ (trades, daily returns, equity as Parquet; backtest.json)")
    print(f"score: {_num(rec.meta['score'])}", flush=True)


def register(app: typer.Typer) -> None:
    app.command("backtest")(backtest_command)
