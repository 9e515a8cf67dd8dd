"""What `sweep backtest` runs when it runs a recorded trial (`--trial`, `--incumbent`, or a
study's best): its row and the `runs` row of the run that made it (data, folds, friction,
mode, detail), and the market it was scored on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import ConfigError
from harness.folds import Folds, folds_from_record
from harness.market import Market, interval_seconds
from sweep import results

TRIAL_REF = re.compile(r"^(?P<study>.+)#(?P<trial>\d+)$")


@dataclass(frozen=True)
class Recorded:
    """A trial as the results tables hold it, with the `runs` row of the run that made it."""

    study: str
    trial: int
    strategy: str
    params: dict[str, Any]
    score: float
    status: str
    friction: str  # the sim_model_version it was scored under
    harness_hash: str
    run: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.study}#{self.trial}"

    @property
    def detail(self) -> str | None:
        d = self.run.get("detail")
        return d if isinstance(d, str) and d else None

    @property
    def locator(self) -> dict | None:
        """The run's data locator (source, interval, coins, first and last bar), if recorded."""
        text = self.run.get("data_locator")
        return json.loads(text) if isinstance(text, str) and text else None

    @property
    def coins(self) -> list[str] | None:
        """The coins the trial traded (None: every coin of its data)."""
        if self.locator:
            return list(self.locator["coins"])
        return [c for c in str(self.run.get("coins") or "").split(",") if c] or None

    def source(self, data: str | None) -> str | None:
        """Where its market comes from: --data when given, else the locator's source, else the
        default source."""
        if data is not None or not self.locator:
            return data
        return self.locator["source"]

    @property
    def folds_record(self) -> dict:
        return json.loads(self.run["folds"])

    @property
    def folds(self) -> Folds:
        return folds_from_record(self.folds_record)


# ---------------------------------------------------------------------------------- trials

def parse_ref(text: str) -> tuple[str, int]:
    m = TRIAL_REF.match(text.strip())
    if m is None:
        raise ConfigError(f"--trial {text!r}: give STUDY#N, e.g. momentum-tpe-s0-1a2b3c4d#17 "
                          "(`python -m sweep leaderboard` lists them)")
    return m["study"], int(m["trial"])


def _require_trials(results_dir: Path) -> None:
    if not results.has_rows(results_dir, "trials"):
        raise ConfigError(f"no trials in {results_dir}: pass the --results folder `sweep run` "
                          "wrote, or run a sweep first")


def recorded_trial(results_dir: Path, study: str, trial: int) -> Recorded:
    """The newest row of (study, trial) and its run; one clear error when either is missing."""
    _require_trials(results_dir)
    df = results.query(results_dir, "SELECT * FROM trials WHERE study = ? AND trial = ? "
                       "ORDER BY finished_at DESC LIMIT 1", [study, trial])
    if df.empty:
        n = results.query(results_dir, "SELECT count(*) AS n, min(trial) AS lo, max(trial) AS hi "
                          "FROM trials WHERE study = ?", [study]).iloc[0]
        if int(n["n"]) == 0:
            raise ConfigError(f"no study {study!r} in {results_dir}: `python -m sweep leaderboard "
                              f"--results {results_dir}` lists the studies and trials")
        raise ConfigError(f"study {study!r} has no trial {trial} (trials {int(n['lo'])}..."
                          f"{int(n['hi'])}) in {results_dir}")
    row = df.iloc[0].to_dict()
    runs = results.query(results_dir, "SELECT * FROM runs WHERE run_id = ?", [row["run_id"]]) \
        if results.has_rows(results_dir, "runs") else pd.DataFrame()
    if runs.empty:
        raise ConfigError(f"trial {study}#{trial} has no `runs` row (run {row['run_id']}): its "
                          "data and folds are unknown; use --params with its parameters instead")
    if row["status"] == "failed":
        raise ConfigError(f"trial {study}#{trial} failed in the sweep ({row['rejected']}): "
                          "nothing to reproduce")
    return Recorded(study, trial, str(row["strategy"]), json.loads(row["params"]),
                    float(row["score"]), str(row["status"]), str(row["sim_model_version"]),
                    str(row["harness_hash"]), runs.iloc[0].to_dict())


def incumbent_trial(results_dir: Path, strategy: str, harness: str) -> Recorded:
    """The best scored trial of `strategy` under this harness hash (the leaderboard's #1)."""
    _require_trials(results_dir)
    df = results.query(results_dir, "SELECT study, trial FROM trials WHERE strategy = ? AND "
                       "harness_hash = ? AND status = 'complete' AND isfinite(score) "
                       "ORDER BY score DESC, finished_at LIMIT 1", [strategy, harness])
    if df.empty:
        raise ConfigError(f"no scored trial of {strategy} under harness {harness} in "
                          f"{results_dir}: run `python -m sweep run --strategy {strategy}` first, "
                          "or give --params")
    return recorded_trial(results_dir, str(df["study"].iloc[0]), int(df["trial"].iloc[0]))


def best_of_study(results_dir: Path, study: str) -> Recorded:
    """The study's best scored trial (else its best rejected one: a report still shows it)."""
    _require_trials(results_dir)
    df = results.query(results_dir, "SELECT trial FROM trials WHERE study = ? AND status <> "
                       "'failed' ORDER BY isfinite(score) DESC, score DESC, objective DESC, trial "
                       "LIMIT 1", [study])
    if df.empty:
        raise ConfigError(f"no evaluated trial of study {study!r} in {results_dir}: `python -m "
                          f"sweep leaderboard --results {results_dir}` lists the studies")
    return recorded_trial(results_dir, study, int(df["trial"].iloc[0]))


# ---------------------------------------------------------------------------------- data

def run_market(rec: Recorded, data: str | None) -> Market:
    """Exactly the market the trial was scored on (its fingerprint checked), or a clear error."""
    from harness.sources import load_market

    run, loc, source = rec.run, rec.locator, rec.source(data)
    interval = str(run["interval"])
    if loc:
        end = pd.Timestamp(loc["end"]) + pd.Timedelta(seconds=interval_seconds(loc["interval"]))
        m = load_market(source, interval=interval, coins=rec.coins, start=loc["start"], end=end)
    else:
        m = load_market(source, interval=interval, coins=rec.coins)
        n = int(run["n_bars"]) if pd.notna(run.get("n_bars")) else 0
        if m.fingerprint != run["data_fingerprint"] and 0 < n < m.n_bars:
            m = m.slice(0, n)  # the store grew since the sweep
    if m.fingerprint != run["data_fingerprint"]:
        raise ConfigError(f"trial {rec.ref} was scored on data {run['data_fingerprint']} "
                          f"({run['data_label']}); {m.label} gives {m.fingerprint}: pass the "
                          "--data the sweep ran on (or --start/--end to run it on other dates)")
    return m
