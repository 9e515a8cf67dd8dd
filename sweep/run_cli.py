"""`sweep run | scan | noise | sql | leaderboard`: the search and the questions over its results."""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from harness.cli import redact
from harness.errors import ConfigError
from harness.friction import DEFAULT_FRICTION
from sweep import results
from sweep.leaderboard import METRIC_COLS, board, cell, pct, print_board, ranked_studies
from sweep.leaderboard import fmt as _fmt

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)

DataOpt = typer.Option(None, "--data", help="Dataset folder (like ../shared/data/hyperliquid), "
                       "store root, parquet file or 'embedded'. Default: ./data when it holds "
                       "data, else the embedded synthetic market.")
ResultsOpt = typer.Option(results.DEFAULT_RESULTS, "--results", help="Results folder (Parquet "
                          "tables, results.duckdb, Optuna journals).")
IntervalOpt = typer.Option(None, "--interval", help="Bar interval; default: the strategy's own.")
CoinsOpt = typer.Option(None, "--coins", help="Comma-separated coins (default: all).")
FrictionOpt = typer.Option(DEFAULT_FRICTION, "--friction",
                           help="Friction model: legacy, v2, v3, v4, v5 (per-coin slippage).")
FoldsOpt = typer.Option(4, "--folds", min=1, help="Walk-forward folds.")
_LENGTH = "a bar count (24) or a duration (24h, 90d, 15m, 2w) that is a whole number of bars"
TrainOpt = typer.Option(None, "--train", help=f"Train window: {_LENGTH}. Default: one test "
                        "window minus purge and embargo.")
TestOpt = typer.Option(None, "--test", help=f"Test window: {_LENGTH}. Default: the bars before "
                       "the lockbox / (folds + 1).")
PurgeOpt = typer.Option("24h", "--purge", help=f"Gap between a train and its test window: {_LENGTH}.")
EmbargoOpt = typer.Option("24h", "--embargo", help=f"Bars after a test window no train window "
                          f"starts in: {_LENGTH}.")
SeedOpt = typer.Option(0, "--seed", help="Seed (sampler; noise: first seed).")
ModeOpt = typer.Option("live", "--mode", help="Threshold set: live (strict) or shadow (loose).")
DetailOpt = typer.Option(None, "--detail", help="Intrabar detail: walk the bars whose outcome "
                         "depends on the order inside them through these lower-interval bars "
                         "(15m, 5m, 1m where the data has them); default: adverse first.")

def _coins(text: str | None) -> tuple[str, ...] | None:
    return tuple(c.strip() for c in text.split(",") if c.strip()) if text else None


def _num(v: float) -> str:
    """The machine-read number: repr-exact, inf spelled the way float() reads it back."""
    return repr(float(v)) if math.isfinite(v) else ("-inf" if v < 0 else ("inf" if v > 0 else "nan"))


def _sigterm_as_interrupt() -> None:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _config(**kw: Any) -> Any:
    from sweep.study import StudyConfig

    kw["argv"] = redact(" ".join(["sweep"] + sys.argv[1:]))  # a --storage password is never stored
    return StudyConfig(**kw)


def _fixed(strategy: str, text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    from strategies.base import get_strategy
    from sweep.space import parse_fixed

    return parse_fixed(get_strategy(strategy).params_cls, text)


# ---------------------------------------------------------------------------------- run

class _Bar:
    """Progress: trials done / total, best score, trials/s, ETA (rich, on stderr)."""

    def __init__(self, total: int | None, done: int, timeout: float | None, best: float):
        self.total, self.done0, self.done, self.best = total, done, done, best
        self.timeout, self.t0 = timeout, time.monotonic()
        self.progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
            TextColumn("{task.completed}/{task.fields[total_s]} trials"),
            TextColumn("best {task.fields[best]}"), TextColumn("{task.fields[rate]} trials/s"),
            TextColumn("ETA {task.fields[eta]}"), console=err, transient=False,
        )
        self.task = self.progress.add_task("sweep", total=total, completed=done, **self._fields())

    def _fields(self) -> dict[str, str]:
        dt = time.monotonic() - self.t0
        new = self.done - self.done0
        rate = new / dt if dt > 0 else 0.0
        eta = math.inf
        if self.total is not None and rate > 0:
            eta = (self.total - self.done) / rate
        if self.timeout is not None:
            eta = min(eta, max(0.0, self.timeout - dt))
        return {"best": _fmt(self.best), "rate": f"{rate:.2f}",
                "eta": "-" if not math.isfinite(eta) else time.strftime("%H:%M:%S", time.gmtime(eta)),
                "total_s": "?" if self.total is None else str(self.total)}

    def __call__(self, event: dict[str, Any]) -> None:
        self.done += event.get("n", 0)
        if event.get("best") is not None:
            self.best = max(self.best, event["best"]) if math.isfinite(self.best) else event["best"]
        self.progress.update(self.task, completed=self.done, **self._fields())


def run_command(
    strategy: str = typer.Option("momentum", "--strategy", "-s", help="Registered strategy (see `sweep strategies`)."),
    trials: int = typer.Option(None, "--trials", "-n", min=1, help="Evaluated trials the study should hold "
                               "(a rerun with the same --study continues to this number). Default 1000 "
                               "unless --timeout is given."),
    timeout: float = typer.Option(None, "--timeout", min=1, help="Stop starting new trials after this many seconds."),
    sampler: str = typer.Option("tpe", "--sampler", help="Optuna sampler: tpe | cmaes | random | nsga2."),
    data: str = DataOpt,
    interval: str = IntervalOpt,
    coins: str = CoinsOpt,
    friction: str = FrictionOpt,
    detail: str = DetailOpt,
    folds: int = FoldsOpt,
    train: str = TrainOpt,
    test: str = TestOpt,
    purge: str = PurgeOpt,
    embargo: str = EmbargoOpt,
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Worker processes on one study."),
    storage: str = typer.Option(None, "--storage", help="Optuna storage: a journal file path, or an "
                                "RDB URL such as postgresql://user:pw@host/db to share a study across "
                                "machines. Default: results/studies/<study>.journal."),
    storage_timeout: float = typer.Option(10.0, "--storage-timeout", min=0.1, help="Seconds to "
                                          "wait for an RDB storage server to answer before "
                                          "giving up with an error."),
    study: str = typer.Option(None, "--study", help="Study name; default derived from strategy, "
                              "sampler, seed, code, harness and data (same inputs resume)."),
    seed: int = SeedOpt,
    results_dir: Path = ResultsOpt,
    batch: int = typer.Option(None, "--batch", min=1, help="Trials per kernel batch (default by sampler: "
                              "random 32, tpe 16, cmaes 8, nsga2 16)."),
    fix: str = typer.Option(None, "--fix", help="Pin parameters: name=value,name=value."),
    mode: str = ModeOpt,
    top: int = typer.Option(10, "--top", min=1, help="Leaderboard rows."),
) -> None:
    """Run (or resume) an Optuna study of a strategy's parameters, scored walk-forward by the harness.

    Before the first trial of strategy code not yet checked on this data, the causality gate
    runs on a sample of it (a strategy that looks ahead is refused). Every trial lands in the
    results tables. The last three lines: `causality: passed (...)`, `incumbent: ...` and
    `best_score: <number>`.
    """
    from sweep.study import DEFAULT_TRIALS, run_study

    _sigterm_as_interrupt()
    if trials is None and timeout is None:
        trials = DEFAULT_TRIALS
    cfg = _config(strategy=strategy, trials=trials, timeout=timeout, sampler=sampler, data=data,
                  interval=interval, coins=_coins(coins), friction=friction, detail=detail,
                  folds=folds, train=train, test=test, purge=purge, embargo=embargo, jobs=jobs,
                  storage=storage, storage_timeout=storage_timeout, study=study, seed=seed,
                  results=results_dir, batch=batch,
                  fixed=_fixed(strategy, fix), mode=mode)
    bar: list[_Bar] = []
    gate = err.status(f"{strategy}: causality gate (cached after the first run of this code on "
                      "this data)...")

    def on_start(ctx: Any, done: int) -> None:
        from sweep.study import best_score

        gate.stop()
        err.print(f"study [bold]{ctx.study_name}[/] · {ctx.strategy.name} on {ctx.market.label} "
                  f"({ctx.market.n_coins} coins × {ctx.market.n_bars} {ctx.cfg.interval} bars) · "
                  f"{ctx.friction_version} · {ctx.folds.k} folds · {cfg.sampler} · jobs {cfg.jobs}")
        if done:
            err.print(f"resuming: {done} trial(s) already in the study")
        bar.append(_Bar(cfg.trials, done, cfg.timeout, best_score(cfg.results, ctx.study_name)))
        bar[0].progress.start()

    def report(event: dict[str, Any]) -> None:
        if bar:
            bar[0](event)

    gate.start()
    try:
        outcome = run_study(cfg, report, on_start=on_start)
    finally:
        gate.stop()
        if bar:
            bar[0].progress.stop()
    if outcome.reconciled.get("told") or outcome.reconciled.get("failed"):
        err.print(f"reconciled trials left by a killed run: {outcome.reconciled['told']} told from "
                  f"their rows, {outcome.reconciled['failed']} failed (never evaluated)")
    _refresh_db(cfg.results)
    print_board(out, board(cfg.results, study=outcome.study, top=top), f"Top trials of {outcome.study}")
    out.print(f"{outcome.status}: {outcome.done_now} new trial(s) in {outcome.seconds:.1f}s "
              f"({outcome.trials_per_s:.2f} trials/s); study holds {outcome.done_before + outcome.done_now}")
    out.print(f"rows: {outcome.results_dir}; study {outcome.study} now holds {outcome.finished} finished "
              f"trial(s) across all workers ({outcome.storage}), {outcome.rows_here} of them with rows there")
    if outcome.rows_here < outcome.finished:
        out.print(f"[yellow]the other {outcome.finished - outcome.rows_here} trial(s) have their rows in other "
                  "workers' results folders; promote refuses to count part of a study: give every worker "
                  "the same --results (a folder every machine mounts)[/]")
    print(outcome.causality.line(), flush=True)
    inc = outcome.incumbent
    if inc is None:
        out.print("incumbent: none (no comparable scored trial outside this study)")
    else:
        out.print(f"incumbent: {_fmt(inc['score'])} (worst fold {_fmt(inc['worst_fold'])}; "
                  f"{inc['study']} #{inc['trial']}); this study's best is below")
    print(f"best_score: {_num(outcome.best_score)}", flush=True)
    if outcome.status == "interrupted":
        raise typer.Exit(130)


def _require(results_dir: Path) -> None:
    if not results_dir.is_dir():
        raise ConfigError(f"no results folder {results_dir}: pass --results DIR (the folder "
                          "`sweep run --results` wrote), or run a sweep first")


def _refresh_db(results_dir: Path) -> None:
    try:
        results.connect(results_dir).close()
    except results.ResultsError:
        pass


# ---------------------------------------------------------------------------------- scan / noise

def scan_command(
    strategy: str = typer.Option("momentum", "--strategy", "-s", help="Registered strategy."),
    param: str = typer.Option(..., "--param", "-p", help="The parameter to scan."),
    values: str = typer.Option(..., "--values", "-v", help="Comma-separated candidate values."),
    data: str = DataOpt,
    interval: str = IntervalOpt,
    coins: str = CoinsOpt,
    friction: str = FrictionOpt,
    detail: str = DetailOpt,
    folds: int = FoldsOpt,
    train: str = TrainOpt,
    test: str = TestOpt,
    purge: str = PurgeOpt,
    embargo: str = EmbargoOpt,
    seed: int = SeedOpt,
    results_dir: Path = ResultsOpt,
    mode: str = ModeOpt,
) -> None:
    """One-at-a-time scan: each value of one parameter, the others at the incumbent.

    The incumbent is the best trial of this strategy under the current harness, data and friction
    (else the defaults); its own value is evaluated alongside. Rows are appended to the results
    tables, the kept value is recorded, and the last line is `Best: <param>=<value> score=<s>`.
    """
    from sweep.autoresearch import scan

    cfg = _config(strategy=strategy, trials=1, data=data, interval=interval, coins=_coins(coins),
                  friction=friction, detail=detail, folds=folds, train=train, test=test,
                  purge=purge, embargo=embargo, seed=seed, results=results_dir, mode=mode)
    with err.status(f"scanning {param} of {strategy}..."):
        res = scan(cfg, param, [v for v in values.split(",") if v.strip()])
    inc = res.incumbent
    table = Table(title=f"Scan of {param} for {strategy} on {res.market_label} "
                        f"(incumbent: {inc.source})", title_justify="left")
    table.add_column(param, justify="right")
    for _, label, _ in METRIC_COLS:
        table.add_column(label, justify="right")
    table.add_column("win rate", justify="right")
    table.add_column("note")
    for i, r in enumerate(res.candidates):
        ev = r.evaluation
        note = []
        if res.values[i] == getattr(inc.params, param):
            note.append("incumbent")
        if i == res.kept_index:
            note.append("KEPT")
        if r.status != "complete":
            note.append(r.error or (ev.rejected if ev else "") or r.status)
        m = {"score": r.score, "worst_fold": r.worst_fold}
        if ev is not None:
            m.update({f"base_{k}": getattr(ev.base, k) for k in ("annualized", "max_dd", "sharpe", "n_trades")})
            m["stress_calmar"] = ev.stress.calmar
        table.add_row(_fmt(res.values[i]), *[cell(m.get(c), kind) for c, _, kind in METRIC_COLS],
                      pct(ev.base.win_rate if ev else None), ", ".join(note))
    out.print(table)
    _refresh_db(results_dir)
    print(res.causality.line(), flush=True)
    print(f"Best: {param}={_fmt(res.values[res.kept_index])} score={_num(res.kept.score)}", flush=True)


def noise_command(
    strategy: str = typer.Option("momentum", "--strategy", "-s", help="Registered strategy."),
    repeats: int = typer.Option(8, "--repeats", "-r", min=2, help="Re-runs (fold offsets, seeds)."),
    step: int = typer.Option(None, "--step-bars", min=1, help="Fold offset between re-runs "
                             "(default: one test window / repeats)."),
    data: str = DataOpt,
    interval: str = IntervalOpt,
    coins: str = CoinsOpt,
    friction: str = FrictionOpt,
    detail: str = DetailOpt,
    folds: int = FoldsOpt,
    train: str = TrainOpt,
    test: str = TestOpt,
    purge: str = PurgeOpt,
    embargo: str = EmbargoOpt,
    seed: int = SeedOpt,
    results_dir: Path = ResultsOpt,
    mode: str = ModeOpt,
) -> None:
    """The noise floor: re-run the incumbent under shifted folds (and seeds) and print the spread.

    A change is real only when it beats the incumbent by more than this std. Last line:
    `noise_floor: <std>`.
    """
    from sweep.autoresearch import noise

    cfg = _config(strategy=strategy, trials=1, data=data, interval=interval, coins=_coins(coins),
                  friction=friction, detail=detail, folds=folds, train=train, test=test,
                  purge=purge, embargo=embargo, seed=seed, results=results_dir, mode=mode)
    with err.status(f"re-running the {strategy} incumbent {repeats} times..."):
        res = noise(cfg, repeats, step)
    table = Table(title=f"Noise of {strategy} on {res.market_label} (incumbent: {res.incumbent.source})",
                  title_justify="left")
    for c in ("offset_bars", "seed", "score", "worst_fold", "trades", "rejected"):
        table.add_column(c, justify="left" if c == "rejected" else "right")
    for r in res.rows.itertuples(index=False):
        table.add_row(*[_fmt(v) for v in r])
    out.print(table)
    out.print(f"score: mean {_fmt(res.mean)}  std {_fmt(res.std)}  min {_fmt(res.min)}  "
              f"max {_fmt(res.max)}  spread {_fmt(res.max - res.min)}")
    _refresh_db(results_dir)
    print(res.causality.line(), flush=True)
    print(f"noise_floor: {_num(res.std)}", flush=True)


# ---------------------------------------------------------------------------------- sql

def sql_command(
    query: str = typer.Argument(None, help="A SELECT over the views: runs, trials, trial_returns, trades, ..."),
    csv: bool = typer.Option(False, "--csv", help="Print CSV instead of a table."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON records instead of a table."),
    schema: bool = typer.Option(False, "--schema", help="Print the documented schema of every table."),
    limit: int = typer.Option(200, "--max-rows", min=1, help="Rows shown in the table view."),
    results_dir: Path = ResultsOpt,
) -> None:
    """Ask DuckDB anything about the results tables (the views results/results.duckdb holds).

    Read-only: one SELECT (DESCRIBE, SHOW and SUMMARIZE too) on fresh in-memory views; writes,
    COPY, ATTACH, INSTALL, LOAD, SET and files outside the results folder are refused, and
    nothing is written.
    """
    if csv and as_json:
        raise ConfigError("choose one of --csv and --json")
    if schema:
        df = results.schema_frame()
    elif not query:
        raise ConfigError('give a query, e.g. sweep sql "SELECT count(*) FROM trials", or --schema')
    else:
        _require(results_dir)
        statement = results.select_statement(query)  # refused before anything is opened
        con = results.connect_readonly(results_dir)
        try:
            df = con.execute(statement).df()
        except duckdb.Error as exc:
            raise ConfigError(f"query failed: {str(exc).splitlines()[0]}") from None
        finally:
            con.close()
    if csv:
        sys.stdout.write(df.to_csv(index=False))
        return
    if as_json:
        records = [dict(zip(map(str, df.columns), row, strict=True)) for row in df.itertuples(index=False)]
        sys.stdout.write(json.dumps(results.jsonable(records), allow_nan=False) + "\n")
        return
    table = Table(show_lines=False)
    for c in df.columns:
        table.add_column(str(c), overflow="fold")
    for row in df.head(limit).itertuples(index=False):
        table.add_row(*[_fmt(v) for v in row])
    out.print(table)
    if len(df) > limit:
        out.print(f"({len(df)} rows, {limit} shown; --csv or --json for all)")


def leaderboard_command(
    strategy: str = typer.Option(None, "--strategy", "-s", help="Only this strategy."),
    study: str = typer.Option(None, "--study", help="Only this study."),
    friction: str = typer.Option(DEFAULT_FRICTION, "--friction", help="Only trials of this friction "
                                 "model (legacy, v2, v3, v4, v5), or all."),
    data: str = typer.Option("all", "--data", help="Only trials on this data (a dataset folder, "
                             "store root, parquet file or 'embedded', loaded at --interval like "
                             "`sweep run` loads it), or all."),
    interval: str = typer.Option(None, "--interval", help="--data: the interval to load (default: "
                                 "the strategy's own, else 1h)."),
    coins: str = CoinsOpt,
    top: int = typer.Option(20, "--top", min=1, help="Rows per table."),
    all_hashes: bool = typer.Option(False, "--all-hashes", help="Include trials of other harness "
                                    "hashes (each hash in its own tables; hidden by default)."),
    results_dir: Path = ResultsOpt,
    storage: str = typer.Option(None, "--storage", help="The studies' Optuna storage, counted against the "
                                "rows (default: the one each run recorded)."),
) -> None:
    """The best trials, one table per comparable group: the same harness hash, friction model,
    data and folds (trials of different groups are never ranked together). Rejected trials last;
    returns and drawdowns in percent.

    Refuses (exit 2, both counts) when a study ranked here finished trials whose rows are in
    another results folder: give every worker the same --results.
    """
    from harness.friction import get_friction
    from harness.manifest import harness_hash
    from sweep.coverage import require_complete

    _require(results_dir)
    h = None if all_hashes else harness_hash()
    fr = None if friction == "all" else get_friction(friction).version
    fps = None
    if data != "all":
        from harness.sources import load_market
        from strategies.base import get_strategy

        iv = interval or (get_strategy(strategy).interval if strategy else "1h")
        with err.status(f"loading {data} ({iv}) for its fingerprint..."):
            picked = _coins(coins)
            fps = {load_market(data, interval=iv, coins=list(picked) if picked else None).fingerprint}
    require_complete(results_dir, ranked_studies(results_dir, strategy, study, h), storage)
    b = board(results_dir, strategy, study, h, fr, fps, top)
    if not b.groups:
        out.print(f"no comparable trials in {results_dir}" + (f" for {strategy}" if strategy else ""))
    else:
        print_board(out, b, f"Leaderboard of {strategy or 'all strategies'}")
    hints = {"harness": ("harness hashes", "--all-hashes"), "friction": ("friction models", "--friction all"),
             "data": ("datasets", "--data all")}
    for what, n in b.hidden.items():
        if n:
            other, flag = hints[what]
            out.print(f"{n} trial(s) of other {other} hidden ({flag} shows them, each in its own table)")


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
    app.command("scan")(scan_command)
    app.command("noise")(noise_command)
    app.command("sql")(sql_command)
    app.command("leaderboard")(leaderboard_command)
