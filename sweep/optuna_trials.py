"""The Optuna side of a study, through Optuna's public API (one exception: `ask_owned`):
samplers, opening a study, trials owned by the worker that asked them, the count --trials
budgets, constraints, and the reconciliation of trials a killed worker left RUNNING.
"""

from __future__ import annotations

import math
import os
import socket
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import optuna
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from harness.cli import redact
from harness.errors import ConfigError
from sweep import results
from sweep.storage import open_storage, storage_url
from sweep.study_identity import check_identity
from sweep.trial_rows import CONSTRAINTS

if TYPE_CHECKING:
    from sweep.study import Context

SAMPLERS = ("tpe", "cmaes", "random", "nsga2")
LIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
ORPHAN_GRACE_S = 600.0  # a RUNNING trial this old with no owner was asked by a killed worker


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """TPE is multivariate: one joint model per ask instead of one per parameter (an ask cost
    ~300 ms of CPU over 500 trials of momentum's 18 parameters, ~45 ms multivariate), and it
    models how parameters act together. Within a batch (asked before any is told) the constant
    liar counts the batch's running trials as bad, so its members spread out instead of
    crowding the current optimum: a batch explores more and exploits the latest results less."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)


def directions(sampler: str) -> list[str]:
    """nsga2 trades the walk-forward score against the worst fold; the others maximize score."""
    return ["maximize", "maximize"] if sampler == "nsga2" else ["maximize"]


def worker_seed(seed: int, worker: int, n_existing: int) -> int:
    """Distinct streams per worker and per resume, so no two workers replay one sequence."""
    return int(np.random.SeedSequence([seed, worker, n_existing]).generate_state(1)[0])


def open_study(ctx: Context, worker: int = 0, create: bool = True) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage_url(ctx.cfg.storage, ctx.cfg.results, ctx.study_name)
    storage = open_storage(url, ctx.cfg.storage_timeout)
    dirs = directions(ctx.cfg.sampler)
    try:
        if create:
            study = optuna.create_study(storage=storage, study_name=ctx.study_name,
                                        directions=dirs, load_if_exists=True)
        else:
            study = optuna.load_study(study_name=ctx.study_name, storage=storage)
    except ValueError as exc:
        raise ConfigError(f"study {ctx.study_name}: {exc}") from None
    if [d.name.lower() for d in study.directions] != dirs:
        raise ConfigError(f"study {ctx.study_name} has {len(study.directions)} objective(s); "
                          f"--sampler {ctx.cfg.sampler} needs {len(dirs)}: use another --study")
    check_identity(study, ctx)
    n_existing = len(study.get_trials(deepcopy=False))
    study.sampler = make_sampler(ctx.cfg.sampler, worker_seed(ctx.cfg.seed, worker, n_existing))
    return study


# ---------------------------------------------------------------------------------- ownership

def worker_id() -> str:
    import psutil

    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{psutil.Process(pid).create_time():.3f}"


def owner_dead(owner: str | None) -> bool:
    """True only when the owner ran on this host and that process is gone."""
    import psutil

    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid, _, created = rest.partition(":")
    if host != socket.gethostname():
        return False
    try:
        return f"{psutil.Process(int(pid)).create_time():.3f}" != created
    except (psutil.NoSuchProcess, ValueError):
        return True


def ask_owned(study: optuna.Study, distributions: dict, owner: str) -> optuna.Trial:
    """A new RUNNING trial created WITH its owner in one storage write, then sampled.

    `study.ask()` creates the trial first and runs the sampler (multivariate TPE: tens of ms)
    before an owner can be set: a SIGKILL in that window left a RUNNING trial nobody could
    attribute, counted against --trials until ORPHAN_GRACE_S passed (the durability test caught
    it). So the trial is created from a template through the study's storage, the one place this
    module goes below Optuna's public API."""
    template = optuna.trial.FrozenTrial(
        number=-1, state=TrialState.RUNNING, value=None, datetime_start=datetime.now(UTC),
        datetime_complete=None, params={}, distributions={}, user_attrs={"worker": owner},
        system_attrs={}, intermediate_values={}, trial_id=-1)
    trial = optuna.Trial(study, study._storage.create_new_trial(study._study_id, template))
    for name, d in distributions.items():
        if isinstance(d, IntDistribution):
            trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
        elif isinstance(d, FloatDistribution):
            trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)
        else:
            trial.suggest_categorical(name, d.choices)
    return trial


# ---------------------------------------------------------------------------------- counting

def counted(t: optuna.trial.FrozenTrial) -> bool:
    return t.state in LIVE or (t.state == TrialState.FAIL and bool(t.user_attrs.get("recorded")))


def count_evaluated(study: optuna.Study) -> int:
    """Trials that hold (or will hold) rows: the number --trials counts."""
    return sum(1 for t in study.get_trials(deepcopy=False) if counted(t))


def finished_numbers(study: optuna.Study) -> set[int]:
    """Trials told finished after their rows were written (run_batch's order): every one of them
    has rows in the results folder its worker wrote to, whichever machine that was."""
    return {t.number for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and t.user_attrs.get("recorded"))}


def load_finished(url: str, study_name: str) -> set[int]:
    """`finished_numbers` of a study in the storage at `url` (a journal path or an RDB URL)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return finished_numbers(optuna.load_study(study_name=study_name, storage=open_storage(url)))
    except KeyError:
        raise ConfigError(f"storage {redact(url)} holds no study {study_name}") from None


def constrain(trial: optuna.Trial, violation: list[float]) -> bool:
    """Record a scored trial's hard rejections as Optuna constraints (<= 0 passes), so TPE and
    NSGA-II rank a rejected trial below every passing one, by how far it is from passing.
    Set BEFORE the trial's rows are written, so a trial with rows always carries them. False
    when another process already finished the trial (a reconcile racing its owner)."""
    try:
        for key, v in zip(CONSTRAINTS, violation, strict=True):
            trial.set_constraint(key, v)
    except UpdateFinishedTrialError:
        return False
    return True


def reconcile(study: optuna.Study, results_dir: Path) -> dict[str, int]:
    """Finish RUNNING trials left by dead workers: told from their rows, or failed (owner dead,
    or no owner at all and older than ORPHAN_GRACE_S)."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    out = {"told": 0, "failed": 0}
    if not running:
        return out
    rows = {}
    if results.has_rows(results_dir, "trials"):
        df = results.query(results_dir, "SELECT trial, status, objective, worst_fold FROM "
                           "trials WHERE study = ? AND command = 'run'", [study.study_name])
        rows = {int(r.trial): r for r in df.itertuples()}
    multi = len(study.directions) > 1
    now = datetime.now(UTC)
    for t in running:
        row = rows.get(t.number)
        owner = t.user_attrs.get("worker")
        if row is not None:
            if row.status == "failed" or math.isnan(row.objective):
                study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            else:
                study.tell(t.number, [row.objective, row.worst_fold] if multi else row.objective,
                           skip_if_finished=True)
            out["told"] += 1
        elif owner_dead(owner) or (not owner and t.datetime_start is not None and (
                now - t.datetime_start.astimezone(UTC)).total_seconds() > ORPHAN_GRACE_S):
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            out["failed"] += 1
    return out
