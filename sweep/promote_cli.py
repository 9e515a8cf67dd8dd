"""`sweep promote`: the adversarial gate over the results; writes live_candidates.json."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness.errors import HarnessError
from schemas.candidates import Gates
from sweep import results
from sweep.promote import KillSpec, run_promotion

_G, _K = Gates(), KillSpec()  # the option defaults are DESIGN section 9's thresholds, defined there

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)


def _f(v: float | None, fmt: str = "{:.3g}") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return fmt.format(v)


def promote_command(
    results_dir: Path = typer.Option(results.DEFAULT_RESULTS, "--results", help="Results folder written by `sweep run`."),
    data: str = typer.Option(None, "--data", help="Load each run's market from here instead of the source its `runs` "
                             "row recorded (the same coins and span are taken; the fingerprint must match)."),
    out_path: Path = typer.Option(Path("live_candidates.json"), "--out", help="Candidates file to write (atomically)."),
    strategy: str = typer.Option(None, "--strategy", "-s", help="Only this strategy (default: every strategy in the results)."),
    top: int = typer.Option(_G.top_k, "--top", help="Top trials per strategy whose OOS trades form the buckets."),
    min_trades: int = typer.Option(_G.min_trades, "--min-trades", help="Gate n: closed OOS trades in the bucket at least this."),
    min_t: float = typer.Option(_G.min_t, "--min-t", help="Gate t: t-stat of per-trade R at least this (Harvey, Liu & Zhu)."),
    correction: str = typer.Option(_G.correction, "--correction", help="Gate p: holm (family-wise) or bh "
                                   "(false discovery rate), over every bucket examined in this run."),
    alpha: float = typer.Option(_G.alpha, "--alpha", help="Gate p: corrected one-sided p of mean R > 0 at most this."),
    min_dsr: float = typer.Option(_G.min_dsr, "--min-dsr", help="Gate dsr: the selected trial's Deflated Sharpe at least this."),
    spa_alpha: float = typer.Option(_G.spa_alpha, "--spa-alpha", help="Gate spa: Hansen's SPA p over every trial at most this."),
    max_oos_loss: float = typer.Option(_G.max_p_oos_loss, "--max-oos-loss", help="Gate oos_loss: share of CSCV splits "
                                       "where the in-sample best trial loses out of sample, at most this."),
    stress_mult: float = typer.Option(_G.stress_mult, "--stress-mult", help="Gate stress: fee and slippage multiplier; mean R must stay > 0."),
    lockbox_alpha: float = typer.Option(_G.lockbox_alpha, "--lockbox-alpha", help="Gate lockbox: fail when the bucket's "
                                        "lockbox trades are negative with one-sided p below this."),
    kill_window: int = typer.Option(_K.window_trades, "--kill-window", help="Kill criteria are judged over this many live trades."),
    kill_confidence: float = typer.Option(_K.confidence, "--kill-confidence", help="Confidence of the kill limits."),
    storage: str = typer.Option(None, "--storage", help="The studies' Optuna storage, counted against the rows "
                                "(default: the one each run recorded; a masked database password is read from "
                                "PGPASSWORD or ~/.pgpass)."),
) -> None:
    """Promote the buckets that survive every gate to live_candidates.json.

    First, every study's finished trials (in its Optuna storage) must all have rows in --results: with several machines on one study, every worker must write to one shared --results, else N would count part of the search (exit 2, naming both counts).

    Buckets are (strategy, side, session, regime, vol_bucket) over the closed out-of-sample trades of the top trials of each strategy. Gates, in order: n, t, corrected p (bucket); DSR, SPA, P(OOS loss) (study); fee stress; lockbox. The first failure is shown with its number and threshold. The lockbox is read once per candidate (params) and every read is logged in `lockbox_touches` before it happens; later runs reuse it. Exit 0 also when nothing passes; exit 2 without touching --out when every trial was skipped (other data, other harness).
    """
    try:
        gates = Gates(top_k=top, min_trades=min_trades, min_t=min_t, correction=correction, alpha=alpha,
                      min_dsr=min_dsr, spa_alpha=spa_alpha, max_p_oos_loss=max_oos_loss,
                      stress_mult=stress_mult, lockbox_alpha=lockbox_alpha)
        kill = KillSpec(window_trades=kill_window, confidence=kill_confidence)
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.completed} steps"),
                      TimeElapsedColumn(), console=err, transient=True,
                      disable=not err.is_terminal) as bar:
            task = bar.add_task("promote", total=None)

            def progress(what: str, done: int) -> None:
                bar.update(task, description=what, completed=done)

            report = run_promotion(results_dir, data=data, out=out_path, strategy=strategy,
                                   gates=gates, kill=kill, progress=progress, storage=storage)
    except HarnessError as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        raise typer.Exit(2) from None
    except Exception as exc:  # a bug: still one line (HLQ_DEBUG=1 shows the traceback)
        if os.environ.get("HLQ_DEBUG"):
            raise
        print(f"error: unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
              "(set HLQ_DEBUG=1 for the traceback)", file=sys.stderr)
        raise typer.Exit(1) from None
    print_report(report)


def print_report(report) -> None:
    if report.coverage:
        n = sum(c.finished for c in report.coverage)
        out.print(f"{len({c.study for c in report.coverage})} stud(ies): all {n} finished trials of their "
                  f"Optuna storages have rows in {report.coverage[0].results_dir}")
    if report.skipped:
        t = Table(title="Skipped trials", title_justify="left")
        for c in ("strategy", "trials", "reason"):
            t.add_column(c, justify="right" if c == "trials" else "left", overflow="fold")
        for s in report.skipped:
            t.add_row(s.strategy, str(s.n), s.reason)
        out.print(t)
    if report.studies:
        t = Table(title="Studies (the search as a whole)", title_justify="left")
        for c in ("strategy", "selected", "N ledger", "N eff", "Sharpe", "DSR", "SPA p", "P(OOS loss)", "PBO", "note"):
            t.add_column(c, justify="left" if c in ("strategy", "selected", "note") else "right", overflow="fold")
        for name, s in sorted(report.studies.items()):
            t.add_row(name, str(s.selected), str(s.n_trials), f"{s.n_effective:g}", _f(s.sharpe, "{:.2f}"),
                      _f(s.dsr, "{:.3f}"), _f(s.spa_p, "{:.3f}"), _f(s.p_oos_loss, "{:.0%}"),
                      _f(s.pbo, "{:.0%}"), s.note)
        out.print(t)
    t = Table(title=f"Buckets ({sum(b.promoted for b in report.buckets)} promoted of {len(report.buckets)})",
              title_justify="left")
    cols = ("strategy", "side", "session", "regime", "vol", "n", "shadow", "mean R", "t", "p corr",
            "stress R", "lockbox", "first failed gate")
    for c in cols:
        t.add_column(c, justify="left" if c in cols[:5] + ("lockbox", "first failed gate") else "right",
                     overflow="fold")
    for b in report.buckets:
        s, lb = b.stats, b.lockbox
        lock = "-" if lb is None else (
            f"n {lb.n}, R {_f(lb.mean_r, '{:+.2f}')}, mde {_f(lb.mde, '{:.2f}')}; "
            f"{b.key[1]} n {lb.side_n}, R {_f(lb.side_mean_r, '{:+.2f}')}")
        verdict = "[green]PROMOTED[/]" if b.promoted else f"[red]{b.failed.gate}[/]: {b.reason}"
        t.add_row(*b.key, str(s.n), str(b.n_shadow), _f(s.mean_r, "{:+.3f}"), _f(s.t_stat, "{:.2f}"),
                  _f(b.p_corrected, "{:.2g}"), _f(b.stress.mean_r if b.stress else None, "{:+.3f}"),
                  lock, verdict)
    out.print(t)
    n = len(report.candidates.buckets)
    out.print(f"{n} bucket(s) promoted; wrote {report.out} (harness {report.candidates.harness_hash}, "
              f"{report.candidates.gates.correction} correction, {report.lockbox_reads} new lockbox read(s))")


def register(app: typer.Typer) -> None:
    app.command("promote")(promote_command)
