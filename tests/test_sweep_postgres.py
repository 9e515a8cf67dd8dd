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


def test_two_processes_share_one_study(tmp_path, postgres):
    dataset = h.write_dataset(tmp_path / "data", n_bars=1600, n_coins=3)
    res = tmp_path / "r"  # both "machines" write rows here; the study lives in PostgreSQL
    n = 12
    args = ["run", "--strategy", h.NAME, "--trials", str(n), "--data", dataset, "--folds", "2",
            "--results", res, "--study", "pg-shared", "--sampler", "tpe", "--batch", "2",
            "--storage", postgres]
    procs = [subprocess.Popen(h.cli_cmd(*args, "--seed", str(i)), cwd=h.ROOT, env=h.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert h.last_line(out).startswith("best_score: ")
    study = optuna.load_study(study_name="pg-shared", storage=postgres)
    trials = study.get_trials(deepcopy=False)
    complete = {t.number for t in trials if t.state == TrialState.COMPLETE}
    assert len(complete) == n
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert len({t.user_attrs["worker"] for t in trials if t.number in complete}) == 2
    rows = results.query(res, "SELECT trial FROM trials WHERE study = 'pg-shared'")
    assert len(rows) == n and set(rows["trial"]) == complete  # no duplicate, none lost
    run_ids = results.query(res, "SELECT DISTINCT run_id FROM trials")
    assert len(run_ids) == 2
