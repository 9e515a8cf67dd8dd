"""`sweep run`, `scan`, `noise`, `sql`, `leaderboard`: the search space, the rows a study writes,
the CLI contract (last line `best_score:`), and the autoresearch instruments."""

from __future__ import annotations

import dataclasses
import json
import math

import _sweep_helpers as h
import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from harness.errors import ConfigError
from harness.evaluate import evaluate
from harness.folds import Folds
from harness.manifest import harness_hash
from strategies.base import param_specs
from sweep import results
from sweep.space import parse_fixed, parse_value, search_space
from sweep.study import StudyConfig, run_study


def cfg(tmp, **kw) -> StudyConfig:
    base = dict(strategy=h.NAME, trials=12, sampler="random", folds=2, batch=4, seed=1,
                results=tmp)
    return StudyConfig(**{**base, **kw})


# ---------------------------------------------------------------------------------- space

def test_space_maps_every_param_kind(strategy):
    sp = search_space(h.NAME, strategy.params_cls)
    d = sp.distributions
    assert d["lookback"] == IntDistribution(5, 60)
    assert d["stop_mult"] == FloatDistribution(0.5, 4.0)
    assert d["target"] == FloatDistribution(1.0, 8.0, log=True)
    assert d["side"] == CategoricalDistribution(("long", "short", "both"))
    assert d["fade"] == CategoricalDistribution((False, True))
    fixed = search_space(h.NAME, strategy.params_cls, {"lookback": 10})
    assert "lookback" not in fixed.distributions
    assert fixed.params({"stop_mult": 2.0}).lookback == 10


def test_values_are_typed_and_checked(strategy):
    specs = {s.name: s for s in param_specs(strategy.params_cls)}
    assert parse_value(specs["lookback"], "12") == 12
    assert parse_value(specs["fade"], "true") is True
    assert parse_value(specs["side"], "long") == "long"
    with pytest.raises(ConfigError, match="outside its range"):
        parse_value(specs["lookback"], "500")
    with pytest.raises(ConfigError, match="not one of"):
        parse_value(specs["side"], "sideways")
    with pytest.raises(ConfigError, match="cannot read"):
        parse_value(specs["stop_mult"], "abc")
    assert parse_fixed(strategy.params_cls, "lookback=7,fade=0") == {"lookback": 7, "fade": False}
    with pytest.raises(ConfigError, match="known"):
        parse_fixed(strategy.params_cls, "nope=1")


def test_optuna_samples_stay_in_range(strategy):
    sp = search_space(h.NAME, strategy.params_cls)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(50):
        p = sp.params(study.ask(sp.distributions).params)
        assert 5 <= p.lookback <= 60 and 1.0 <= p.target <= 8.0 and p.side in ("long", "short", "both")


# ---------------------------------------------------------------------------------- a study

def test_study_rows_are_complete_and_faithful(tmp_path, strategy, market):
    out = run_study(cfg(tmp_path), market=market)
    assert out.status == "finished" and out.done_now == 12
    t = results.query(tmp_path, "SELECT * FROM trials ORDER BY trial")
    assert t["trial"].tolist() == list(range(12))
    assert set(t["status"]) <= {"complete", "rejected"}
    assert (t["harness_hash"] == harness_hash()).all()
    assert (t["data_fingerprint"] == market.fingerprint).all()
    assert (t["sim_model_version"] == "friction_v5_coin_spread_impact").all()
    assert (t["seed"] == 1).all() and t["git_commit"].notna().all()
    assert {"base_annualized", "stress_calmar", "p_lookback", "p_side"} <= set(t.columns)
    # the recorded params re-evaluated one at a time give the recorded numbers
    for row in t.head(3).itertuples():
        p = strategy.params_cls(**json.loads(row.params))
        ev = evaluate(strategy, p, market, folds=Folds(k=2))
        assert ev.score == row.score or (math.isinf(ev.score) and math.isinf(row.score))
        assert ev.base.n_trades == row.base_n_trades
        assert json.loads(row.fold_scores) == pytest.approx(list(ev.fold_scores), nan_ok=True)
    r = results.query(tmp_path, "SELECT trial, count(*) AS n, sum(ret) AS s FROM trial_returns "
                                "GROUP BY trial ORDER BY trial")
    first = evaluate(strategy, strategy.params_cls(**json.loads(t.params[0])), market, folds=Folds(k=2))
    assert r["n"][0] == len(first.daily_returns)
    assert r["s"][0] == pytest.approx(float(first.daily_returns.sum()), rel=1e-12)
    n_trades = results.query(tmp_path, "SELECT count(*) AS n FROM trades WHERE trial = 0")["n"][0]
    assert n_trades == len(first.trades)
    runs = results.query(tmp_path, "SELECT status, summary, trials_target FROM runs")
    assert runs["status"].tolist() == ["finished"] and runs["trials_target"][0] == 12
    assert json.loads(runs["summary"][0])["best_score"] == pytest.approx(t["score"].max())


def test_rerun_of_a_finished_study_adds_nothing(tmp_path, market):
    first = run_study(cfg(tmp_path, trials=4), market=market)
    again = run_study(cfg(tmp_path, trials=4), market=market)
    assert again.study == first.study and again.done_now == 0 and again.done_before == 4
    more = run_study(cfg(tmp_path, trials=6), market=market)
    assert more.done_now == 2
    t = results.query(tmp_path, "SELECT trial FROM trials ORDER BY trial")
    assert t["trial"].tolist() == list(range(6))


def test_changed_inputs_refuse_a_named_study(tmp_path, market):
    run_study(cfg(tmp_path, trials=2, study="fixed-name"), market=market)
    with pytest.raises(ConfigError, match="another folds"):
        run_study(cfg(tmp_path, trials=2, study="fixed-name", folds=3), market=market)


def test_folds_in_time_are_recorded_as_given_and_as_bars(tmp_path, market, strategy):
    run_study(cfg(tmp_path, trials=2, test="10d", train="5d", purge="2h", embargo="0"), market=market)
    rec = json.loads(results.query(tmp_path, "SELECT folds FROM runs")["folds"].iloc[0])
    assert (rec["test_bars"], rec["train_bars"], rec["purge_bars"], rec["embargo_bars"]) == (240, 120, 2, 0)
    assert rec["given"] == {"train": "5d", "test": "10d", "purge": "2h", "embargo": "0"}
    # the same bars typed as counts are the same study: durations change nothing on hourly bars
    again = run_study(cfg(tmp_path, trials=2, test="240", train="120", purge="2", embargo="0h"),
                      market=market)
    assert again.done_before == 2 and again.done_now == 0


def test_fix_added_to_a_named_study_is_refused(tmp_path, strategy, market):
    """Issue 15 item 10: `--fix` on an existing --study would mix two search spaces."""
    run_study(cfg(tmp_path, trials=2, study="space"), market=market)
    with pytest.raises(ConfigError, match=r"another search_space \(search_space: --fix pause=0.0 "
                                          r"-> --fix lookback=20,pause=0.0\)"):
        run_study(cfg(tmp_path, trials=3, study="space", fixed={"lookback": 20}), market=market)
    assert results.query(tmp_path, "SELECT count(*) AS n FROM trials")["n"][0] == 2


def test_a_killed_run_is_marked_by_the_next_start(tmp_path, strategy, market):
    """Issue 15 item 10: a SIGKILLed run stays `running`; the next start on its host marks it
    `killed` (its owner process is gone), and leaves a live owner's run alone."""
    import subprocess
    import sys

    from sweep.study import worker_id

    run_study(cfg(tmp_path, trials=2), market=market)
    row = results.query(tmp_path, "SELECT * FROM runs").drop(columns=["batch"])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    ghost = row.assign(run_id="ghost", status="running", finished_at=None,
                       owner=f"{worker_id().split(':')[0]}:{dead.stdout.strip()}:1.000")
    alive = row.assign(run_id="alive", status="running", finished_at=None, owner=worker_id())
    results.write_batch(tmp_path, "runs", pd.concat([ghost, alive]))
    run_study(cfg(tmp_path, trials=3), market=market)
    status = dict(results.query(tmp_path, "SELECT run_id, status FROM runs").itertuples(index=False))
    assert status["ghost"] == "killed" and status["alive"] == "running"
    assert sorted(set(status.values())) == ["finished", "killed", "running"]


def test_nsga2_tpe_and_cmaes(tmp_path, market):
    a = run_study(cfg(tmp_path / "a", sampler="nsga2", trials=6, batch=3), market=market)
    b = run_study(cfg(tmp_path / "b", sampler="tpe", trials=6, batch=2), market=market)
    assert a.done_now == 6 and b.done_now == 6
    assert run_study(cfg(tmp_path / "c", sampler="cmaes", trials=6), market=market).done_now == 6


def test_bad_config_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown sampler"):
        StudyConfig(sampler="grid")
    with pytest.raises(ConfigError, match="--trials"):
        StudyConfig(trials=None, timeout=None)
    with pytest.raises(ConfigError, match="study name"):
        StudyConfig(study="a/b")


# ---------------------------------------------------------------------------------- CLI

@pytest.fixture(scope="module")
def cli():
    """In-process CLI (the subprocess path is covered once, in the first test)."""
    from typer.testing import CliRunner

    from sweep.cli import _register, app

    if not any(c.name == "sql" for c in app.registered_commands):
        _register()
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})

    return invoke


def test_cli_run_then_sql_and_leaderboard(tmp_path, dataset, cli, strategy):
    res = tmp_path / "r"
    p = h.run_cli("run", "--strategy", h.NAME, "--trials", "8", "--data", dataset, "--folds", "2",
                  "--results", res, "--sampler", "random", "--batch", "4")
    last = h.last_line(p.stdout)
    assert last.startswith("best_score: ")
    best = float(last.split(": ", 1)[1])
    q = cli("sql", "select count(*) AS n, max(score) AS best from trials", "--json", "--results", res)
    assert q.exit_code == 0, q.output
    rec = json.loads(q.stdout)[0]
    assert rec["n"] == 8 and best == pytest.approx(rec["best"], rel=1e-12)
    assert (res / results.DB_NAME).exists()
    csv = cli("sql", "select trial from trials order by trial", "--csv", "--results", res)
    assert csv.stdout.split() == ["trial"] + [str(i) for i in range(8)]
    table = cli("sql", "select trial, score from trials order by trial", "--results", res)
    assert table.exit_code == 0 and "score" in table.stdout
    board = cli("leaderboard", "--strategy", h.NAME, "--results", res)
    assert "Leaderboard of test_breakout" in board.stdout and "stress Calmar" in board.stdout
    schema = cli("sql", "--schema")
    assert "trial_returns" in schema.stdout and "sim_model_version" in schema.stdout


def test_cli_errors_are_clear(tmp_path, cli):
    def line(r) -> str:
        assert r.exit_code == 2 and r.stdout == "", r.output
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
        return r.stderr

    r = cli("run", "--strategy", "no_such_strategy", "--trials", "2", "--results", tmp_path)
    assert "unknown strategy" in line(r)
    assert "query failed" in line(cli("sql", "select * from nowhere", "--results", tmp_path))
    assert "unknown sampler" in line(cli("run", "--sampler", "grid", "--results", tmp_path))


def test_secrets_never_reach_the_runs_table(tmp_path, strategy, dataset, cli, monkeypatch):
    """Issue 15 item 2: a password in the command line (any form) is masked in runs.argv."""
    import sys

    argv = ["sweep", "run", "--storage", "postgresql://:hunter1@db.example/x?password=hunter2",
            "--storage=ann:hunter3@db/x", "--storage", "postgresql+psycopg://ann:hunter4@db:5433/x"]
    monkeypatch.setattr(sys, "argv", argv)  # what run_cli records (the study itself uses a journal)
    r = cli("run", "--strategy", h.NAME, "--data", dataset, "--trials", "2", "--batch", "2",
            "--sampler", "random", "--folds", "2", "--results", tmp_path)
    assert r.exit_code == 0, r.output
    runs = results.query(tmp_path, "SELECT argv, storage FROM runs")
    text = runs.to_csv()
    assert "hunter" not in text
    assert "postgresql://:***@db.example/x?password=***" in text and "ann:***@db/x" in text


# ---------------------------------------------------------------------------------- autoresearch

def test_scan_keeps_the_best_value_and_records_it(tmp_path, strategy, dataset, market, cli):
    run_study(cfg(tmp_path, trials=8), market=market)
    p = cli("scan", "--strategy", h.NAME, "--param", "lookback", "--values", "8,16,32",
            "--data", dataset, "--folds", "2", "--results", tmp_path)
    assert p.exit_code == 0, p.output
    last = h.last_line(p.stdout)
    assert last.startswith("Best: lookback=")
    rows = results.query(tmp_path, "SELECT p_lookback, score, kept, params FROM trials "
                                   "WHERE command = 'scan' ORDER BY trial")
    inc = results.query(tmp_path, "SELECT params, score FROM trials WHERE command = 'run' AND "
                                  "status = 'complete' ORDER BY score DESC LIMIT 1")
    inc_params = json.loads(inc["params"][0]) if len(inc) else dataclasses.asdict(strategy.params_cls())
    values = [8, 16, 32] + ([inc_params["lookback"]] if inc_params["lookback"] not in (8, 16, 32) else [])
    assert rows["p_lookback"].tolist() == values
    for r in rows.itertuples():  # every other parameter stays at the incumbent
        other = {k: v for k, v in json.loads(r.params).items() if k != "lookback"}
        assert other == {k: v for k, v in inc_params.items() if k != "lookback"}
    assert rows["kept"].sum() == 1
    scores = rows["score"].to_numpy()
    base = values.index(inc_params["lookback"])
    best = int(np.argmax(scores))
    expect = best if scores[best] > scores[base] else base
    assert bool(rows["kept"][expect])
    assert last == f"Best: lookback={values[expect]} score={float(scores[expect])!r}" or "inf" in last
    summary = json.loads(results.query(tmp_path, "SELECT summary FROM runs WHERE command = 'scan'")["summary"][0])
    assert summary["kept"] == values[expect] and summary["param"] == "lookback"


def test_noise_spreads_fold_offsets(tmp_path, strategy, dataset, market):
    from sweep.autoresearch import noise

    res = noise(cfg(tmp_path, data=str(dataset)), repeats=4, step_bars=50)
    assert res.rows["offset_bars"].tolist() == [0, 50, 100, 150]
    for r in res.rows.itertuples():  # each re-run equals a direct evaluation at that offset
        ev = evaluate(strategy, None, market, folds=Folds(k=2, offset_bars=r.offset_bars))
        assert ev.score == r.score or (math.isinf(ev.score) and math.isinf(r.score))
    finite = res.rows["score"][np.isfinite(res.rows["score"])].to_numpy()
    if len(finite) >= 2:
        assert res.std == pytest.approx(np.std(finite, ddof=1))
        assert res.min == finite.min() and res.max == finite.max()
    s = json.loads(results.query(tmp_path, "SELECT summary FROM runs WHERE command='noise'")["summary"][0])
    assert s["repeats"] == 4


# ---------------------------------------------------------------------------------- real data

NO_SHARED = "../shared/data/hyperliquid is absent (set HLQ_SHARED_DATA to its parent folder)"


@pytest.mark.skipif(not (h.SHARED / "hyperliquid" / "candles_1h.parquet").exists(), reason=NO_SHARED)
def test_momentum_on_real_coins(tmp_path, cli):
    res = tmp_path / "r"
    p = cli("run", "--strategy", "momentum", "--trials", "6", "--data", h.SHARED / "hyperliquid",
            "--coins", "BTC,ETH,SOL,DOGE", "--results", res, "--batch", "3")
    assert p.exit_code == 0, p.output
    assert h.last_line(p.stdout).startswith("best_score: ")
    q = cli("sql", "select count(*) as n, count(distinct trial) as d from trials", "--json",
            "--results", res)
    assert json.loads(q.stdout)[0] == {"n": 6, "d": 6}


@pytest.mark.slow
@pytest.mark.skipif(not (h.SHARED / "hyperliquid" / "candles_1h.parquet").exists(), reason=NO_SHARED)
def test_issue_done_when(tmp_path):
    """The issue's acceptance commands, verbatim, as subprocesses."""
    res = tmp_path / "r"
    p = h.run_cli("run", "--strategy", "momentum", "--trials", "20", "--data",
                  h.SHARED / "hyperliquid", "--results", res, timeout=1200)
    assert h.last_line(p.stdout).startswith("best_score: ")
    q = h.run_cli("sql", "select count(*) from trials", "--csv", "--results", res)
    assert q.stdout.split()[-1] == "20"


def test_rejected_trials_guide_the_sampler_by_their_violations(tmp_path, market):
    """Rejected trials are recorded at -inf, but the sampler is told their unrejected score and
    constraint violations, so it can tell 'almost passing' from 'hopeless'."""
    from sweep.optuna_trials import open_study
    from sweep.study import prepare

    c = cfg(tmp_path, trials=16, sampler="tpe", batch=4, study="constrained")
    run_study(c, market=market)
    t = results.query(tmp_path, "SELECT * FROM trials ORDER BY trial")
    ok = t["status"] == "complete"
    assert (t.loc[ok, "objective"] == t.loc[ok, "score"]).all()
    rej = t[~ok]
    assert len(rej), "the test data should produce some rejected trials"
    dampener = 1 / (1 + np.maximum(0, rej["base_max_dd"] - 0.15)) ** 2  # DESIGN section 6
    raw = rej["base_annualized"] * dampener * (1 + 0.1 * (1 - rej["base_hhi"]))
    np.testing.assert_allclose(rej["objective"], raw, rtol=1e-12)
    study = open_study(prepare(c, "x", market=market))
    by = {tr.number: tr for tr in study.get_trials(deepcopy=False)}
    for r in t.itertuples():
        v = by[r.trial].constraints
        assert (max(v.values()) > 0) == (r.status == "rejected")
        if r.rejected == "trades < 30":
            assert v["min_trades"] == pytest.approx((30 - r.base_n_trades) / 30)
