"""The workers of a study and their batches: ask a batch within the budget, evaluate it in one
kernel call, write its rows, then tell Optuna (the order durability rests on, sweep/study.py).
`--jobs J` runs worker 0 in the coordinating process and J - 1 spawned workers on one storage.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from harness.errors import HarnessError
from harness.evaluate import evaluate_batch
from strategies.indicator_cache import CACHE
from sweep.optuna_trials import (
    ask_owned,
    constrain,
    count_evaluated,
    counted,
    open_study,
    worker_id,
)
from sweep.storage import storage_url, sync_journal
from sweep.trial_rows import TrialResult, regime_models, write_trials

if TYPE_CHECKING:
    from strategies.base import RegisteredStrategy
    from sweep.study import Context, StudyConfig

Report = Callable[[dict[str, Any]], None]


@contextmanager
def signals_deferred():
    """SIGINT/SIGTERM arriving inside the block are handled when it ends (main thread only).

    Python handlers are swapped rather than the OS mask: a signal that already tripped Python's
    flag is then also caught by the deferring handler.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    old = {s: signal.signal(s, lambda signum, frame: held.append(signum))
           for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if held:
            handler = old[held[0]]
            if callable(handler):
                handler(held[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(held[0])


def ask_batch(study: optuna.Study, ctx: Context, size: int, wid: str) -> list[optuna.Trial]:
    """Up to `size` new trials within the budget; surplus asks (races) are failed unevaluated.

    Every asked trial is ranked among the study's counted trials and one beyond --trials is
    failed, so several workers (or machines) never overshoot."""
    target = ctx.cfg.trials
    if target is not None:
        size = min(size, target - count_evaluated(study))
    if size <= 0:
        return []
    asked: list[optuna.Trial] = []
    try:
        with signals_deferred():
            asked = [ask_owned(study, ctx.space.distributions, wid) for _ in range(size)]
    except BaseException:  # an interrupt held during the asks: fail them, never leave RUNNING
        for t in asked:
            study.tell(t, state=TrialState.FAIL, skip_if_finished=True)
        raise
    sync_journal(storage_url(ctx.cfg.storage, ctx.cfg.results, ctx.study_name))
    if target is None:
        return asked
    ranked = sorted(t.number for t in study.get_trials(deepcopy=False) if counted(t))
    rank = {n: i for i, n in enumerate(ranked)}
    keep = []
    for t in asked:
        if rank.get(t.number, target) < target:
            keep.append(t)
        else:
            t.set_user_attr("surplus", True)
            study.tell(t, state=TrialState.FAIL, skip_if_finished=True)
    return keep


def evaluate_params(ctx: Context, params: list[Any]) -> list[tuple[Any, str | None]]:
    """(Evaluation, None) per set, or (None, error) for a set the strategy cannot evaluate."""
    def run(ps: list[Any]) -> list[Any]:
        return evaluate_batch(ctx.strategy, ps, ctx.market, friction=ctx.cfg.friction,
                              folds=ctx.folds, mode=ctx.cfg.mode, record_trades=True,
                              detail=ctx.detail)

    try:
        return [(e, None) for e in run(params)]
    except Exception as exc:  # isolate the failing set(s); a strategy bug must not kill the study
        if len(params) == 1:
            return [(None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")]
    return [evaluate_params(ctx, [p])[0] for p in params]


def run_batch(study: optuna.Study, ctx: Context, trials: list[optuna.Trial]) -> list[TrialResult]:
    """Evaluate, constrain, write the rows, then tell Optuna (the order durability rests on).

    Once evaluated, the rest finishes before any signal is handled; an interrupt before that
    fails the batch in flight (worker_loop).
    """
    t0 = time.perf_counter()
    params = [ctx.space.params(t.params) for t in trials]
    outcomes = evaluate_params(ctx, params)
    dt = (time.perf_counter() - t0) / max(1, len(trials))
    regimes = regime_models(params, [ev is not None for ev, _ in outcomes], ctx.market, ctx.folds)
    batch = [TrialResult(ctx.study_name, t.number, asdict(p), ev, err, dt, regime_model=rm)
             for t, p, (ev, err), rm in zip(trials, params, outcomes, regimes, strict=True)]
    multi = len(study.directions) > 1
    with signals_deferred():
        live = [r.evaluation is None or constrain(t, r.violations)
                for t, r in zip(trials, batch, strict=True)]
        sync_journal(storage_url(ctx.cfg.storage, ctx.cfg.results, ctx.study_name))
        write_trials(ctx.cfg.results, batch, ctx.prov, "run", ctx.strategy.name)
        for t, r, ok in zip(trials, batch, live, strict=True):
            if r.evaluation is None:
                t.set_user_attr("recorded", True)
                study.tell(t, state=TrialState.FAIL, skip_if_finished=True)
            elif ok:
                study.tell(t, [r.objective, r.worst_fold] if multi else r.objective,
                           skip_if_finished=True)
    return batch


def worker_loop(ctx: Context, study: optuna.Study, report: Report, stop: Callable[[], bool],
                deadline: float | None) -> int:
    """Ask, evaluate, write, tell until the budget, the deadline or a stop; returns trials done."""
    wid = worker_id()
    done = ok = 0
    while not stop() and (deadline is None or time.monotonic() < deadline):
        trials: list[optuna.Trial] = []
        try:
            trials = ask_batch(study, ctx, ctx.cfg.batch_size, wid)
            if not trials:
                break
            batch = run_batch(study, ctx, trials)
        except BaseException:
            for t in trials:  # finished ones are skipped; the rest were never recorded
                study.tell(t, state=TrialState.FAIL, skip_if_finished=True)
            raise
        done += len(batch)
        good = [r.score for r in batch if r.evaluation is not None]
        ok += len(good)
        finite = [s for s in good if math.isfinite(s)]
        report({"type": "batch", "n": len(batch), "best": max(finite) if finite else None,
                "pid": os.getpid(), "indicator_cache": CACHE.stats()})
        if ok == 0:
            errors = sorted({r.error for r in batch if r.error})
            raise HarnessError(f"every trial of the first batch failed: {errors[0] if errors else '?'}")
    return done


def share_cores(jobs: int) -> None:
    """J workers on C cores: C // J numba threads each, so kernels do not oversubscribe."""
    import numba

    numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS, (os.cpu_count() or 1) // jobs)))


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _worker_main(cfg: StudyConfig, strategy: RegisteredStrategy, run_id: str, worker: int, q: Any,
                 stop_ev: Any, deadline_s: float | None, parent: int) -> None:
    """Entry point of a `--jobs` worker process (spawned)."""
    from sweep.study import prepare

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator stops workers with SIGTERM
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        share_cores(cfg.jobs)
        ctx = prepare(cfg, run_id, strategy=strategy)
        study = open_study(ctx, worker, create=False)
        deadline = None if deadline_s is None else time.monotonic() + deadline_s
        worker_loop(ctx, study, q.put, lambda: stop_ev.is_set() or os.getppid() != parent, deadline)
    except KeyboardInterrupt:
        pass
    except HarnessError as exc:
        q.put({"type": "error", "message": str(exc)})
        sys.exit(2)
    except Exception as exc:
        q.put({"type": "error", "message": f"worker {worker}: {type(exc).__name__}: {exc}"})
        sys.exit(1)


def run_workers(ctx: Context, study: optuna.Study, report: Report, deadline: float | None) -> None:
    """Worker 0 runs here (the market is already loaded); workers 1..J-1 are spawned processes
    on the same study, reporting through a queue that a thread drains."""
    cfg = replace(ctx.cfg, study=ctx.study_name)  # resolved once: workers must not re-derive it
    mpc = mp.get_context("spawn")
    q = mpc.Queue()
    stop_ev = mpc.Event()
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    procs = [mpc.Process(target=_worker_main, name=f"sweep-worker-{i}",
                         args=(cfg, ctx.strategy, ctx.prov.run_id, i, q, stop_ev, timeout, os.getpid()))
             for i in range(1, cfg.jobs)]
    for p in procs:
        p.start()
    share_cores(cfg.jobs)
    lock = threading.Lock()
    errors: list[str] = []
    draining = threading.Event()

    def locked(event: dict[str, Any]) -> None:
        with lock:
            report(event)

    def drain() -> None:
        while not draining.is_set() or not q.empty():
            try:
                event = q.get(timeout=0.1)
            except queue.Empty:
                continue
            if event.get("type") == "error":
                errors.append(event["message"])
                stop_ev.set()
            else:
                locked(event)

    drainer = threading.Thread(target=drain, name="sweep-progress", daemon=True)
    drainer.start()
    try:
        worker_loop(ctx, study, locked, stop_ev.is_set, deadline)
        while any(p.is_alive() for p in procs):
            time.sleep(0.1)
    except BaseException:
        stop_ev.set()
        for p in procs:
            if p.is_alive() and p.pid:
                os.kill(p.pid, signal.SIGTERM)
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
        raise
    finally:
        draining.set()
        drainer.join(timeout=5)
    for p in procs:
        p.join()
    if errors:
        raise HarnessError(errors[0])
    bad = [p.exitcode for p in procs if p.exitcode not in (0, None)]
    if bad:
        raise HarnessError(f"a worker process exited with code {bad[0]}")
