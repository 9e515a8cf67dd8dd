"""`sweep backtest`: one parameter set equals harness.evaluate on the same inputs, a trial
reproduces its recorded score, the lockbox is guarded, and bad input is one line."""

from __future__ import annotations

import hashlib
import json
import math

import _sweep_helpers as h
import numpy as np
import pandas as pd
import pytest

from harness.evaluate import evaluate
from harness.folds import Folds
from harness.sources import load_market
from sweep import results
from sweep.backtest import read_record
from sweep.study import StudyConfig, run_study


@pytest.fixture(scope="module")
def study(tmp_path_factory, strategy, dataset):
    """A small recorded study: (results folder, its trials rows)."""
    res = tmp_path_factory.mktemp("results")
    out = run_study(StudyConfig(strategy=h.NAME, trials=6, sampler="random", folds=2, batch=6,
                                seed=3, data=str(dataset), results=res))
    t = results.query(res, "SELECT study, trial, score, status FROM trials ORDER BY score DESC")
    return res, out.study, t


@pytest.fixture(scope="module")
def cli():
    from typer.testing import CliRunner

    from sweep.cli import _register, app

    if not any(c.name == "backtest" for c in app.registered_commands):
        _register()
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def score_of(stdout: str) -> float:
    last = h.last_line(stdout)
    assert last.startswith("score: "), stdout[-2000:]
    return float(last.split(": ", 1)[1])


def same(a: float, b: float) -> bool:
    return a == b or (math.isinf(a) and a == b) or abs(a - b) <= 1e-12 * max(1.0, abs(b))


def test_fixed_params_equal_harness_evaluate(tmp_path, cli, strategy, dataset, market):
    p = {"lookback": 30, "stop_mult": 2.0, "side": "long", "hold": 12}
    r = cli("backtest", "--strategy", h.NAME, "--params", json.dumps(p), "--data", dataset,
            "--folds", "2", "--results", tmp_path / "r", "--out", tmp_path / "bt")
    assert r.exit_code == 0, r.output
    ev = evaluate(strategy, strategy.params_cls(**p), market, folds=Folds(k=2))
    assert same(score_of(r.stdout), ev.score)
    assert f"{ev.base.max_dd:.2%}" in r.stdout  # percentages print as percentages
    rec = read_record(tmp_path / "bt")
    assert same(rec.meta["score"], ev.score) and rec.meta["fold_scores"] == list(ev.fold_scores)
    # the equity and daily files are the run evaluate scored: its final equity and daily returns
    assert rec.equity["base"].iloc[-1] == pytest.approx(ev.base.final_equity, rel=1e-12)
    assert rec.equity["stress"].iloc[-1] == pytest.approx(ev.stress.final_equity, rel=1e-12)
    np.testing.assert_allclose(rec.daily["base"].to_numpy(), ev.daily_returns.to_numpy(), rtol=1e-12)
    assert len(rec.trades) == ev.base.n_trades
    np.testing.assert_array_equal(rec.trades["r_multiple"].to_numpy(), ev.trades["r_multiple"].to_numpy())
    assert {"entry_slippage_bps", "exit_reason", "detail"} <= set(rec.trades.columns)


def test_one_segment_over_dates_equals_evaluate(tmp_path, cli, strategy, dataset, market):
    """--no-folds --start --end: the test segment is exactly [start, end), history before it."""
    start, end = "2024-02-01", "2024-03-15"
    r = cli("backtest", "--strategy", h.NAME, "--params", "{}", "--data", dataset, "--no-folds",
            "--start", start, "--end", end, "--results", tmp_path)
    assert r.exit_code == 0, r.output
    lo = int(market.index.searchsorted(pd.Timestamp(start, tz="UTC")))
    hi = int(market.index.searchsorted(pd.Timestamp(end, tz="UTC")))
    one = Folds(k=1, test_bars=hi - lo, train_bars=lo, purge_bars=0, embargo_bars=0, lockbox_frac=0.0)
    plan = one.split(hi)
    assert plan.segments == ((lo, hi),)
    ev = evaluate(strategy, strategy.params_cls(), market.slice(0, hi), folds=one)
    assert same(score_of(r.stdout), ev.score)
    assert "one-segment score" in r.stdout and "not a walk-forward score" in r.stdout


def test_trial_reproduces_its_recorded_score(cli, study, dataset):
    res, name, t = study
    for i, row in enumerate(t.head(2).itertuples()):
        data = [] if i == 0 else ["--data", dataset]  # the run's data locator finds it, or --data
        r = cli("backtest", "--trial", f"{row.study}#{row.trial}", *data, "--results", res)
        assert r.exit_code == 0, r.output
        assert same(score_of(r.stdout), float(row.score))
        assert "reproduced (same harness" in r.stdout
    best = t[t["status"] == "complete"].iloc[0]
    r = cli("backtest", "--incumbent", "--strategy", h.NAME, "--data", dataset, "--results", res)
    assert r.exit_code == 0, r.output
    assert same(score_of(r.stdout), float(best["score"]))
    assert f"incumbent {best['study']}#{best['trial']}" in r.stdout


def test_the_lockbox_is_refused_unless_asked_and_then_logged(tmp_path, cli, study, dataset):
    res, name, t = study
    ref = f"{t['study'][0]}#{t['trial'][0]}"
    before = sorted(p.name for p in res.rglob("*.parquet"))
    r = cli("backtest", "--trial", ref, "--data", dataset, "--no-folds", "--results", res,
            "--out", tmp_path / "bt")
    assert r.exit_code == 2 and "lockbox of study" in r.stderr
    assert sorted(p.name for p in res.rglob("*.parquet")) == before and not (tmp_path / "bt").exists()
    r = cli("backtest", "--trial", ref, "--data", dataset, "--no-folds", "--touch-lockbox",
            "--results", res)
    assert r.exit_code == 0, r.output
    assert "read the lockbox of study" in r.stdout
    touch = results.query(res, "SELECT * FROM lockbox_touches")
    assert len(touch) == 1 and touch["study"][0] == name
    m = load_market(str(dataset))
    lo, _ = Folds(k=2).lockbox_range(m.n_bars)
    assert pd.Timestamp(touch["lockbox_start"][0]) == m.index[lo]
    assert pd.Timestamp(touch["lockbox_end"][0]) == m.index[-1]
    # promote keys a candidate's lockbox by (strategy, sha256 of its params JSON, the study's
    # data): it now finds this one touched, so it will not read it again for these params
    from sweep.promote.eligible import Reader
    from sweep.promote.lockbox import Lockbox

    params = json.loads(results.query(res, "SELECT params FROM trials WHERE study = ? AND trial = ?",
                                      [t["study"][0], int(t["trial"][0])])["params"][0])
    key = (h.NAME, hashlib.sha256(results.to_json(params).encode()).hexdigest()[:16], m.fingerprint)
    reader = Reader(res)
    try:
        assert key in Lockbox(reader, "next-promote", "friction_v5_coin_spread_impact").touches
    finally:
        reader.close()
    # walk-forward over the trial's own data never reaches its lockbox: nothing to refuse
    r = cli("backtest", "--trial", ref, "--data", dataset, "--results", res)
    assert r.exit_code == 0 and len(results.query(res, "SELECT * FROM lockbox_touches")) == 1


@pytest.mark.parametrize("args, says", [
    (["--trial", "nosuchstudy#3"], "no study 'nosuchstudy'"),
    (["--trial", "STUDY#99"], "has no trial 99"),
    (["--trial", "no-hash-sign"], "give STUDY#N"),
    (["--strategy", h.NAME, "--params", '{"lookbak": 20}'], "unknown parameter(s) lookbak for test_breakout"),
    (["--strategy", h.NAME, "--params", '{"lookback": 500}'], "lookback must be an integer in [5, 60], got 500"),
    (["--strategy", h.NAME, "--params", '{"lookback": 20.5}'], "lookback must be an integer"),
    (["--strategy", h.NAME, "--params", '{"side": "up"}'], 'side must be one of "long", "short", "both"'),
    (["--strategy", h.NAME, "--params", '{"fade": 1}'], "fade must be true or false"),
    (["--strategy", h.NAME, "--params", "{lookback: 20}"], "--params is not JSON"),
    (["--strategy", h.NAME, "--params", "[1]"], "must be a JSON object"),
    (["--strategy", h.NAME, "--params", "{}", "--start", "2023-01-01"], "--start 2023-01-01 is outside the data"),
    (["--strategy", h.NAME, "--params", "{}", "--end", "2025-06-01"], "--end 2025-06-01 is outside the data"),
    (["--strategy", h.NAME, "--params", "{}", "--start", "2024-02-10", "--end", "2024-02-01"], "is not before --end"),
    (["--strategy", h.NAME, "--params", "{}", "--start", "yesterday-ish"], "is not a time"),
    (["--strategy", h.NAME], "give exactly one of --params"),
    (["--strategy", h.NAME, "--params", "{}", "--folds", "2", "--no-folds"], "--no-folds excludes"),
])
def test_bad_input_is_one_line_and_nothing_is_written(tmp_path, cli, study, dataset, args, says):
    res, name, t = study
    args = [a.replace("STUDY", name) for a in args]
    before = sorted(p.name for p in res.rglob("*"))
    r = cli("backtest", *args, "--data", dataset, "--results", res, "--out", tmp_path / "bt")
    assert r.exit_code == 2 and r.stderr.startswith("error: "), r.output
    assert says in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "bt").exists() and sorted(p.name for p in res.rglob("*")) == before


def test_an_out_folder_holding_other_files_is_refused_before_any_work(tmp_path, cli, dataset):
    (tmp_path / "bt").mkdir()
    (tmp_path / "bt" / "notes.txt").write_text("mine")
    r = cli("backtest", "--strategy", h.NAME, "--params", "{}", "--data", dataset, "--out",
            tmp_path / "bt", "--results", tmp_path)
    assert r.exit_code == 2 and "holds other files" in r.stderr
    assert [p.name for p in (tmp_path / "bt").iterdir()] == ["notes.txt"]


def test_the_command_line_error_is_one_line_on_stderr(tmp_path, strategy, dataset):
    p = h.run_cli("backtest", "--strategy", h.NAME, "--params", '{"lookback": 1}', "--data",
                  dataset, "--results", tmp_path, check=False)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip().splitlines() == [
        f"error: --params: {h.NAME} param lookback must be an integer in [5, 60], got 1"]


def test_fold_lengths_as_durations(tmp_path, cli, strategy, dataset, market):
    """--test/--purge/--embargo take durations, as `sweep run` does (FoldSpec)."""
    r = cli("backtest", "--strategy", h.NAME, "--params", "{}", "--data", dataset, "--folds", "3",
            "--test", "10d", "--purge", "12h", "--embargo", "0", "--train", "20d", "--results", tmp_path)
    assert r.exit_code == 0, r.output
    folds = Folds(k=3, test_bars=240, purge_bars=12, embargo_bars=0, train_bars=480)
    assert same(score_of(r.stdout), evaluate(strategy, strategy.params_cls(), market, folds=folds).score)
    r = cli("backtest", "--strategy", h.NAME, "--params", "{}", "--data", dataset, "--no-folds",
            "--purge", "12h", "--results", tmp_path)
    assert r.exit_code == 2 and "--no-folds excludes" in r.stderr


def test_a_fold_option_replaces_only_that_length_of_a_trials_folds():
    from sweep.backtest import fold_plan
    from sweep.backtest_inputs import Recorded

    record = {"k": 3, "train_bars": None, "test_bars": None, "purge_bars": 48, "embargo_bars": 24,
              "anchored": True, "lockbox_frac": 0.2, "offset_bars": 0,
              "given": {"train": None, "test": None, "purge": "2d", "embargo": "24h"}}
    rec = Recorded("s", 0, h.NAME, {}, 1.0, "complete", "v5", "h", {"folds": json.dumps(record)})
    assert fold_plan({}, "1h", rec) == rec.folds  # no option: the trial's own
    got = fold_plan({"test": "5d", "k": None}, "15m", rec)
    # the purge as typed (2d) is re-read at the new interval; anchored and the lockbox stay
    assert got == Folds(k=3, test_bars=480, purge_bars=192, embargo_bars=96, anchored=True,
                        lockbox_frac=0.2)
