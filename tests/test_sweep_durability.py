"""Durability of `sweep run`: several workers on one journal study, SIGINT and SIGKILL then
resume, the crash windows between writing rows and telling Optuna, and reproducibility."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import _sweep_helpers as h
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from harness.errors import HarnessError
from sweep import results
from sweep.optuna_trials import count_evaluated, open_study, reconcile
from sweep.storage import open_storage, storage_url
from sweep.study import StudyConfig, prepare, run_study
from sweep.trial_rows import TrialResult, write_trials


@pytest.fixture(scope="module", autouse=True)
def strategy():
    h.install()
    yield
    h.uninstall()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return h.write_dataset(tmp_path_factory.mktemp("data") / "hl", n_bars=1600, n_coins=3)


def rows(res) -> pd.DataFrame:
    return results.query(res, "SELECT study, trial, score FROM trials ORDER BY trial")


def optuna_trials(res, study: str) -> list:
    s = optuna.load_study(study_name=study, storage=open_storage(storage_url(None, res, study)))
    return s.get_trials(deepcopy=False)


def assert_consistent(res, study: str, n: int) -> None:
    """n rows, no duplicate, and exactly the trials Optuna holds as finished."""
    df = rows(res)
    assert len(df) == n, f"{len(df)} rows, expected {n}"
    assert not df.duplicated(["study", "trial"]).any(), "a trial was recorded twice"
    complete = {t.number for t in optuna_trials(res, study) if t.state == TrialState.COMPLETE}
    assert set(df["trial"]) == complete, "rows and Optuna disagree on which trials finished"
    assert not [t for t in optuna_trials(res, study) if t.state == TrialState.RUNNING]


def cli_args(dataset, res, study, n, *extra):
    return ["run", "--strategy", h.NAME, "--trials", str(n), "--data", dataset, "--folds", "2",
            "--results", res, "--study", study, "--sampler", "random", *extra]


def test_two_workers_share_one_journal_study(tmp_path, dataset):
    res = tmp_path / "r"
    # a slow strategy (0.25 s a trial), so the spawned worker starts before the in-process
    # worker could finish the 20 trials alone
    p = h.run_cli(*cli_args(dataset, res, "shared", 20, "--jobs", "2", "--batch", "1",
                            "--fix", "pause=0.25"), timeout=240)
    assert h.last_line(p.stdout).startswith("best_score: ")
    assert_consistent(res, "shared", 20)
    workers = {t.user_attrs.get("worker") for t in optuna_trials(res, "shared")
               if t.state == TrialState.COMPLETE}
    assert len(workers) == 2, "both worker processes must have evaluated trials"


def _wait_rows(res, at_least: int, proc, timeout: float = 120) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"run ended before it could be killed:\n{proc.stderr.read()[-2000:]}")
        if results.has_rows(res, "trials") and len(rows(res)) >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError("no rows appeared in time")


def _start(args):
    return subprocess.Popen(h.cli_cmd(*args), cwd=h.ROOT, env=h.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _kill_after(res, proc, at_least: int, sig: int) -> tuple[str, str]:
    try:
        _wait_rows(res, at_least, proc)
        os.kill(proc.pid, sig)
        return proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigint_then_sigkill_then_resume_loses_and_doubles_nothing(tmp_path, dataset):
    """Interrupted (SIGINT: clean exit 130), resumed and killed (SIGKILL), resumed to the end
    with the same --study: every trial finished before a kill is kept, none is counted twice."""
    res = tmp_path / "r"
    n = 16
    args = cli_args(dataset, res, "killme", n, "--batch", "1")
    proc = _start(args)
    out, err = _kill_after(res, proc, 3, signal.SIGINT)
    assert proc.returncode == 130, err[-2000:]
    assert h.last_line(out).startswith("best_score: ")
    first = rows(res)
    assert 3 <= len(first) < n and not first.duplicated(["study", "trial"]).any()
    assert_consistent(res, "killme", len(first))  # a clean interrupt leaves nothing RUNNING

    proc = _start(args)
    _kill_after(res, proc, len(first) + 3, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    second = rows(res)
    assert len(second) < n and not second.duplicated(["study", "trial"]).any()

    h.run_cli(*args, timeout=180)
    assert_consistent(res, "killme", n)
    final = rows(res).set_index("trial")
    for r in second.itertuples():  # what finished before the kills is kept, unchanged
        assert final.loc[r.trial, "score"] == r.score


def test_reconcile_closes_both_crash_windows(tmp_path, market, monkeypatch):
    """Killed after writing rows but before telling: told from the rows (its constraints were
    set before the rows). Killed while evaluating: failed (never counted). A live worker's
    trial is left alone; a trial without owner is failed only once it is old."""
    import sweep.optuna_trials as ot

    cfg = StudyConfig(strategy=h.NAME, trials=10, sampler="random", folds=2, results=tmp_path,
                      study="windows", batch=1)
    ctx = prepare(cfg, "run0", market=market)
    study = open_study(ctx)
    dead = "deadhost-not-this-one:1:1.000"
    dead_here = f"{os.uname().nodename}:999999:1.000"
    written, lost, alive, remote = (study.ask(ctx.space.distributions) for _ in range(4))
    written.set_user_attr("worker", dead_here)
    lost.set_user_attr("worker", dead_here)
    from sweep.optuna_trials import worker_id
    from sweep.workers import evaluate_params

    alive.set_user_attr("worker", worker_id())
    remote.set_user_attr("worker", dead)
    (ev, _), = evaluate_params(ctx, [ctx.space.params(written.params)])
    rec = TrialResult("windows", written.number, {}, ev)
    assert ot.constrain(written, rec.violations)  # run_batch's order: constraints, rows, tell
    write_trials(tmp_path, [rec], ctx.prov, "run", h.NAME)
    orphan = study.ask()  # a hard kill between the ask and the owner stamp
    out = reconcile(study, tmp_path)
    assert out == {"told": 1, "failed": 1}
    monkeypatch.setattr(ot, "ORPHAN_GRACE_S", -1.0)
    assert reconcile(study, tmp_path) == {"told": 0, "failed": 1}
    assert study.get_trials(deepcopy=False)[orphan.number].state == TrialState.FAIL
    by = {t.number: t for t in study.get_trials(deepcopy=False)}
    assert by[written.number].state == TrialState.COMPLETE
    assert by[written.number].value == rec.objective  # the score, or its unrejected score
    assert list(by[written.number].constraints.values()) == rec.violations
    assert by[lost.number].state == TrialState.FAIL
    assert by[alive.number].state == TrialState.RUNNING  # its owner (this process) lives
    assert by[remote.number].state == TrialState.RUNNING  # another host: cannot tell, left
    assert count_evaluated(study) == 3  # written + the two running ones


def test_budget_is_exact_when_workers_race(tmp_path, market, monkeypatch):
    """Worker b read the count before worker a asked (a race): b's asks beyond the budget are
    failed unevaluated and marked surplus, so the study never holds more than --trials."""
    import sweep.workers as st

    cfg = StudyConfig(strategy=h.NAME, trials=5, sampler="random", folds=2, results=tmp_path,
                      study="race")
    ctx = prepare(cfg, "r", market=market)
    a, b = open_study(ctx, 0), open_study(ctx, 1)
    ta = st.ask_batch(a, ctx, 4, "w:a")
    monkeypatch.setattr(st, "count_evaluated", lambda study: 0)  # b's stale view
    tb = st.ask_batch(b, ctx, 4, "w:b")
    monkeypatch.undo()
    assert len(ta) == 4 and len(tb) == 1
    trials = b.get_trials(deepcopy=False)
    surplus = [t for t in trials if t.user_attrs.get("surplus")]
    assert len(surplus) == 3 and all(t.state == TrialState.FAIL for t in surplus)
    assert count_evaluated(a) == 5


def test_same_seed_same_results(tmp_path, market):
    def one(folder):
        run_study(StudyConfig(strategy=h.NAME, trials=10, sampler="tpe", folds=2, seed=7, batch=2,
                              results=folder), market=market)
        return results.query(folder, "SELECT trial, params, score, worst_fold, base_n_trades "
                                     "FROM trials ORDER BY trial")

    a, b = one(tmp_path / "a"), one(tmp_path / "b")
    pd.testing.assert_frame_equal(a, b)
    c = run_study(StudyConfig(strategy=h.NAME, trials=10, sampler="tpe", folds=2, seed=8, batch=2,
                              results=tmp_path / "c"), market=market)
    other = results.query(tmp_path / "c", "SELECT params FROM trials ORDER BY trial")
    assert c.done_now == 10 and other["params"].tolist() != a["params"].tolist()


def test_signal_inside_the_commit_block_is_held_until_it_ends():
    import sweep.workers as st

    steps = []
    with pytest.raises(KeyboardInterrupt):
        with st.signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            steps.append("rows written and told")
    assert steps == ["rows written and told"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_torn_journal_tail_is_moved_aside_and_the_study_resumes(tmp_path, market, capsys):
    """Issue 15 item 5: a journal whose last line was cut (power loss inside a write) made every
    later run fail with a JSONDecodeError; now the partial line is moved aside with one warning
    and the study resumes with every trial it held."""
    cfg = StudyConfig(strategy=h.NAME, trials=4, sampler="random", folds=2, results=tmp_path,
                      study="torn", batch=2)
    run_study(cfg, market=market)
    journal = tmp_path / "studies" / "torn.journal"
    intact = journal.read_bytes()
    cut = b'{"op_code":4,"worker_id":"x","trial_id":9,"state":1,"val'
    journal.write_bytes(intact + cut)
    capsys.readouterr()
    again = run_study(StudyConfig(**{**cfg.__dict__, "trials": 6}), market=market)
    warning = [ln for ln in capsys.readouterr().err.splitlines() if "cut" in ln]
    assert len(warning) == 1 and warning[0].startswith(f"warning: {journal}")
    assert again.done_before == 4 and again.done_now == 2
    aside = list(journal.parent.glob("torn.journal.torn-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == cut
    assert journal.read_bytes().startswith(intact) and journal.read_bytes().endswith(b"\n")
    assert_consistent(tmp_path, "torn", 6)


def test_a_journal_corrupt_inside_is_refused_with_the_fix(tmp_path, market):
    cfg = StudyConfig(strategy=h.NAME, trials=2, sampler="random", folds=2, results=tmp_path,
                      study="bad", batch=2)
    run_study(cfg, market=market)
    journal = tmp_path / "studies" / "bad.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:3] + [b'{"op_code": 4, "cut\n'] + lines[3:]))
    before = journal.read_bytes()
    with pytest.raises(HarnessError, match=r"corrupt at line 4 .* new --study"):
        run_study(cfg, market=market)
    assert journal.read_bytes() == before


def test_a_storage_server_that_never_answers_is_refused_within_the_timeout(tmp_path, dataset):
    """Issue 15 item 3: a server that accepts TCP but never answers hung `sweep run`; now the
    connect times out (--storage-timeout) with one line naming host and port, password masked."""
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])  # accepted, never answered
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        with pytest.raises(HarnessError, match=f"127.0.0.1:{port} did not answer within 2 s"):
            open_storage(f"postgresql+psycopg://ann:hunter2@127.0.0.1:{port}/db", timeout=2)
        r = h.invoke(*cli_args(dataset, tmp_path, "hang", 2, "--storage",
                               f"postgresql://ann:hunter2@127.0.0.1:{port}/db", "--storage-timeout", "2"))
        line = h.one_error_line(r)
        assert f"127.0.0.1:{port}" in line and "--storage-timeout" in line and "hunter2" not in line
        assert held, "the fake server must have accepted the connection"
    finally:
        stop.set()
        t.join(timeout=5)
        for c in held:
            c.close()
        srv.close()
