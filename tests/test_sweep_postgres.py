"""One study shared by two `sweep run` processes through PostgreSQL (Optuna's RDB storage), as
two machines would share it. The test starts its own server on 127.0.0.1 and skips with the
reason when no PostgreSQL server binaries can be found."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import _sweep_helpers as h
import optuna
import pytest
from optuna.trial import TrialState

from sweep import results
from sweep.calibrate import Plant, write_market


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(cands[-1]).parent if cands else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb/pg_ctl on PATH or in "
                    "/usr/lib/postgresql/*/bin); .ci/run installs the `postgresql` package")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="sweep_pg_"))
    if os.geteuid() == 0:  # the server refuses to run as root: run it as `postgres`
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server as")
        if not shutil.which("runuser"):
            pytest.skip("running as root without `runuser` to start the server as `postgres`")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    data, log = root / "data", root / "server.log"

    def run(*cmd: str) -> None:
        subprocess.run(as_user + list(cmd), check=True, capture_output=True, text=True, timeout=120)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start a PostgreSQL server: {getattr(exc, 'stderr', exc)!s:.300}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        try:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(root, ignore_errors=True)


def two_machines(tmp_path: Path, postgres: str, study: str, results_of) -> tuple[int, list[str]]:
    """Two `sweep run` workers on one PostgreSQL study, each started in its own working folder
    (two machines), `results_of(folder)` as its --results; returns (trials asked, stdouts).
    The market has a planted edge at the hour searched, so trials score and promote judges."""
    dataset = write_market(tmp_path / "data", 4, 3000, seed=2, plant=Plant(15, 1, 12.0))
    n = 12
    procs = []
    for i in range(2):
        home = tmp_path / f"machine{i}"
        home.mkdir()
        args = ["run", "--strategy", "hour_of_day", "--fix", "hour=15,side=long", "--trials", str(n),
                "--data", dataset, "--folds", "2", "--results", results_of(home), "--study", study,
                "--sampler", "tpe", "--batch", "2", "--storage", postgres, "--seed", str(i)]
        procs.append(subprocess.Popen(h.cli_cmd(*args), cwd=home, env=h.env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert h.last_line(out).startswith("best_score: ")
    return n, [o for o, _ in outs]


def finished_in(postgres: str, study: str) -> set[int]:
    trials = optuna.load_study(study_name=study, storage=postgres).get_trials(deepcopy=False)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    return {t.number for t in trials if t.state == TrialState.COMPLETE}


def test_one_shared_results_folder_holds_every_trial_once_and_n_counts_them(tmp_path, postgres):
    from sweep.promote import run_promotion

    shared = tmp_path / "shared-results"  # the folder every machine mounts
    n, outs = two_machines(tmp_path, postgres, "pg-shared", lambda home: shared)
    complete = finished_in(postgres, "pg-shared")
    assert len(complete) == n
    trials = optuna.load_study(study_name="pg-shared", storage=postgres).get_trials(deepcopy=False)
    assert len({t.user_attrs["worker"] for t in trials if t.number in complete}) == 2
    rows = results.query(shared, "SELECT trial FROM trials WHERE study = 'pg-shared'")
    assert len(rows) == n and set(rows["trial"]) == complete  # no duplicate, none lost
    assert len(results.query(shared, "SELECT DISTINCT run_id FROM trials")) == 2
    assert any(f"now holds {n} finished trial(s)" in o and f"{n} of them with rows there" in o for o in outs)
    report = run_promotion(shared, out=tmp_path / "c.json", strategy="hour_of_day")
    assert report.studies["hour_of_day"].n_trials == n  # N: every trial of the study, from both machines
    assert [(c.study, c.finished, c.rows) for c in report.coverage] == [("pg-shared", n, n)]


def test_workers_with_their_own_results_are_refused_with_both_counts(tmp_path, postgres):
    n, outs = two_machines(tmp_path, postgres, "pg-split", lambda home: "results")  # each its own ./results
    assert len(finished_in(postgres, "pg-split")) == n
    local = [tmp_path / f"machine{i}" / "results" for i in range(2)]
    here = [len(results.query(r, "SELECT DISTINCT trial FROM trials WHERE study = 'pg-split'")) for r in local]
    assert sum(here) == n and all(0 < k < n for k in here)  # each trial in one folder: split
    assert all("promote refuses to count part of a study" in o for o in outs)
    out = tmp_path / "machine0" / "live_candidates.json"
    for cmd in (["promote", "--results", local[0], "--out", out], ["leaderboard", "--results", local[0]]):
        r = h.run_cli(*cmd, check=False)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
        assert f"holds {n} finished trials" in r.stderr and f"rows for only {here[0]} of them" in r.stderr
        assert "point --results at the shared folder" in r.stderr
    assert not out.exists()
