"""`sweep calibrate`: the false-promotion rate on noise and the power curve of the gate."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness.errors import ConfigError, HarnessError

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--strengths takes comma-separated numbers (annual Sharpe), got {text!r}") from None


def _f(v: float, fmt: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return fmt.format(v) if math.isfinite(v) else ("-inf (all rejected)" if v < 0 else "inf")


def calibrate_command(
    runs: int = typer.Option(10, "--runs", "-n", min=1, help="Markets per strength."),
    strengths: str = typer.Option("0,6,12", "--strengths", help="True annual Sharpe ratios of the planted "
                                  "edge (on the whole market, after costs), comma-separated; 0 is pure noise."),
    null: bool = typer.Option(True, "--null/--no-null", help="Also the cost-neutral null: a planted drift "
                              "that exactly pays the costs (net Sharpe 0); any promotion there is false."),
    strategy: str = typer.Option("hour_of_day", "--strategy", "-s", help="Strategy searched (one whose edge "
                                 "calibrate can plant)."),
    seed: int = typer.Option(0, "--seed", help="Run k of every strength uses seed + k (market and sampler)."),
    trials: int = typer.Option(60, "--trials", min=1, help="Optuna trials per study."),
    coins: int = typer.Option(15, "--coins", min=1, help="Coins per market."),
    bars: int = typer.Option(5000, "--bars", min=500, help="Hourly bars per market (lockbox included)."),
    scratch: Path = typer.Option(Path("results/calibrate"), "--scratch", help="Scratch folder: one "
                                 "dataset, results folder and candidates file per run (kept for inspection)."),
) -> None:
    """Prove the gate: markets with a known truth, the normal run + promote pipeline on each.

    Pure noise (fat tails, clustering volatility) must promote in at most 5% of runs; a planted
    edge must be promoted more often the stronger it is. Prints per strength: runs, promoted
    share, false buckets, the oracle's measured OOS Sharpe, median best_score, DSR and SPA p.
    """
    from harness.manifest import harness_hash
    from sweep.calibrate import CalibrationConfig, calibrate, cells, summary

    try:
        harness_hash()  # the freeze first: an edited harness refuses here
        cfg = CalibrationConfig(strategy=strategy, strengths=_floats(strengths), null=null, runs=runs,
                                seed=seed, n_coins=coins, n_bars=bars, trials=trials, scratch=scratch)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    t0 = time.monotonic()
    with Progress(TextColumn("calibrate"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=err, transient=True) as bar:
        task = bar.add_task("", total=len(cells(cfg)) * cfg.runs)

        def step(r) -> None:
            bar.update(task, advance=1, description=f"{r.kind} {r.strength:g} seed {r.seed}: "
                                                    f"{'promoted' if r.promoted else 'not promoted'}")

        rows = calibrate(cfg, step)
    wall = time.monotonic() - t0
    df = summary(rows)
    t = Table(title=f"Calibration of the gate: {strategy}, {coins} coins x {bars} hourly bars, "
                    f"{trials} trials per study", title_justify="left")
    for c in ("strength (Sharpe)", "runs", "promoted", "false buckets", "oracle Sharpe", "median best_score",
              "median DSR", "median SPA p", "seeds"):
        t.add_column(c, justify="right")
    for r in df.itertuples(index=False):
        label = {"noise": "noise", "null": "0 (pays costs)"}.get(r.kind, f"{r.strength:g}")
        t.add_row(label, str(r.runs), f"{r.promoted:.0%}",
                  str(r.false_buckets), _f(r.oracle_sharpe, "{:.2f}"), _f(r.best_score, "{:.3g}"),
                  _f(r.dsr, "{:.3f}"), _f(r.spa_p, "{:.3f}"), r.seeds)
    out.print(t)
    for kind, what in (("noise", "pure noise"), ("null", "the cost-neutral null")):
        row = df[df["kind"] == kind]
        if len(row):
            out.print(f"false-promotion rate on {what}: {row['promoted'].iloc[0]:.0%} (target <= 5%)")
    out.print(f"wall time {wall:.0f}s; rerun with --seed {seed} --runs {runs} --strengths {strengths}; "
              f"runs kept under {scratch}")


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_command)
