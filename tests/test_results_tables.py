"""Results tables: atomic Parquet batches, DuckDB views, commit markers, documented schemas."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import _sweep_helpers as h
import duckdb
import numpy as np
import pandas as pd
import pytest

from harness.errors import ConfigError
from sweep import results, results_schema


def prov(run_id: str = "r1", **kw) -> dict:
    base = {"run_id": run_id, "harness_hash": "h1", "data_fingerprint": "fp", "sim_model_version":
            "friction_v4_partial_trail_liq", "git_commit": "c0", "seed": 0}
    return {**base, **kw}


def trial_rows(study: str, trials: range, **extra) -> pd.DataFrame:
    rng = np.random.default_rng(len(trials))
    rows = []
    for t in trials:
        rows.append({**prov(), "command": "run", "strategy": "s", "study": study, "trial": t,
                     "status": "complete", "rejected": None, "score": float(rng.normal()), "objective": 0.0,
                     "worst_fold": -1.0, "fold_scores": "[]", "folds": "[]", "params": "{}",
                     "kept": False, "min_trades": 30, "duration_s": 0.1, "finished_at": pd.Timestamp.now(tz="UTC"),
                     **extra})
    return pd.DataFrame(rows)


def test_write_and_query_round_trip(tmp_path):
    a = trial_rows("st", range(0, 5), p_x=1)
    b = trial_rows("st", range(5, 8), p_y="fast")  # another param set: union by name
    results.write_batch(tmp_path, "trials", a)
    results.write_batch(tmp_path, "trials", b)
    got = results.query(tmp_path, "SELECT trial, score, p_x, p_y FROM trials ORDER BY trial")
    expect = pd.concat([a, b], ignore_index=True)
    assert got["trial"].tolist() == list(range(8))
    np.testing.assert_allclose(got["score"].to_numpy(), expect["score"].to_numpy(), rtol=0, atol=0)
    assert got["p_x"].tolist()[:5] == [1] * 5 and got["p_x"].isna().sum() == 3
    assert got["p_y"].tolist()[5:] == ["fast"] * 3
    assert not list(tmp_path.rglob("*.tmp")), "no temp file may remain"
    assert len(list((tmp_path / "trials").glob("*.parquet"))) == 2


def test_empty_results_have_typed_views(tmp_path):
    con = results.connect(tmp_path)
    assert con.execute("SELECT count(*) FROM trials").fetchone()[0] == 0
    cols = {r[0]: r[1] for r in con.execute("DESCRIBE trials").fetchall()}
    con.close()
    for name, kind, _ in results_schema.TRIALS.columns:
        assert cols[name] == results_schema.TYPES[kind][1]
    assert (tmp_path / results.DB_NAME).exists()


def test_missing_and_unknown_columns_are_clear_errors(tmp_path):
    df = trial_rows("st", range(2)).drop(columns=["score"])
    with pytest.raises(ConfigError, match="lacks column.*score"):
        results.write_batch(tmp_path, "trials", df)
    runs = pd.DataFrame([{**prov(), "bogus": 1}])
    with pytest.raises(ConfigError, match="runs"):
        results.write_batch(tmp_path, "runs", runs)
    bad = trial_rows("st", range(2)).assign(trial=["a", "b"])
    with pytest.raises(ConfigError, match="column trial is not int"):
        results.write_batch(tmp_path, "trials", bad)
    with pytest.raises(ConfigError, match="unknown results table"):
        results.write_batch(tmp_path, "nope", bad)
    assert not list(tmp_path.rglob("*.parquet")) and not list(tmp_path.rglob("*.tmp"))


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from harness import atomic

    real = pq.write_table

    def boom(table, where, **kw):
        real(table.slice(0, 1), where, **kw)  # half written...
        raise OSError("disk full")

    monkeypatch.setattr(atomic.pq, "write_table", boom)
    with pytest.raises(OSError):
        results.write_batch(tmp_path, "trials", trial_rows("st", range(3)))
    assert not list(tmp_path.rglob("*.parquet")) and not list(tmp_path.rglob("*.tmp"))


def test_dependent_rows_visible_only_with_their_trials_batch(tmp_path):
    ret = pd.DataFrame({**prov(), "study": "st", "trial": [0, 0],
                        "date": [pd.Timestamp("2024-01-01").date(), pd.Timestamp("2024-01-02").date()],
                        "ret": [0.01, -0.02]})
    results.write_batch(tmp_path, "trial_returns", ret, batch="b1")
    assert results.query(tmp_path, "SELECT count(*) AS n FROM trial_returns")["n"][0] == 0
    results.write_batch(tmp_path, "trials", trial_rows("st", range(1)), batch="b1")
    got = results.query(tmp_path, "SELECT ret FROM trial_returns ORDER BY date")
    assert got["ret"].tolist() == [0.01, -0.02]
    # an orphan batch (killed before its trials file) stays hidden
    results.write_batch(tmp_path, "trial_returns", ret.assign(trial=9), batch="b2")
    assert results.query(tmp_path, "SELECT count(*) AS n FROM trial_returns")["n"][0] == 2


def test_runs_view_keeps_latest_status(tmp_path):
    def row(status, t):
        r = {c: None for c in results_schema.RUNS.names}
        r.update(prov(), command="run", status=status, started_at=pd.Timestamp("2024-01-01", tz="UTC"),
                 updated_at=pd.Timestamp(t, tz="UTC"), jobs=1, n_coins=3, n_bars=10, trials_target=5,
                 git_dirty=False)
        return r

    results.write_batch(tmp_path, "runs", pd.DataFrame([row("running", "2024-01-01 00:00")]))
    results.write_batch(tmp_path, "runs", pd.DataFrame([row("finished", "2024-01-01 01:00")]))
    got = results.query(tmp_path, "SELECT status FROM runs")
    assert got["status"].tolist() == ["finished"]


def test_register_table_is_one_line(tmp_path):
    results_schema.register_table("lockbox_touches_test", (("bucket", "str", "which bucket"),
                                                    ("mean_r", "float", "lockbox mean R")),
                           "test table")
    try:
        df = pd.DataFrame([{**prov(), "bucket": "momentum/long", "mean_r": 0.25}])
        results.write_batch(tmp_path, "lockbox_touches_test", df)
        got = results.query(tmp_path, "SELECT bucket, mean_r, seed FROM lockbox_touches_test")
        assert got.iloc[0].tolist() == ["momentum/long", 0.25, 0]
        assert "lockbox_touches_test" in set(results.schema_frame()["table"])
    finally:
        results_schema.TABLES.pop("lockbox_touches_test")


def test_unregistered_table_folder_still_gets_a_view(tmp_path):
    results_schema.register_table("tmp_table_x", (("v", "int", "a value"),), "tmp", provenance=False)
    results.write_batch(tmp_path, "tmp_table_x", pd.DataFrame({"v": [1, 2, 3]}))
    results_schema.TABLES.pop("tmp_table_x")
    assert results.query(tmp_path, "SELECT sum(v) AS s FROM tmp_table_x")["s"][0] == 6


def test_connect_falls_back_when_db_is_locked(tmp_path):
    results.write_batch(tmp_path, "trials", trial_rows("st", range(3)))
    results.connect(tmp_path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb,sys,time; c=duckdb.connect(sys.argv[1]); "
         "print('ok', flush=True); time.sleep(30)", str(tmp_path / results.DB_NAME)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        con = results.connect(tmp_path)  # must not fail: in-memory views instead
        assert con.execute("SELECT count(*) FROM trials").fetchone()[0] == 3
        con.close()
    finally:
        holder.kill()
        holder.wait()


def test_json_is_strict_and_keeps_non_finite():
    text = results.to_json({"b": np.float64(np.inf), "a": [np.int64(3), math.nan, -math.inf],
                            "t": pd.Timestamp("2024-01-01", tz="UTC")})
    assert json.loads(text) == {"a": [3, "nan", "-inf"], "b": "inf", "t": "2024-01-01T00:00:00+00:00"}
    assert list(json.loads(text)) == ["a", "b", "t"]


def test_git_state_reads_this_repository():
    commit, dirty = results.git_state()
    out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                         cwd=results.Path(results.__file__).parents[1])
    expect = out.stdout.strip() if out.returncode == 0 else "unknown"
    assert commit == expect and isinstance(dirty, bool)


def test_many_batches_stay_queryable_quickly(tmp_path):
    for i in range(40):
        results.write_batch(tmp_path, "trials", trial_rows(f"s{i % 3}", range(i * 5, i * 5 + 5)))
    t0 = time.perf_counter()
    got = results.query(tmp_path, "SELECT study, count(*) AS n FROM trials GROUP BY study ORDER BY study")
    assert got["n"].sum() == 200 and time.perf_counter() - t0 < 5


FORGE = "COPY (SELECT * REPLACE (99.0 AS score) FROM trials LIMIT 1) TO '{res}/trials/zz.parquet'"
REFUSED = [FORGE, "CREATE TABLE x AS SELECT 1", "DROP VIEW trials", "CREATE OR REPLACE VIEW trials "
           "AS SELECT 1", "INSERT INTO trials SELECT * FROM trials", "ATTACH '{res}/x.duckdb' AS x",
           "INSTALL httpfs", "LOAD httpfs", "SET enable_external_access = true",
           "EXPORT DATABASE '{res}/exp'", "SELECT 1; DROP VIEW trials", "PRAGMA enable_profiling",
           "EXPLAIN ANALYZE COPY (SELECT 1) TO '{res}/x.csv'", "CHECKPOINT", ";"]


@pytest.mark.parametrize("sql", REFUSED, ids=range(len(REFUSED)))
def test_sweep_sql_runs_one_select_and_refuses_the_rest(tmp_path, sql):
    """Issue 15 item 1: a COPY forged a leaderboard row; now anything but one SELECT is refused
    with one line before a connection is opened, and nothing in the results folder changes."""
    results.write_batch(tmp_path, "trials", trial_rows("st", range(3)))
    results.connect(tmp_path).close()
    before = h.tree(tmp_path)
    line = h.one_error_line(h.invoke("sql", sql.format(res=tmp_path), "--results", tmp_path))
    assert "read-only" in line or "give one statement" in line
    assert h.tree(tmp_path) == before


def test_the_sql_connection_reads_the_results_folder_and_nothing_else(tmp_path):
    results.write_batch(tmp_path, "trials", trial_rows("st", range(3)))
    ok = h.invoke("sql", "SELECT count(*) AS n FROM trials", "--csv", "--results", tmp_path)
    assert ok.exit_code == 0 and ok.stdout.split() == ["n", "3"]
    described = h.invoke("sql", "DESCRIBE trials", "--csv", "--results", tmp_path)
    assert described.exit_code == 0 and "score,DOUBLE" in described.stdout
    outside = tmp_path.parent / f"{tmp_path.name}-outside.csv"
    outside.write_text("secret\n1\n")
    con = results.connect_readonly(tmp_path)
    try:
        assert con.execute("SELECT count(*) FROM trials").fetchone()[0] == 3
        with pytest.raises(duckdb.PermissionException):  # files outside the results folder
            con.execute(f"SELECT * FROM read_csv('{outside}')").fetchall()
        with pytest.raises(duckdb.Error, match="Cannot"):  # the configuration is locked
            con.execute("SET enable_external_access = true")
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute("SET autoload_known_extensions = true")
    finally:
        con.close()
    assert not (tmp_path / results.DB_NAME).exists(), "sweep sql writes nothing, not even the view file"
    line = h.one_error_line(h.invoke("sql", f"SELECT * FROM read_csv('{outside}')", "--results", tmp_path))
    assert "Permission" in line and "secret" not in line


def _write_batches(folder: str, writer: int, n_batches: int, start_at: float) -> None:
    """One writer of many: trades then trials per batch, as a sweep worker commits a batch."""
    while time.time() < start_at:  # every writer starts together: the batches interleave
        time.sleep(0.001)
    for b in range(n_batches):
        study = f"w{writer}"
        trials = trial_rows(study, range(b * 4, b * 4 + 4))
        batch = results.new_id()
        trades = pd.DataFrame({**prov(), "study": study, "trial": trials["trial"], "coin": "BTC",
                               "r_multiple": 1.0})
        results.write_batch(folder, "trades", trades, batch=batch)
        results.write_batch(folder, "trials", trials.assign(batch=batch), batch=batch)


def test_concurrent_writers_to_one_folder_lose_and_double_nothing(tmp_path):
    """Several processes (as several machines on one mounted folder) append to the same tables
    at once while a reader queries: every row lands exactly once, a reader only ever sees
    whole batches (4 rows each; a half-written Parquet file would not even read), and no temp
    file is left. (Two tables read in one query are not one snapshot: each view lists its
    files when it is read, so only whole-batch counts are asserted while writers run.)"""
    import multiprocessing as mp

    writers, n_batches = 4, 15
    ctx = mp.get_context("spawn")
    start_at = time.time() + 3.0  # after the spawned interpreters have imported
    procs = [ctx.Process(target=_write_batches, args=(str(tmp_path), w, n_batches, start_at))
             for w in range(writers)]
    for p in procs:
        p.start()
    seen = []
    while any(p.is_alive() for p in procs):
        if results.has_rows(tmp_path, "trials"):
            got = results.query(tmp_path, "SELECT (SELECT count(*) FROM trials) AS n, "
                                "(SELECT count(*) FROM trades) AS m")
            seen.append((int(got["n"].iloc[0]), int(got["m"].iloc[0])))
        time.sleep(0.05)
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert seen and all(n % 4 == 0 and m % 4 == 0 for n, m in seen)
    rows = results.query(tmp_path, "SELECT study, trial, count(*) AS k FROM trials GROUP BY ALL")
    assert len(rows) == writers * n_batches * 4 and (rows["k"] == 1).all()
    trades = results.query(tmp_path, "SELECT study, trial, count(*) AS k FROM trades GROUP BY ALL")
    assert len(trades) == len(rows) and (trades["k"] == 1).all()
    files = list((tmp_path / "trials").iterdir()) + list((tmp_path / "trades").iterdir())
    assert len(files) == 2 * writers * n_batches and all(f.suffix == ".parquet" for f in files)
