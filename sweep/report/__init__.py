"""`sweep report`: one self-contained, offline HTML file of a trial, a study or a saved backtest.

A trial is re-run as `sweep backtest --trial` runs it (its own data, folds and friction); a
study shows its best trial the same way plus the search itself; a saved backtest is read from
its folder. Modules: figures (one backtest's charts), tables (its tables), study (the search's
charts), page (the document, plotly.js inlined once).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.atomic import atomic_write
from harness.errors import ConfigError
from sweep import results
from sweep.backtest import BacktestRecord, fmt, read_record, run_backtest, trial_note, trial_spec
from sweep.backtest_inputs import best_of_study, parse_ref, recorded_trial
from sweep.report import figures, tables
from sweep.report.page import Section, figure_div, page
from sweep.report.study import StudyData, history_figure, importance_figure, load_study, pair_figure


@dataclass(frozen=True)
class Report:
    html: str
    title: str
    record: BacktestRecord
    study: StudyData | None


def promotion_evidence(results_dir: Path, study: str | None, trial: int | None
                       ) -> tuple[pd.DataFrame | None, str]:
    """The newest promote run's rows for the buckets of this trial, and a note saying which."""
    if study is None or not results.has_rows(results_dir, "promotions"):
        return None, "no promote run has judged this trial's buckets"
    import sweep.promote  # noqa: F401  (declares the promotions table)

    df = results.query(results_dir, "SELECT * FROM promotions WHERE study = ? AND trial = ? "
                       "ORDER BY generated_at DESC", [study, trial])
    if df.empty:
        return None, "no promote run has judged this trial's buckets"
    newest = df[df["run_id"] == df["run_id"].iloc[0]]
    when = pd.Timestamp(newest["generated_at"].iloc[0])
    return newest, (f"promotion evidence from the promote run of {when:%Y-%m-%d %H:%M} UTC "
                    f"({int(newest['promoted'].sum())} of {len(newest)} buckets promoted)")


def _meta_lines(m: dict) -> list[str]:
    score = fmt(m["score"])
    lines = [f"score {score}" + (f" (rejected: {m['rejected']})" if m["rejected"] else "")
             + f": the {m['meaning']}"]
    coins = m["market"]["coins"]
    lines.append(f"{m['strategy']} ({m['source']}) on {m['market']['label']} · {m['interval']} · "
                 f"{len(coins)} coins ({', '.join(coins[:12])}{'...' if len(coins) > 12 else ''}) · "
                 f"{m['friction']} · {m['mode']} thresholds"
                 + (f" · detail {m['detail']}" if m["detail"] else ""))
    seg = m["segments"]
    lines.append(f"out of sample {seg[0][0][:16]} to {seg[-1][1][:16]} UTC in {len(seg)} "
                 f"{'walk-forward folds' if m['walk_forward'] else 'segment'}"
                 + (f" · lockbox {m['lockbox'][0][:16]} to {m['lockbox'][1][:16]} (not evaluated)"
                    if m["lockbox"] else " · no lockbox"))
    if m["recorded_score"] is not None:
        lines.append(trial_note(m))
    lines.append("params: " + ", ".join(f"{k}={v}" for k, v in m["params"].items()))
    lines.append(f"harness {m['harness_hash']} · strategy code {m['code_hash']} · data "
                 f"{m['market']['fingerprint']} · made {m['created_at'][:19]} UTC")
    return lines


def _equity_note(m: dict) -> str:
    what = ("the chained out-of-sample test windows (dotted lines: fold boundaries)"
            if m["walk_forward"] else "the one segment")
    lock = "; the grey band is the lockbox, never evaluated" if m["lockbox"] else ""
    return (f"Equity at every bar close over {what}, at base friction and with fees and slippage "
            f"x1.5{lock}. Drawdown is from the running peak, as max drawdown is measured.")


def render(rec: BacktestRecord, title: str, evidence: pd.DataFrame | None, evidence_note: str,
           study: StudyData | None = None) -> Report:
    syn = rec.synthetic or bool(study and study.synthetic)
    title = figures.tag(title, syn)
    n = len(rec.trades)
    sections = [
        Section("Equity and drawdown", figure_div(figures.equity_figure(rec), "equity-chart"),
                _equity_note(rec.meta)),
        Section("Metrics and out-of-sample windows",
                f'<div class="grid"><div>{tables.metrics_table(rec)}</div><div>'
                f"{tables.folds_table(rec)}{figure_div(figures.folds_figure(rec), 'folds-chart')}"
                "</div></div>"),
        Section("Distribution of R", figure_div(figures.r_figure(rec), "r-chart")),
        Section("Buckets (strategy, side, session, regime, vol bucket)",
                f'<div class="scroll">{tables.buckets_table(rec, evidence)}</div>', evidence_note),
        Section(f"Trades ({n})", f'<div class="scroll">{tables.trades_table(rec)}</div>',
                "Every closed trade at base friction; click a header to sort."),
    ]
    if study is not None:
        sections.append(Section(f"Study {study.name}: optimization history",
                                figure_div(history_figure(study), "history-chart")))
        if study.importances:
            sections.append(Section("Parameter importances", figure_div(importance_figure(study),
                                                                       "importance-chart"),
                                    "optuna.importance.get_param_importances over the recorded "
                                    "trials' objective (the score; a rejected trial's unrejected score)."))
            pair = pair_figure(study)
            if pair is not None:
                sections.append(Section("The objective across the two most important parameters",
                                        figure_div(pair, "pair-chart")))
        else:
            sections.append(Section("Parameter importances", "<p>Not enough evaluated trials to "
                                                             "compute importances.</p>"))
    return Report(page(title, syn, _meta_lines(rec.meta), sections), title, rec, study)


def for_trial(results_dir: Path, ref: str, data: str | None = None) -> Report:
    rec = recorded_trial(results_dir, *parse_ref(ref))
    bt = run_backtest(trial_spec(rec, f"trial {rec.ref}", data=data, results=results_dir))
    ev, note = promotion_evidence(results_dir, rec.study, rec.trial)
    return render(bt, f"{rec.strategy} trial {rec.ref}", ev, note)


def for_study(results_dir: Path, name: str, data: str | None = None) -> Report:
    sd = load_study(results_dir, name)
    rec = best_of_study(results_dir, name)
    bt = run_backtest(trial_spec(rec, f"best trial {rec.ref}", data=data, results=results_dir))
    ev, note = promotion_evidence(results_dir, rec.study, rec.trial)
    return render(bt, f"{sd.strategy} study {name}", ev, note, sd)


def for_backtest(path: Path, results_dir: Path) -> Report:
    bt = read_record(path)
    m = bt.meta
    ev, note = promotion_evidence(results_dir, m["study"], m["trial"])
    return render(bt, f"{m['strategy']} backtest ({m['source']})", ev, note)


def write(report: Report, path: Path) -> Path:
    if path.is_dir():
        raise ConfigError(f"--out {path} is a folder: give a file name such as report.html")
    atomic_write(path, report.html)
    return path


def default_name(kind: str, what: str) -> str:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in what)
    return f"report-{kind}-{safe}.html"
