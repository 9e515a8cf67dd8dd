"""`sweep report`: one self-contained offline HTML file of a trial, a study or a backtest."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from harness.errors import ConfigError
from harness.manifest import harness_hash
from sweep.run_cli import DataOpt, ResultsOpt

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)


def report_command(
    trial: str = typer.Option(None, "--trial", help="STUDY#N: re-run that trial as it was scored "
                              "and report it."),
    study: str = typer.Option(None, "--study", help="A study: its best trial, plus the "
                              "optimization history, parameter importances and the score across "
                              "the two most important parameters."),
    backtest: Path = typer.Option(None, "--backtest", help="A folder written by `sweep backtest "
                                  "--out`."),
    data: str = DataOpt,
    results_dir: Path = ResultsOpt,
    out_path: Path = typer.Option(None, "--out", help="HTML file to write (atomically); default "
                                  "<results>/reports/report-<kind>-<name>.html."),
) -> None:
    """Write ONE self-contained HTML file (plotly.js inlined: opens offline): equity and drawdown
    of base and fee stress with fold boundaries and the lockbox, per-fold scores, the R
    distribution, buckets with their promotion evidence, every trade (sortable); for a study
    also the search. Title and axes say SYNTHETIC when the data is."""
    import sweep.report as rp

    given = [n for n, v in (("--trial", trial), ("--study", study), ("--backtest", backtest)) if v]
    if len(given) != 1:
        raise ConfigError("give exactly one of --trial STUDY#N, --study NAME or --backtest DIR"
                          + (f" (got {', '.join(given)})" if given else ""))
    if out_path is not None and out_path.is_dir():
        raise ConfigError(f"--out {out_path} is a folder: give a file name such as report.html")
    if trial or study:
        harness_hash()  # they re-run a trial: an edited harness refuses first (--backtest only reads)
    with err.status("building the report..."):
        if trial:
            report, name = rp.for_trial(results_dir, trial, data), rp.default_name("trial", trial)
        elif study:
            report, name = rp.for_study(results_dir, study, data), rp.default_name("study", study)
        else:
            report = rp.for_backtest(backtest, results_dir)
            name = rp.default_name("backtest", backtest.resolve().name)
        path = rp.write(report, out_path or results_dir / "reports" / name)
    out.print(f"{report.title}: {len(report.record.trades)} trades")
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)", flush=True)


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)
