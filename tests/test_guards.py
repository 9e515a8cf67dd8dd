"""The research loop guards itself (issue 13): an edited harness refuses every evaluating command,
a strategy that looks ahead is refused before its first trial, and the gate's verdict is cached."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import _sweep_helpers as h
import pytest
from typer.testing import CliRunner

from harness import manifest
from harness.errors import HarnessError
from strategies.base import get_strategy, registry
from sweep import causality, results
from sweep.study import StudyConfig, run_study

ROOT = Path(__file__).resolve().parents[1]


def real_strategies() -> dict:
    """The registry without the strategies tests register for themselves."""
    return {n: s for n, s in registry().items() if s.generate_fn.__module__.startswith("strategies.")}


def _rows(res: Path) -> dict[str, int]:
    return {t: len(list((res / t).glob("*.parquet"))) for t in ("runs", "trials", "causality")
            if (res / t).is_dir()}


# ---------------------------------------------------------------------------------- the freeze

def test_an_edited_harness_refuses_sweep_run_and_writes_nothing(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "harness", copy / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "harness" / "friction.py", "a") as fh:  # a COPY: the real harness is untouched
        fh.write("\n# an edit the manifest does not know\n")
    res = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": f"{copy}{os.pathsep}{ROOT}",
           "NUMBA_CACHE_DIR": str(ROOT / ".numba_cache")}
    p = subprocess.run([sys.executable, "-m", "sweep", "run", "--trials", "2", "--results", str(res)],
                       cwd=copy, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("error: harness/friction.py differs from harness/MANIFEST.json")
    assert "git checkout -- harness" in lines[0] and "make manifest" in lines[0]
    assert not res.exists() or _rows(res) == {}


@pytest.fixture
def edited_harness(monkeypatch):
    """The process sees harness/friction.py as differing from the manifest (the real files are
    untouched); the once-per-process hash is recomputed before and after."""
    manifest.harness_hash.cache_clear()
    monkeypatch.setattr(manifest, "verify", lambda harness_dir=manifest.HARNESS_DIR: ["friction.py"])
    yield
    monkeypatch.undo()
    manifest.harness_hash.cache_clear()


@pytest.fixture(scope="module")
def sweep_app():
    from sweep.cli import _register, app

    if not any(c.name == "check" for c in app.registered_commands):
        _register()
    return app


def test_every_evaluating_command_checks_the_freeze_first(tmp_path, edited_harness, sweep_app):
    from executor.cli import app as executor_app

    res = tmp_path / "r"
    runner = CliRunner()
    r_ = ["--results", str(res)]
    commands = [
        (sweep_app, ["run", "--trials", "2", *r_]),
        (sweep_app, ["scan", "--param", "breakout", "--values", "10", *r_]),
        (sweep_app, ["noise", *r_]),
        (sweep_app, ["promote", "--out", str(tmp_path / "c.json"), *r_]),
        (sweep_app, ["calibrate", "--runs", "1", "--scratch", str(res)]),
        (sweep_app, ["check", "--strategy", "momentum", *r_]),
        (sweep_app, ["signals", "--strategy", "momentum"]),
        (sweep_app, ["backtest", "--strategy", "momentum", "--params", "{}", "--out",
                     str(tmp_path / "bt"), *r_]),
        (sweep_app, ["report", "--study", "any", "--out", str(tmp_path / "r.html"), *r_]),
        (executor_app, ["paper", "--candidates", str(tmp_path / "c.json"), "--ledger",
                        str(tmp_path / "l.sqlite"), *r_]),
    ]
    for app, args in commands:
        r = runner.invoke(app, args)
        said = str(r.exception) if isinstance(r.exception, HarnessError) else r.output
        assert r.exit_code != 0 and said.strip().startswith(("harness/friction.py differs",
                                                             "error: harness/friction.py differs")), args
    assert not res.exists() and not (tmp_path / "l.sqlite").exists() and not (tmp_path / "c.json").exists()
    assert not (tmp_path / "bt").exists() and not (tmp_path / "r.html").exists()


# ---------------------------------------------------------------------------------- causality

@pytest.fixture
def peeking():
    h.install()
    h.install_peeking()
    yield get_strategy(h.PEEK)
    h.uninstall()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return h.write_dataset(tmp_path_factory.mktemp("data") / "hl", n_bars=1600, n_coins=3)


def test_a_peeking_strategy_is_refused_by_sweep_run(tmp_path, dataset):
    res = tmp_path / "r"
    p = h.run_cli("run", "--strategy", h.PEEK, "--trials", "4", "--data", dataset, "--folds", "2",
                  "--results", res, check=False, peeking=True, timeout=300)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: test_peeking looks ahead: Signals."), p.stderr
    assert " coin C" in lines[-1] and "cut bar" in lines[-1]
    assert _rows(res) == {"causality": 1}  # the verdict is kept; no run, no trial
    v = results.query(res, "SELECT passed, failure FROM causality")
    assert not v.passed[0] and v.failure[0] in lines[-1]


def test_a_peeking_strategy_is_refused_by_sweep_check(tmp_path, dataset, peeking, sweep_app):
    r = CliRunner().invoke(sweep_app, ["check", "--strategy", h.PEEK, "--data", str(dataset),
                                       "--results", str(tmp_path)], env={"COLUMNS": "200"})
    assert r.exit_code == 2, r.output
    assert "LOOKS AHEAD" in r.stdout and "error: 1 strategy(ies) look ahead: test_peeking" in r.stderr
    ok = CliRunner().invoke(sweep_app, ["check", "--strategy", h.NAME, "--data", str(dataset),
                                        "--results", str(tmp_path)], env={"COLUMNS": "200"})
    assert ok.exit_code == 0 and "causal" in ok.stdout, ok.output


def test_a_second_run_reuses_the_verdict(tmp_path, dataset, peeking, monkeypatch):
    calls = []
    real = causality.run
    monkeypatch.setattr(causality, "run", lambda *a: calls.append(a[0].name) or real(*a))
    cfg = StudyConfig(strategy=h.NAME, trials=4, sampler="random", folds=2, batch=4,
                      data=str(dataset), results=tmp_path)
    first = run_study(cfg)
    assert calls == [h.NAME] and first.causality.passed and not first.causality.cached
    assert first.causality.line().startswith("causality: passed (test_breakout code ")
    again = run_study(dataclasses.replace(cfg, trials=6))
    assert calls == [h.NAME] and again.causality.cached  # no second gate: one row, one call
    assert again.causality.line().startswith("causality: passed (cached: ")
    assert len(results.query(tmp_path, "SELECT * FROM causality")) == 1
    other = dataclasses.replace(cfg, coins=("C0", "C1"))  # other data: checked again
    run_study(other)
    assert calls == [h.NAME, h.NAME]


def test_every_strategy_passes_sweep_check_all_on_the_embedded_default(tmp_path, sweep_app):
    r = CliRunner().invoke(sweep_app, ["check", "--all", "--results", str(tmp_path)],
                           env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    hourly_or_daily = [n for n, s in real_strategies().items() if s.interval in ("1h", "4h", "1d")]
    rows = results.query(tmp_path, "SELECT strategy, passed, signals FROM causality")
    assert set(hourly_or_daily) <= set(rows.strategy)  # (and any a test module registered)
    assert rows.passed.all() and (rows.signals > 0).all()


@pytest.mark.slow
@pytest.mark.skipif(not (h.SHARED / "hyperliquid" / "candles_1h.parquet").exists(),
                    reason="../shared/data/hyperliquid is absent (set HLQ_SHARED_DATA)")
def test_every_strategy_passes_sweep_check_all_on_the_real_data(tmp_path):
    p = subprocess.run([sys.executable, "-m", "sweep", "check", "--all", "--data",
                        str(h.SHARED / "hyperliquid"), "--results", str(tmp_path)], cwd=ROOT,
                       env=h.env(), capture_output=True, text=True, timeout=3000)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    rows = results.query(tmp_path, "SELECT strategy, passed FROM causality")
    assert set(real_strategies()) <= set(rows.strategy) and rows.passed.all()


# ---------------------------------------------------------------------------------- leaderboard

def test_the_leaderboard_never_ranks_two_frictions_datasets_or_fold_layouts_together(
        tmp_path, dataset, peeking, sweep_app):
    from sweep.leaderboard import board
    from sweep.study import best_comparable, prepare

    base = StudyConfig(strategy=h.NAME, trials=4, sampler="random", folds=2, batch=4,
                       data=str(dataset), results=tmp_path)
    runs = [base, dataclasses.replace(base, friction="legacy"),
            dataclasses.replace(base, coins=("C0", "C1")), dataclasses.replace(base, folds=3)]
    studies = [run_study(cfg).study for cfg in runs]
    # one scored trial planted in each run's study, the zero-fee one far above the rest, and a
    # trial of another harness hash above everything
    scores = [5.0, 1e9, 50.0, 500.0]
    for i, (study, score) in enumerate(zip(studies, scores, strict=True)):
        row = results.query(tmp_path, "SELECT * FROM trials WHERE study = ? LIMIT 1", [study])
        results.write_batch(tmp_path, "trials", row.assign(trial=99, score=score, status="complete",
                                                           rejected=None, batch=f"p{i}"))
    results.write_batch(tmp_path, "trials", row.assign(study="other-hash", trial=0, score=2e9,
                                                       harness_hash="0ther", batch="p9"))
    runs_of = results.query(tmp_path, "SELECT study, sim_model_version AS f, data_fingerprint AS d, "
                                      "folds FROM runs WHERE command = 'run'")
    key = {r.study: (r.f, r.d, json.loads(r.folds)["k"]) for r in runs_of.itertuples()}
    assert len(set(key.values())) == 4
    every = board(tmp_path, top=50)
    assert len(every.groups) == 5  # v5, legacy, the coin subset, 3 folds, the other hash
    for g in every.groups:  # each table holds one friction, one dataset, one fold layout
        assert g.rows.harness_hash.nunique() == 1
        assert len({key.get(s, "other") for s in g.rows.study}) == 1
    v5 = board(tmp_path, harness=manifest.harness_hash(), friction="friction_v5_coin_spread_impact")
    shown = set().union(*(set(g.rows.study) for g in v5.groups))
    assert studies[1] not in shown and "other-hash" not in shown
    assert v5.hidden == {"harness": 1, "friction": 5}  # 4 legacy trials + the planted one
    best = best_comparable(prepare(base, "x"))  # the incumbent comes from its own group only
    assert (best["study"], best["trial"], best["score"]) == (studies[0], 99, 5.0)
    r = CliRunner().invoke(sweep_app, ["leaderboard", "--results", str(tmp_path), "--friction",
                                       "all"], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    assert r.stdout.count("group ") == 4 and "friction legacy" in r.stdout
    assert "1 trial(s) of other harness hashes hidden" in r.stdout
    only_b = CliRunner().invoke(sweep_app, ["leaderboard", "--results", str(tmp_path), "--data",
                                            str(dataset), "--coins", "C0,C1", "--strategy", h.NAME],
                                env={"COLUMNS": "250"})
    assert only_b.exit_code == 0 and "group " not in only_b.stdout, only_b.output
    assert "trial(s) of other datasets hidden" in only_b.stdout and "%" in only_b.stdout, only_b.stdout

