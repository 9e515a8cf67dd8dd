"""The study section: optimization history, parameter importances (Optuna's own evaluator,
`optuna.importance.get_param_importances`) and the objective across the two most important
parameters. Read from the results tables (trials and the run's search space), so it works
whatever Optuna storage the study used.

The values are the objective told to the sampler: the score, or for a rejected trial its
unrejected score (sweep.trial_rows), so rejected trials inform the picture too; failed trials
are left out.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
import plotly.graph_objects as go
from optuna.distributions import BaseDistribution, json_to_distribution

from harness.errors import ConfigError
from sweep import results
from sweep.report.figures import BASE, GRID, STRESS, layout, tag


@dataclass(frozen=True)
class StudyData:
    name: str
    strategy: str
    label: str  # data label of the run
    synthetic: bool
    trials: pd.DataFrame  # trial, status, score, objective, params (dict), one row per trial
    distributions: dict[str, BaseDistribution]
    importances: dict[str, float]  # descending; empty when it cannot be computed
    evaluator: str


def load_study(results_dir: Path, name: str) -> StudyData:
    df = results.query(results_dir, "SELECT trial, status, score, objective, params, strategy, "
                       "finished_at FROM trials WHERE study = ? AND command = 'run' ORDER BY "
                       "finished_at", [name]) if results.has_rows(results_dir, "trials") else pd.DataFrame()
    if df.empty:
        raise ConfigError(f"no study {name!r} in {results_dir}: `python -m sweep leaderboard "
                          f"--results {results_dir}` lists the studies")
    df = df.drop_duplicates("trial", keep="last").sort_values("trial").reset_index(drop=True)
    df["params"] = [json.loads(p) for p in df["params"]]
    run = results.query(results_dir, "SELECT search_space, data_label FROM runs WHERE study = ? "
                        "ORDER BY updated_at DESC LIMIT 1", [name])
    space = json.loads(run["search_space"].iloc[0]) if len(run) else {}
    dists = {k: json_to_distribution(v) for k, v in space.items() if isinstance(v, str)}
    label = str(run["data_label"].iloc[0]) if len(run) else "unknown data"
    evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    return StudyData(name, str(df["strategy"].iloc[0]), label, label.startswith("SYNTHETIC"), df,
                     dists, _importances(df, dists, evaluator), type(evaluator).__name__)


def _importances(df: pd.DataFrame, dists: dict[str, BaseDistribution],
                 evaluator: optuna.importance.BaseImportanceEvaluator) -> dict[str, float]:
    """Optuna's importances over an in-memory study holding the recorded trials."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for p, v in zip(df["params"], df["objective"], strict=True):
        if not (isinstance(v, float) and math.isfinite(v)) or not dists:
            continue
        try:
            study.add_trial(optuna.trial.create_trial(
                params={k: p[k] for k in dists}, distributions=dists, value=v))
        except (KeyError, ValueError):  # a value outside today's space: not comparable
            continue
    if len(study.trials) < 2:
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
        except (ValueError, RuntimeError):
            return {}


def history_figure(sd: StudyData) -> go.Figure:
    t = sd.trials
    ok = t["score"].map(lambda s: isinstance(s, float) and math.isfinite(s))
    rej = (~ok) & (t["status"] == "rejected")
    best = t["score"].where(ok).astype(float).cummax().ffill()
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=t.loc[ok, "trial"], y=t.loc[ok, "score"], mode="markers",
                             name="scored trial", marker=dict(color=BASE, size=6)))
    fig.add_trace(go.Scatter(x=t.loc[rej, "trial"], y=t.loc[rej, "objective"], mode="markers",
                             name="rejected (its unrejected score)",
                             marker=dict(color=GRID, symbol="x", size=6)))
    fig.add_trace(go.Scatter(x=t["trial"], y=best, mode="lines", line=dict(color=STRESS, shape="hv"),
                             name="best score so far"))
    fig.update_xaxes(title_text=tag("trial number", sd.synthetic))
    fig.update_yaxes(title_text=tag("walk-forward score", sd.synthetic))
    return layout(fig, f"Optimization history of {sd.name}", sd.synthetic, 420)


def importance_figure(sd: StudyData) -> go.Figure:
    names = list(sd.importances)[::-1]
    fig = go.Figure(go.Bar(x=[sd.importances[n] for n in names], y=names, orientation="h",
                           marker_color=BASE))
    fig.update_xaxes(title_text=tag(f"importance for the objective ({sd.evaluator})", sd.synthetic))
    fig.update_yaxes(title_text=tag("parameter", sd.synthetic))
    return layout(fig, "Parameter importances (optuna.importance.get_param_importances)",
                   sd.synthetic, max(260, 40 + 28 * len(names)))


def pair_figure(sd: StudyData) -> go.Figure | None:
    """The objective across the two most important parameters (one, when only one is searched)."""
    top = list(sd.importances)[:2]
    if not top:
        return None
    t = sd.trials[sd.trials["objective"].map(lambda v: isinstance(v, float) and math.isfinite(v))]

    def col(name: str) -> list:
        return [p.get(name) if not isinstance(p.get(name), bool) else str(p.get(name)) for p in t["params"]]

    y_name = top[1] if len(top) > 1 else None
    fig = go.Figure(go.Scatter(
        x=col(top[0]), y=col(y_name) if y_name else t["objective"], mode="markers",
        marker=dict(color=t["objective"], colorscale="Viridis", size=9, showscale=True,
                    colorbar=dict(title=tag("objective", sd.synthetic))),
        text=[f"trial {n}" for n in t["trial"]], name="trial"))
    fig.update_xaxes(title_text=tag(top[0], sd.synthetic))
    fig.update_yaxes(title_text=tag(y_name or "objective", sd.synthetic))
    what = f"{top[0]} and {y_name}" if y_name else top[0]
    return layout(fig, f"Objective across {what}, the most important parameters", sd.synthetic, 480)
