"""The README's promise, command by command: bad input (unknown paths, corrupt files, wrong
schemas, invalid values, usage errors) gives ONE line on stderr, a non-zero exit, and nothing
written (issue 15 item 9 and its done-when sweep).

Each case runs in a copy of one prepared folder (a dataset, results tables, candidates files,
ledgers, corrupt and foreign files) with the folder as the working directory, so the defaults
(`./data`, `./results`, `live_candidates.json`) land there too; the folder's files, modes and
bytes must be the same afterwards. In-process through typer's CliRunner; the real entry points
(`python -m sweep`, `python -m executor`) once each in a subprocess.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys

import _sweep_helpers as h
import pandas as pd
import pytest
from _executor_helpers import every_bucket, write_candidates
from typer.testing import CliRunner

from executor import cli as executor_cli
from sweep import results

COMMON = {"COLUMNS": "200"}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    h.write_dataset(root / "ds", n_bars=300, n_coins=2)
    (root / "wrong").mkdir()
    pd.DataFrame({"coin": ["BTC"], "when": [1], "price": [1.0]}).to_parquet(root / "wrong" / "candles_1h.parquet")
    (root / "corrupt").mkdir()
    (root / "corrupt" / "candles_1h.parquet").write_bytes(b"PAR1 this is not parquet" * 8)
    prov = {"run_id": "r", "harness_hash": "h", "data_fingerprint": "f", "sim_model_version": "v",
            "git_commit": "c", "seed": 0}
    results.write_batch(root / "results", "trials", pd.DataFrame([{
        **prov, "command": "run", "strategy": "s", "study": "st", "trial": t, "status": "complete",
        "rejected": None, "score": 0.1 * t, "objective": 0.1 * t, "worst_fold": 0.0,
        "fold_scores": "[]", "folds": "[]", "params": "{}", "kept": False, "duration_s": 0.1,
        "min_trades": 10, "finished_at": pd.Timestamp("2025-01-01", tz="UTC")} for t in range(3)]))
    results.connect(root / "results").close()
    buckets = every_bucket("trend_alpha", ("BTC",), interval="4h", sides=("long",),
                           sessions=("ASIA",), regimes=("LONG",), vols=("mid",))
    write_candidates(root / "c.json", buckets)
    (root / "truncated.json").write_text('{"schema_version": 1, "buckets": [')
    (root / "schema.json").write_text('{"schema_version": 1}')
    write_candidates(root / "params.json", [dict(b, params={"ema_fast": "abc"}) for b in buckets])
    con = sqlite3.connect(root / "other.sqlite")
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
    con.commit()
    con.close()
    con = sqlite3.connect(root / "v99.sqlite")
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.execute("INSERT INTO meta VALUES ('schema_version', '99')")
    con.commit()
    con.close()
    (root / "text.sqlite").write_text("not a database\n")
    return root


REPLAY = ("--feed", "replay", "--data", "ds", "--start", "2024-01-05", "--end", "2024-01-06")
SWEEP = [  # (case, args, what the line must say)
    # usage errors (typer's boxes before)
    ("run-trials-0", ["run", "--trials", "0"], "--trials"),
    ("run-trials-abc", ["run", "--trials", "abc"], "valid integer"),
    ("run-unknown-option", ["run", "--trails", "5"], "No such option: --trails"),
    ("noise-repeats-1", ["noise", "--repeats", "1"], "--repeats"),
    ("scan-no-param", ["scan", "--values", "1,2"], "Missing option '--param'"),
    ("unknown-command", ["runn"], "No such command 'runn'"),
    ("data-unknown-command", ["data", "synch"], "No such command 'synch'"),
    ("run-storage-timeout-0", ["run", "--storage-timeout", "0"], "--storage-timeout"),
    # invalid values
    ("run-sampler", ["run", "--sampler", "grid"], "unknown sampler 'grid'"),
    ("run-strategy", ["run", "--strategy", "nope"], "unknown strategy 'nope'"),
    ("run-fix-unknown", ["run", "--fix", "nope=1"], "--fix expects name=value pairs"),
    ("run-fix-type", ["run", "--fix", "window=abc", "--strategy", "zscore_reversion"], "param window (int): cannot read 'abc'"),
    ("run-study-name", ["run", "--study", "a/b"], "study name 'a/b'"),
    ("run-mode", ["run", "--mode", "wild"], "--mode must be live or shadow"),
    ("run-storage-url", ["run", "--data", "ds", "--storage", "postgresql://ann:pw@[::1/x"], "--storage"),
    ("scan-param", ["scan", "--param", "nope", "--values", "1", "--data", "ds"], "has no parameter 'nope'"),
    ("scan-values", ["scan", "--strategy", "zscore_reversion", "--param", "window", "--values", "abc",
                     "--data", "ds"], "cannot read 'abc'"),
    ("strategies-unknown", ["strategies", "nope"], "unknown strategy 'nope'"),
    ("data-info-both", ["data", "info", "--data", "ds", "--store", "data"], "not both"),
    ("data-costs-notional", ["data", "costs", "--data", "ds", "--notional", "0"], "--notional"),
    ("data-costs-at", ["data", "costs", "--data", "ds", "--at", "someday"], "--at 'someday' is not a time"),
    ("data-costs-estimator", ["data", "costs", "--data", "ds", "--estimator", "guess"], "guess"),
    ("data-sync-interval", ["data", "sync", "--coins", "BTC", "--interval", "7m"], "unknown interval '7m'"),
    ("data-sync-no-coins", ["data", "sync", "--coins", ","], "no coins given"),
    ("data-sync-since", ["data", "sync", "--coins", "BTC", "--since", "someday"], "since='someday' is not a date"),
    ("sql-two", ["sql", "--csv", "--json", "SELECT 1"], "choose one of --csv and --json"),
    ("sql-copy", ["sql", "COPY (SELECT 1) TO 'results/x.csv'"], "read-only"),
    ("sql-syntax", ["sql", "SELEC 1"], "syntax error"),
    ("sql-unknown-table", ["sql", "SELECT * FROM nowhere"], "Table with name nowhere does not exist"),
    ("sql-none", ["sql"], "give a query"),
    ("leaderboard-top-0", ["leaderboard", "--top", "0"], "--top"),
    ("regime-holdout", ["regime", "train", "--holdout", "0.9"], "--holdout"),
    ("signals-mode", ["signals", "--mode", "wild"], "--mode must be live or shadow"),
    ("signals-strategy", ["signals", "--strategy", "nope"], "unknown strategy 'nope'"),
    ("signals-params", ["signals", "--strategy", "zscore_reversion", "--params", "{bad", "--data", "ds"], "--params"),
    ("signals-at", ["signals", "--strategy", "zscore_reversion", "--at", "someday", "--data", "ds"], "someday"),
    ("signals-data-missing", ["signals", "--strategy", "zscore_reversion", "--data", "nowhere"], "nowhere"),
    ("calibrate-strengths", ["calibrate", "--strengths", "strong"], "strong"),
    ("calibrate-runs-0", ["calibrate", "--runs", "0"], "--runs"),
    ("calibrate-strategy", ["calibrate", "--strategy", "momentum"], "momentum"),
    ("backtest-strategy", ["backtest", "--strategy", "nope", "--params", "{}"], "unknown strategy 'nope'"),
    ("backtest-params", ["backtest", "--strategy", "momentum", "--params", "{bad", "--data", "ds"], "--params is not JSON"),
    ("report-none", ["report"], "give exactly one of --trial"),
    ("check-strategy", ["check", "--strategy", "nope"], "unknown strategy 'nope'"),
    # unknown paths
    ("run-data-missing", ["run", "--data", "nowhere"], "nowhere"),
    ("scan-data-missing", ["scan", "--param", "ema_fast", "--values", "8", "--data", "nowhere"], "nowhere"),
    ("noise-data-missing", ["noise", "--data", "nowhere"], "nowhere"),
    ("data-info-missing", ["data", "info", "--data", "nowhere"], "nowhere"),
    ("data-costs-missing", ["data", "costs", "--data", "nowhere"], "nowhere"),
    ("data-import-missing", ["data", "import", "nowhere", "--store", "store"], "nowhere"),
    ("sql-results-missing", ["sql", "SELECT 1", "--results", "nowhere"], "no results folder nowhere"),
    ("leaderboard-results-missing", ["leaderboard", "--results", "nowhere"], "no results folder nowhere"),
    ("promote-results-missing", ["promote", "--results", "nowhere"], "nowhere"),
    ("regime-eval-data-missing", ["regime", "eval", "--data", "nowhere"], "nowhere"),
    ("backtest-data-missing", ["backtest", "--strategy", "momentum", "--params", "{}", "--data", "nowhere"], "nowhere"),
    ("report-backtest-missing", ["report", "--backtest", "nowhere"], "not a backtest folder"),
    ("check-data-missing", ["check", "--strategy", "momentum", "--data", "nowhere"], "nowhere"),
    # corrupt files and wrong schemas
    ("data-info-corrupt", ["data", "info", "--data", "corrupt"], "corrupt"),
    ("data-info-wrong-schema", ["data", "info", "--data", "wrong"], "wrong"),
    ("data-import-corrupt", ["data", "import", "corrupt", "--store", "store"], "corrupt"),
    ("data-import-wrong-schema", ["data", "import", "wrong", "--store", "store"], "wrong"),
    ("run-data-corrupt", ["run", "--data", "corrupt"], "corrupt"),
    ("run-coins-unknown", ["run", "--data", "ds", "--coins", "NOPE"], "NOPE"),
]
EXECUTOR = [
    ("paper-missing-candidates", ["paper", "--ledger", "p.sqlite"], "give --candidates FILE"),
    ("paper-candidates-absent", ["paper", "-c", "nowhere.json", "-l", "p.sqlite", *REPLAY], "nowhere.json"),
    ("paper-candidates-truncated", ["paper", "-c", "truncated.json", "-l", "p.sqlite", *REPLAY], "not valid JSON"),
    ("paper-candidates-schema", ["paper", "-c", "schema.json", "-l", "p.sqlite", *REPLAY], "does not match"),
    ("paper-candidates-params", ["paper", "-c", "params.json", "-l", "p.sqlite", *REPLAY], "ema_fast = 'abc'"),
    ("paper-feed", ["paper", "-c", "c.json", "-l", "p.sqlite", "--feed", "fax"], "--feed must be"),
    ("paper-replay-args", ["paper", "-c", "c.json", "-l", "p.sqlite", "--feed", "replay"], "--feed replay needs"),
    ("paper-data-missing", ["paper", "-c", "c.json", "-l", "p.sqlite", "--feed", "replay", "--data",
                            "nowhere", "--start", "2024-01-05", "--end", "2024-01-06"], "nowhere"),
    ("paper-ledger-dir", ["paper", "-c", "c.json", "-l", "no/p.sqlite", *REPLAY], "does not exist"),
    ("paper-ledger-other", ["paper", "-c", "c.json", "-l", "other.sqlite", *REPLAY], "another program"),
    ("paper-ledger-v99", ["paper", "-c", "c.json", "-l", "v99.sqlite", *REPLAY], "v99"),
    ("paper-ledger-text", ["paper", "-c", "c.json", "-l", "text.sqlite", *REPLAY], "not a SQLite database"),
    ("paper-risk", ["paper", "-c", "c.json", "-l", "p.sqlite", *REPLAY, "--kill-drawdown", "2"], "--kill-drawdown"),
    ("paper-warmup", ["paper", "-c", "c.json", "-l", "p.sqlite", *REPLAY, "--warmup-bars", "0"], "--warmup-bars"),
    ("paper-interval", ["paper", "-c", "c.json", "-l", "p.sqlite", *REPLAY, "--interval", "7m"], "unknown interval"),
    ("paper-results-file", ["paper", "-c", "c.json", "-l", "p.sqlite", *REPLAY, "--results", "c.json"], "not a folder"),
    ("status-missing", ["status", "--ledger", "nowhere.sqlite"], "no ledger at"),
    ("status-other", ["status", "--ledger", "other.sqlite"], "another program"),
    ("status-v99", ["status", "--ledger", "v99.sqlite"], "newer than this executor"),
    ("status-text", ["status", "--ledger", "text.sqlite"], "not a SQLite database"),
    ("unknown-command", ["trade"], "No such command 'trade'"),
]


def _refused(tmp_path, template, monkeypatch, invoke, args, what) -> None:
    work = tmp_path / "w"
    shutil.copytree(template, work)
    monkeypatch.chdir(work)
    before = h.tree(work)
    line = h.one_error_line(invoke(*args))
    assert what in line, line
    assert h.tree(work) == before, "a refused command must write nothing"


@pytest.mark.parametrize("case, args, what", SWEEP, ids=[c[0] for c in SWEEP])
def test_sweep_refuses_bad_input_in_one_line(tmp_path, template, monkeypatch, case, args, what):
    _refused(tmp_path, template, monkeypatch, h.invoke, args, what)


def _executor(*args):
    return CliRunner().invoke(executor_cli.app, [str(a) for a in args], env=COMMON)


@pytest.mark.parametrize("case, args, what", EXECUTOR, ids=[c[0] for c in EXECUTOR])
def test_executor_refuses_bad_input_in_one_line(tmp_path, template, monkeypatch, case, args, what):
    _refused(tmp_path, template, monkeypatch, _executor, args, what)


def test_data_sync_of_an_unknown_coin_is_one_line(tmp_path, template, monkeypatch):
    from fakes.hl_server import FakeHyperliquid

    with FakeHyperliquid() as server:
        _refused(tmp_path, template, monkeypatch, h.invoke,
                 ["data", "sync", "--coins", "NOPE", "--base-url", server.url], "unknown coin 'NOPE'")


def test_every_command_has_a_case():
    """A new command joins the sweep above: each command path leads at least one case."""
    from typer.main import get_command

    from sweep.cli import app as sweep_app

    h.invoke("--help")  # registers sweep's command modules

    def paths(cmd, prefix=()) -> list[tuple[str, ...]]:
        subs = getattr(cmd, "commands", None)
        if not subs:
            return [prefix]
        return [p for name, sub in subs.items() for p in paths(sub, prefix + (name,))]

    for app, cases in ((sweep_app, SWEEP), (executor_cli.app, EXECUTOR)):
        missing = [" ".join(p) for p in paths(get_command(app))
                   if not any(tuple(args[:len(p)]) == p for _, args, _ in cases)]
        assert not missing, f"commands without a bad-input case: {missing}"


@pytest.mark.parametrize("module, args, what", [
    ("sweep", ["run", "--trials", "0"], "--trials"),
    ("executor", ["status", "--ledger", "nowhere.sqlite"], "no ledger at"),
])
def test_the_real_entry_points_print_one_line(tmp_path, module, args, what):
    p = subprocess.run([sys.executable, "-m", module, *args], cwd=tmp_path, env=h.env(),
                       capture_output=True, text=True, timeout=120)
    lines = p.stderr.splitlines()
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and what in lines[0], p.stderr
    assert list(tmp_path.iterdir()) == []
