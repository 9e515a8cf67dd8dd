"""A backtest must not evaluate bars inside the lockbox of a study of its strategy, unless asked
with --touch-lockbox; each such touch is logged in `lockbox_touches` (the table promote logs its
reads in) BEFORE anything is evaluated, under the study's data fingerprint and the params' hash,
so promote sees the lockbox as spent for those params.

The lockbox is a period of the market, whichever copy of the data shows it: a backtest touches
it when one of its out-of-sample segments overlaps the lockbox in time on a coin the study
traded, real data against real data, synthetic against synthetic. A study's lockbox is found
from its `runs` row (data locator, bar count, folds); a run whose row has no locator is
counted as unchecked, except the backtested trial's own, whose market is loaded to find it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import sweep.promote  # noqa: F401  (declares the lockbox_touches table)
from harness.errors import ConfigError, HarnessError
from harness.folds import Folds, folds_from_record
from harness.market import Market, interval_seconds
from sweep import results
from sweep.backtest_inputs import Recorded, run_market


@dataclass(frozen=True)
class StudyLockbox:
    study: str
    run_id: str
    data_fingerprint: str
    synthetic: bool
    coins: frozenset[str]
    start: pd.Timestamp  # first lockbox bar (open time)
    last: pd.Timestamp  # last lockbox bar (open time)
    end: pd.Timestamp  # its close: the lockbox is [start, end)


def _folds(text: str) -> Folds:
    return folds_from_record(json.loads(text))


def _from_locator(run: dict) -> StudyLockbox | None:
    text = run.get("data_locator")
    if not isinstance(text, str) or not text or pd.isna(run.get("n_bars")):
        return None
    loc, n = json.loads(text), int(run["n_bars"])
    lo, hi = _folds(run["folds"]).lockbox_range(n)
    if hi <= lo:
        return None
    t0, step = pd.Timestamp(loc["start"]), pd.Timedelta(seconds=interval_seconds(loc["interval"]))
    return StudyLockbox(str(run["study"]), str(run["run_id"]), str(run["data_fingerprint"]),
                        loc["source"] == "embedded", frozenset(loc["coins"]), t0 + lo * step,
                        t0 + (hi - 1) * step, t0 + hi * step)


def _from_market(rec: Recorded, m: Market) -> StudyLockbox | None:
    lo, hi = rec.folds.lockbox_range(m.n_bars)
    if hi <= lo:
        return None
    step = pd.Timedelta(seconds=m.bar_seconds)
    return StudyLockbox(rec.study, str(rec.run["run_id"]), m.fingerprint, m.synthetic,
                        frozenset(m.coins), m.index[lo], m.index[hi - 1], m.index[hi - 1] + step)


def study_lockboxes(results_dir: Path, strategy: str, rec: Recorded | None,
                    data: str | None) -> tuple[list[StudyLockbox], int]:
    """The lockboxes of the studies of `strategy` in the results, and how many runs could not
    be checked (no data locator on their row)."""
    if not results.has_rows(results_dir, "runs"):
        return [], 0
    runs = results.query(results_dir, "SELECT * FROM runs WHERE command = 'run' AND strategy = ?",
                         [strategy])
    found, unchecked = [], 0
    for run in runs.to_dict("records"):
        box = _from_locator(run)
        if box is None and rec is not None and run["run_id"] == rec.run["run_id"]:
            try:
                box = _from_market(rec, run_market(rec, data))
            except HarnessError:
                box = None
        if box is None and not _folds(run["folds"]).lockbox_frac == 0:
            unchecked += 1
        elif box is not None:
            found.append(box)
    return found, unchecked


def touched(boxes: list[StudyLockbox], market: Market,
            segments: list[tuple[pd.Timestamp, pd.Timestamp]]) -> list[StudyLockbox]:
    coins = set(market.coins)
    return [b for b in boxes if b.synthetic == market.synthetic and b.coins & coins
            and any(a < b.end and b.start < z for a, z in segments)]


def params_hash(params: dict) -> str:
    """sha256 of the params JSON, as promote keys a candidate's lockbox."""
    return hashlib.sha256(results.to_json(params).encode()).hexdigest()[:16]


def guard(results_dir: Path, strategy: str, params: dict, rec: Recorded | None, data: str | None,
          market: Market, segments: list[tuple[pd.Timestamp, pd.Timestamp]], touch: bool,
          friction: str) -> tuple[list[StudyLockbox], int]:
    """Refuse a backtest that would touch a lockbox, or (touch=True) log every touch first.
    Returns the lockboxes touched and the runs that could not be checked."""
    from harness.manifest import harness_hash

    boxes, unchecked = study_lockboxes(results_dir, strategy, rec, data)
    hits = touched(boxes, market, segments)
    if hits and not touch:
        b = hits[0]
        raise ConfigError(f"this backtest would evaluate bars inside the lockbox of study "
                          f"{b.study} ({b.start:%Y-%m-%d %H:%M} to {b.end:%Y-%m-%d %H:%M} UTC): "
                          "move --start/--end off it, or pass --touch-lockbox to read it (logged "
                          "in lockbox_touches; promote then treats it as spent for these params)")
    if hits:
        commit, _ = results.git_state()
        spec = results.TABLES["lockbox_touches"]
        phash, now = params_hash(params), results.now()
        rows = []
        for b in hits:
            known = {"run_id": results.new_id(), "harness_hash": harness_hash(),
                     "data_fingerprint": b.data_fingerprint, "sim_model_version": friction,
                     "git_commit": commit, "seed": 0, "touched_at": now, "strategy": strategy,
                     "params_hash": phash, "study": b.study, "trial": rec.trial if rec else None,
                     "params": results.to_json(params), "lockbox_start": b.start,
                     "lockbox_end": b.last}
            rows.append({n: known.get(n) for n in spec.names if n != "batch"})
        df = pd.DataFrame(rows)
        for name, kind, _ in spec.columns:
            if kind == "int" and name in df:
                df[name] = pd.array(df[name], dtype="Int64")
            elif kind in ("float", "bool") and name in df and df[name].isna().all():
                df[name] = pd.array(df[name], dtype="Float64" if kind == "float" else "boolean")
        results.write_batch(results_dir, "lockbox_touches", df)
    return hits, unchecked
