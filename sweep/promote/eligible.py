"""Which trials the gate may judge, on which market; the others are skipped with the reason.

Eligible: the current harness hash and friction version, a registered strategy, a live-threshold
run whose `runs` row names its data (the data locator), and that data loads again with the
fingerprint the trials recorded. One market and one fold layout per strategy: the best trial's.
A skip is a configuration skip (other harness, other data, ...) or a result skip (a trial the
harness rejected); when every trial is skipped for configuration, promote is an error, never an
empty candidates file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import pandas as pd

from harness.errors import HarnessError
from harness.folds import folds_from_record
from harness.market import Market, interval_seconds
from strategies.base import registry
from sweep import results

REPRO_FIELDS = ("score", "base_n_trades", "base_final_equity")


class PromoteError(HarnessError):
    """Results or options the gate cannot work with (the message says which, and the fix)."""


@dataclass(frozen=True, order=True)
class TrialRef:
    study: str
    trial: int

    def __str__(self) -> str:
        return f"{self.study}#{self.trial}"


@dataclass(frozen=True)
class Skip:
    strategy: str
    n: int  # trials skipped for this reason
    reason: str
    config: bool  # a configuration problem (not a verdict of the harness)


@dataclass(frozen=True)
class Eligible:
    """One strategy's candidate trials (best first), the market and the run they came from."""

    trials: pd.DataFrame
    market: Market
    run: dict


def one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class Reader:
    """The results tables through DuckDB; any read error becomes one PromoteError line."""

    def __init__(self, results_dir: Path) -> None:
        self.results_dir = results_dir
        if not results_dir.is_dir():
            raise PromoteError(f"results folder {results_dir} does not exist: pass the --results "
                               "folder `python -m sweep run` wrote")
        if not results.has_rows(results_dir, "trials"):
            raise PromoteError(f"no trials in {results_dir}: run `python -m sweep run --results "
                               f"{results_dir}` first (nothing to promote)")
        try:
            self.con = results.connect(results_dir, persist=False)
        except HarnessError as exc:
            raise PromoteError(f"{one_line(exc)} (a corrupt or foreign Parquet batch? move it "
                               "out of the folder and retry)") from None

    def df(self, sql: str, params: list | None = None, **frames: pd.DataFrame) -> pd.DataFrame:
        try:
            for name, frame in frames.items():
                self.con.register(name, frame)
            return self.con.execute(sql, params or []).df()
        except (duckdb.Error, OSError) as exc:
            raise PromoteError(f"cannot read the results tables in {self.results_dir}: "
                               f"{one_line(exc)} (a corrupt or foreign Parquet batch? move it out "
                               "of the folder and retry)") from None
        finally:
            for name in frames:
                self.con.unregister(name)

    def has(self, table: str) -> bool:
        return results.has_rows(self.results_dir, table)

    def columns(self, table: str) -> set[str]:
        return set(self.df(f"SELECT * FROM {table} LIMIT 0").columns)

    def close(self) -> None:
        self.con.close()


def ledger(reader: Reader, strategy: str | None) -> pd.DataFrame:
    """Every trial row (of `strategy`), one per (study, trial): the newest."""
    have = reader.columns("trials")
    need = ["strategy", "study", "trial", "status", "rejected", "score", "harness_hash",
            "sim_model_version", "data_fingerprint", "run_id", "params"]
    missing = [c for c in need if c not in have]
    if missing:
        raise PromoteError(f"the trials table in {reader.results_dir} lacks {', '.join(missing)}: "
                           "it was not written by this version of `sweep run`")
    cols = need + [c for c in (*REPRO_FIELDS, "finished_at") if c in have]
    order = " ORDER BY finished_at, study, trial" if "finished_at" in have else ""
    df = reader.df(f"SELECT {', '.join(cols)} FROM trials" + (" WHERE strategy = ?" if strategy else "")
                   + order, [strategy] if strategy else None)
    if df.empty:
        raise PromoteError(f"no trials of strategy {strategy!r} in {reader.results_dir}")
    return df.drop_duplicates(subset=["study", "trial"], keep="last").reset_index(drop=True)


def runs(reader: Reader) -> dict[str, dict]:
    if not reader.has("runs"):
        return {}
    cols = reader.columns("runs")
    pick = [c for c in ("run_id", "interval", "mode", "folds", "code_hash", "data_label",
                        "data_fingerprint", "data_locator", "detail") if c in cols]
    df = reader.df(f"SELECT {', '.join(pick)} FROM runs")
    return {str(r["run_id"]): r for r in df.to_dict("records")}


class Markets:
    """Loads the market a run recorded in its data locator (once per locator)."""

    def __init__(self, data: str | None, given: Market | None, tick: Callable[[str], None]) -> None:
        self.data, self.given, self.tick = data, given, tick
        self.cache: dict[str, tuple[Market | None, str]] = {}

    def for_run(self, run: dict) -> tuple[Market | None, str]:
        """(the market with the run's fingerprint, "") or (None, why not)."""
        want = str(run["data_fingerprint"])
        if self.given is not None:
            return (self.given, "") if self.given.fingerprint == want else (
                None, f"the market given has fingerprint {self.given.fingerprint}, the run's data {want}")
        text = run.get("data_locator")
        if not isinstance(text, str) or not text:
            return None, ("its `runs` row has no data locator (written by an older `sweep run`): "
                          "re-run the sweep")
        if text not in self.cache:
            self.cache[text] = self._load(json.loads(text), want, str(run.get("data_label")))
        return self.cache[text]

    def _load(self, loc: dict, want: str, label: str) -> tuple[Market | None, str]:
        from harness.sources import load_market

        source = self.data or loc["source"]
        end = pd.Timestamp(loc["end"]) + pd.Timedelta(seconds=interval_seconds(loc["interval"]))
        self.tick(f"loading {source} ({loc['interval']}, {len(loc['coins'])} coins)")
        try:
            m = load_market(source, interval=loc["interval"], coins=list(loc["coins"]),
                            start=loc["start"], end=end)
        except HarnessError as exc:
            return None, f"its data ({label}) cannot be loaded from {source}: {one_line(exc)}"
        if m.fingerprint != want:
            return None, (f"its data {want} ({label}) is not what {source} holds now (fingerprint "
                          f"{m.fingerprint} over the same coins and span): pass --data with the "
                          "data the sweep ran on")
        return m, ""


def eligible(ledger_df: pd.DataFrame, run_rows: dict[str, dict], cur_hash: str, friction: str,
             markets: Markets) -> tuple[dict[str, Eligible], list[Skip]]:
    """Per strategy: its candidate trials (best first) on one market; and the skipped ones."""
    known = registry()
    found: dict[str, tuple[Market | None, str]] = {}

    def why_not(t: dict) -> str:
        if t["harness_hash"] != cur_hash:
            return f"harness hash {t['harness_hash']} != current {cur_hash}: never promoted together"
        if t["sim_model_version"] != friction:
            return f"friction {t['sim_model_version']} != current {friction}"
        run = run_rows.get(str(t["run_id"]))
        if run is None:
            return f"no `runs` row for run {t['run_id']}: its folds and data are unknown"
        if t["strategy"] not in known:
            return f"strategy {t['strategy']} is not registered in this code"
        if run["mode"] != "live":
            return "a shadow-threshold run: only live thresholds trade"
        if run["run_id"] not in found:
            found[run["run_id"]] = markets.for_run(run)
        return found[run["run_id"]][1]

    skipped: dict[tuple[str, str, bool], int] = {}
    chosen: dict[str, list[dict]] = {}
    rows = ledger_df.to_dict("records")
    rows.sort(key=lambda t: (str(t["strategy"]), -score_of(t), str(t["study"]), int(t["trial"])))
    for t in rows:
        name, config = str(t["strategy"]), True
        why = why_not(t)
        if not why and (t["status"] != "complete" or not math.isfinite(score_of(t))):
            why, config = f"no walk-forward score ({t['status']}: {t.get('rejected') or '?'})", False
        best = chosen.get(name)
        if not why and best and t["data_fingerprint"] != best[0]["data_fingerprint"]:
            why = (f"data {t['data_fingerprint']} differs from the best trial's "
                   f"{best[0]['data_fingerprint']}: one market per strategy")
        elif not why and best and folds_of(run_rows, t) != folds_of(run_rows, best[0]):
            why = (f"walk-forward folds {folds_of(run_rows, t)} differ from the best trial's "
                   f"{folds_of(run_rows, best[0])}: one fold layout (and lockbox) per strategy")
        if why:
            skipped[(name, why, config)] = skipped.get((name, why, config), 0) + 1
        else:
            chosen.setdefault(name, []).append(t)
    out = {}
    for name, group in chosen.items():
        run = run_rows[str(group[0]["run_id"])]
        out[name] = Eligible(pd.DataFrame(group), found[run["run_id"]][0], run)
    return out, [Skip(s, n, why, c) for (s, why, c), n in sorted(skipped.items())]


def refuse_if_misconfigured(chosen: dict[str, Eligible], skipped: list[Skip]) -> None:
    """Nothing eligible because of configuration is an error, not an empty result: the nightly
    cron must not replace a good candidates file with an empty one because --data moved."""
    if chosen:
        return
    config = sorted((s for s in skipped if s.config), key=lambda s: -s.n)
    if config:
        total = sum(s.n for s in skipped)
        top = config[0]
        raise PromoteError(f"nothing to judge: all {total} trial(s) were skipped, e.g. {top.n} of "
                           f"{top.strategy} because {top.reason}; the candidates file was not "
                           "changed")


def folds_of(run_rows: dict[str, dict], t: dict) -> dict:
    """The fold layout in bars (how lengths were typed, `given`, does not matter)."""
    return asdict(folds_from_record(json.loads(run_rows[str(t["run_id"])]["folds"])))


def score_of(t: dict) -> float:
    try:
        return float(t["score"])
    except (TypeError, ValueError):
        return math.nan
