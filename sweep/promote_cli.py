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
from sweep.promote import run_promotion  # also declares the promotions and lockbox_touches tables
from sweep.promote_stats import KillSpec

_G, _K = Gates(), KillSpec()  # the option defaults are the thresholds, defined there

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)


def _f(v: float | None, fmt: str = "{:.3g}") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return fmt.format(v)


def promote_command(
    results_dir: Path = typer.Option(results.DEFAULT_RESULTS, "--results", help="Results folder written by `sweep run`."),
    data: str = typer.Option(None, "--data", help="The data the sweep ran on (dataset folder, store root, parquet "
                             "file or 'embedded'); default: ./data when it holds data, else the embedded market. "
                             "Fee stress and the lockbox are re-evaluated on it, so its fingerprint must match."),
    out_path: Path = typer.Option(Path("live_candidates.json"), "--out", help="Candidates file to write (atomically)."),
    strategy: str = typer.Option(None, "--strategy", "-s", help="Only this strategy (default: every strategy in the results)."),
    top: int = typer.Option(_G.top_k, "--top", help="Top trials per strategy whose OOS trades form the buckets."),
    coins: str = typer.Option(None, "--coins", help="Comma-separated coins, when the sweep ran on a subset."),
    min_trades: int = typer.Option(_G.min_trades, "--min-trades", help="Gate n: closed OOS trades in the bucket at least this."),
    min_t: float = typer.Option(_G.min_t, "--min-t", help="Gate t: t-stat of per-trade R at least this."),
    min_dsr: float = typer.Option(_G.min_dsr, "--min-dsr", help="Gate dsr: Deflated Sharpe (N = ledger trials) at least this."),
    max_pbo: float = typer.Option(_G.max_pbo, "--max-pbo", help="Gate pbo: the study's PBO (CSCV) at most this."),
    stress_mult: float = typer.Option(_G.stress_mult, "--stress-mult", help="Gate stress: fee and slippage multiplier; mean R must stay > 0."),
    lockbox_alpha: float = typer.Option(_G.lockbox_alpha, "--lockbox-alpha", help="Gate lockbox: fail when the one-sided Welch p "
                                        "(lockbox mean R below the OOS mean) is below this."),
    lockbox_min_trades: int = typer.Option(_G.lockbox_min_trades, "--lockbox-min-trades", help="Gate lockbox: trades the lockbox must hold in the bucket."),
    kill_window: int = typer.Option(_K.window_trades, "--kill-window", help="Kill criteria are judged over this many live trades."),
    kill_confidence: float = typer.Option(_K.confidence, "--kill-confidence", help="Confidence of the kill limits."),
) -> None:
    """Promote the buckets that survive every gate to live_candidates.json (the default answer is none).

    Buckets are (strategy, side, session, regime, vol_bucket) over the closed out-of-sample trades of the top trials of each strategy. Gates, in order: n, t, DSR, study PBO, fee stress, lockbox (the first failure is shown). Only this command reads the lockbox, and every read is logged in the `lockbox_touches` table; every bucket considered is logged in `promotions`. Exit 0 also when nothing passes.
    """
    try:
        gates = Gates(top_k=top, min_trades=min_trades, min_t=min_t, min_dsr=min_dsr,
                      max_pbo=max_pbo, stress_mult=stress_mult, lockbox_alpha=lockbox_alpha,
                      lockbox_min_trades=lockbox_min_trades)
        kill = KillSpec(window_trades=kill_window, confidence=kill_confidence)
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.completed} steps"),
                      TimeElapsedColumn(), console=err, transient=True,
                      disable=not err.is_terminal) as bar:
            task = bar.add_task("promote", total=None)

            def progress(what: str, done: int) -> None:
                bar.update(task, description=what, completed=done)

            report = run_promotion(results_dir, data=data, out=out_path, strategy=strategy,
                                   gates=gates, kill=kill, progress=progress,
                                   coins=[c.strip() for c in coins.split(",") if c.strip()] if coins else None)
    except HarnessError as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        raise typer.Exit(2) from None
    except Exception as exc:  # a bug: still one line (HLQ_DEBUG=1 shows the traceback)
        if os.environ.get("HLQ_DEBUG"):
            raise
        print(f"error: unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
              "(set HLQ_DEBUG=1 for the traceback)", file=sys.stderr)
        raise typer.Exit(1) from None
    _print(report)


def _print(report) -> None:
    if report.skipped:
        t = Table(title="Skipped trials", title_justify="left")
        for c in ("strategy", "trials", "reason"):
            t.add_column(c, justify="right" if c == "trials" else "left", overflow="fold")
        for s in report.skipped:
            t.add_row(s.strategy, str(s.n), s.reason)
        out.print(t)
    if report.studies:
        t = Table(title="Studies", title_justify="left")
        for c in ("strategy", "N ledger", "N study", "N effective", "PBO", "note"):
            t.add_column(c, justify="left" if c in ("strategy", "note") else "right")
        for name, s in sorted(report.studies.items()):
            t.add_row(name, str(s.n_trials), str(s.n_study), f"{s.n_effective:g}", _f(s.pbo), s.pbo_note)
        out.print(t)
    t = Table(title=f"Buckets ({sum(b.promoted for b in report.buckets)} promoted of {len(report.buckets)})",
              title_justify="left")
    cols = ("strategy", "side", "session", "regime", "vol", "n", "shadow", "mean R", "t", "DSR", "Sharpe",
            "max DD R", "stress R", "lockbox", "verdict")
    for c in cols:
        t.add_column(c, justify="left" if c in cols[:5] + ("lockbox", "verdict") else "right",
                     overflow="fold")
    for b in report.buckets:
        s = b.stats
        lock = "-" if b.lockbox is None else (
            f"n {b.lockbox.n}, R {_f(b.lockbox.mean_r, '{:+.2f}')}, p {_f(b.lockbox.welch_p, '{:.2f}')}")
        verdict = "[green]PROMOTED[/]" if b.promoted else f"[red]{b.failed}[/]: {b.reason}"
        t.add_row(b.strategy, b.side, b.session, b.regime, b.vol_bucket, str(s.n), str(b.n_shadow),
                  _f(s.mean_r, "{:+.3f}"), _f(s.t_stat, "{:.2f}"), _f(s.dsr, "{:.3f}"),
                  _f(s.sharpe, "{:.2f}"), _f(s.max_dd_r, "{:.2f}"),
                  _f(b.stress.mean_r if b.stress else None, "{:+.3f}"), lock, verdict)
    out.print(t)
    n = len(report.candidates.buckets)
    out.print(f"{n} bucket(s) promoted; wrote {report.out} (harness {report.candidates.harness_hash}, "
              f"{report.lockbox_touches} lockbox evaluation(s) logged)")


def register(app: typer.Typer) -> None:
    app.command("promote")(promote_command)
