"""An Optuna study over a strategy's Params, scored by the frozen harness (`sweep run`).

Durability rests on one ordering: a batch's rows are written to the results tables BEFORE its
trials are told to Optuna. So a trial Optuna calls finished always has its rows, and a crash
leaves only RUNNING trials, which the next start reconciles (rows found: told with the recorded
score; owner process dead and no rows: failed). `--trials N` is the number of evaluated trials
the study holds; every asked trial is ranked among the study's live trials and one beyond N is
failed unevaluated, so several workers (or machines) never overshoot.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import multiprocessing as mp
import os
import queue
import re
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from harness.cli import redact
from harness.errors import ConfigError, HarnessError
from harness.evaluate import evaluate_batch
from harness.folds import Folds, FoldSpec
from harness.friction import DEFAULT_FRICTION, get_friction
from harness.manifest import harness_hash
from harness.market import Market
from strategies.base import RegisteredStrategy, get_strategy
from sweep import results
from sweep.space import SearchSpace, search_space
from sweep.storage import DEFAULT_TIMEOUT, open_storage, storage_url, sync_journal
from sweep.trial_rows import CONSTRAINTS, Provenance, TrialResult, violations, write_trials

SAMPLERS = ("tpe", "cmaes", "random", "nsga2")
DEFAULT_TRIALS = 1000  # `sweep run` with no flags: under a minute on the embedded default (2 cores)
BATCH = {"random": 32, "tpe": 16, "cmaes": 8, "nsga2": 16}  # trials per kernel call
LIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,120}$")
ROOT = Path(__file__).resolve().parents[1]

Report = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class StudyConfig:
    strategy: str = "momentum"
    trials: int | None = DEFAULT_TRIALS  # evaluated trials the study should hold; None: until timeout
    timeout: float | None = None  # seconds for this invocation
    sampler: str = "tpe"
    data: str | None = None
    interval: str | None = None  # None: the strategy's own interval
    coins: tuple[str, ...] | None = None
    friction: str = DEFAULT_FRICTION
    folds: int = 4
    train: str | None = None  # fold lengths: bar counts or durations (harness.folds.FoldSpec)
    test: str | None = None
    purge: str = "24h"
    embargo: str = "24h"
    jobs: int = 1
    storage: str | None = None  # None: journal file under results/studies/
    storage_timeout: float = DEFAULT_TIMEOUT  # seconds to connect to an RDB storage
    study: str | None = None
    seed: int = 0
    results: Path = results.DEFAULT_RESULTS
    batch: int | None = None
    fixed: dict[str, Any] = field(default_factory=dict)
    mode: str = "live"
    argv: str = ""
    detail: str | None = None  # intrabar detail interval (e.g. "15m"), None: adverse first

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {self.sampler!r}: use one of {', '.join(SAMPLERS)}")
        if self.trials is None and self.timeout is None:
            raise ConfigError("give --trials N or --timeout SECONDS (or both)")
        if self.trials is not None and self.trials < 1:
            raise ConfigError(f"--trials must be >= 1, got {self.trials}")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"--timeout must be > 0 seconds, got {self.timeout}")
        if not self.storage_timeout > 0:
            raise ConfigError(f"--storage-timeout must be > 0 seconds, got {self.storage_timeout}")
        if self.jobs < 1:
            raise ConfigError(f"--jobs must be >= 1, got {self.jobs}")
        if self.batch is not None and self.batch < 1:
            raise ConfigError(f"--batch must be >= 1, got {self.batch}")
        if self.mode not in ("live", "shadow"):
            raise ConfigError(f"--mode must be live or shadow, got {self.mode!r}")
        if self.study is not None and not STUDY_NAME.match(self.study):
            raise ConfigError(f"study name {self.study!r}: use letters, digits and . _ : - (max 121)")

    @property
    def batch_size(self) -> int:
        return self.batch or BATCH[self.sampler]

    @property
    def fold_spec(self) -> FoldSpec:
        return FoldSpec(self.folds, self.train, self.test, self.purge, self.embargo)


@dataclass(frozen=True)
class Context:
    """Everything a worker needs, built identically in every process."""

    cfg: StudyConfig
    strategy: RegisteredStrategy
    market: Market
    folds: Folds
    space: SearchSpace
    prov: Provenance
    study_name: str
    code_hash: str
    friction_version: str
    locator: str  # results.data_locator: where promote finds this market again
    detail: Market | None = None  # the lower-interval bars of the same coins (cfg.detail)


def _strategy_files(module: str) -> list[Path]:
    """The strategy's module and every strategies.* module it imports, transitively."""
    import ast

    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen or not name.startswith("strategies"):
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, AttributeError, ValueError):  # `from pkg.mod import function`
            spec = None
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        path = Path(spec.origin)
        seen[name] = path
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                todo.append(node.module)
                todo += [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level:  # relative: resolve
                pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    pkg = pkg.rpartition(".")[0]
                base = f"{pkg}.{node.module}" if node.module else pkg
                todo.append(base)
                todo += [f"{base}.{a.name}" for a in node.names]
    return [seen[k] for k in sorted(seen)]


def code_hash(strategy: RegisteredStrategy | None = None) -> str:
    """What the research loop may edit: all of strategies/ and sweep/space.py, or with a strategy
    only what it runs (its strategies/ modules, found through their imports, and space.py)."""
    if strategy is None:
        files = [p for p in sorted((ROOT / "strategies").rglob("*.py")) if "__pycache__" not in p.parts]
    else:
        files = _strategy_files(strategy.generate_fn.__module__)
    h = hashlib.sha256()
    for p in files + [ROOT / "sweep" / "space.py"]:
        h.update(p.relative_to(ROOT).as_posix().encode() if p.is_relative_to(ROOT) else p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def load_data(data: str | None, interval: str, coins: tuple[str, ...] | None) -> Market:
    from harness.sources import load_market

    return load_market(data, interval=interval, coins=list(coins) if coins else None)


def prepare(cfg: StudyConfig, run_id: str, market: Market | None = None,
            strategy: RegisteredStrategy | None = None) -> Context:
    """Load and check everything once; `strategy` (else looked up by name) travels to workers
    by reference, so a strategy registered outside strategies/ works with --jobs too."""
    strategy = strategy or get_strategy(cfg.strategy)
    interval = cfg.interval or strategy.interval
    if market is None:
        market = load_data(cfg.data, interval, cfg.coins)
    detail = load_detail(cfg.data, cfg.detail, market) if cfg.detail else None
    folds = cfg.fold_spec.folds(interval)
    folds.split(market.n_bars)  # a clear error now rather than in every trial
    friction = get_friction(cfg.friction)
    space = search_space(strategy.name, strategy.params_cls, cfg.fixed)
    commit, _ = results.git_state()
    prov = Provenance(run_id, harness_hash(), market.fingerprint, friction.version, commit, cfg.seed)
    chash = code_hash(strategy)
    name = cfg.study or default_study_name(cfg, prov, folds, chash, interval)
    return Context(replace(cfg, interval=interval), strategy, market, folds, space, prov, name,
                   chash, friction.version, results.data_locator(cfg.data, market), detail)


def load_detail(data: str | None, interval: str, market: Market) -> Market:
    """The `interval` bars of the market's coins from the same data, for the intrabar walk;
    one clear error when the interval is not a lower divisor of the bars' or the data lacks it."""
    from harness.market import interval_seconds
    from harness.sources import load_market

    sub, base = interval_seconds(interval), market.bar_seconds
    if sub >= base or base % sub:
        raise ConfigError(f"--detail {interval} must be a lower interval that divides the "
                          f"{market.interval} bars: use e.g. --detail 15m on 1h bars")
    return load_market(data, interval=interval, coins=list(market.coins),
                       start=market.index[0], end=market.index[-1] + (market.index[1] - market.index[0]))


def default_study_name(cfg: StudyConfig, prov: Provenance, folds: Folds, chash: str,
                       interval: str) -> str:
    """Same command, code and data -> same study (so a rerun resumes); any change -> a new one."""
    key = [prov.harness_hash, prov.data_fingerprint, prov.sim_model_version, interval,
           asdict(folds), chash, cfg.fixed, cfg.mode] + ([cfg.detail] if cfg.detail else [])
    key = results.to_json(key)
    return f"{cfg.strategy}-{cfg.sampler}-s{cfg.seed}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
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


IDENTITY = ("strategy", "harness_hash", "data_fingerprint", "sim_model_version", "interval",
            "folds", "code_hash", "mode", "detail", "search_space")


def identity(ctx: Context) -> dict[str, Any]:
    return {"strategy": ctx.strategy.name, "harness_hash": ctx.prov.harness_hash,
            "data_fingerprint": ctx.prov.data_fingerprint,
            "sim_model_version": ctx.friction_version, "interval": ctx.cfg.interval,
            "folds": results.to_json(asdict(ctx.folds)), "code_hash": ctx.code_hash,
            "mode": ctx.cfg.mode, "detail": ctx.cfg.detail or "",
            "search_space": results.to_json(ctx.space.to_json())}


def _shown(key: str, value: Any) -> str:
    """An identity value as the refusal shows it; a search space as its fixed parameters."""
    if key != "search_space":
        return str(value)
    fixed = {k: v["fixed"] for k, v in json.loads(value).items() if "fixed" in v}
    return "--fix " + (",".join(f"{k}={v}" for k, v in sorted(fixed.items())) or "(none)")


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
    want = identity(ctx)
    have = study.user_attrs
    diff = [k for k in IDENTITY if k in have and have[k] != want[k]]
    if diff:
        raise ConfigError(
            f"study {ctx.study_name} was created with another {', '.join(diff)} "
            f"({'; '.join(f'{k}: {_shown(k, have[k])} -> {_shown(k, want[k])}' for k in diff)}); "
            "its trials are not comparable: use a new --study (or drop --study)"
        )
    for k in IDENTITY:  # another worker may be writing them right now: same values, no harm
        if k not in have:
            study.set_user_attr(k, want[k])
    n_existing = len(study.get_trials(deepcopy=False))
    study.sampler = make_sampler(ctx.cfg.sampler, worker_seed(ctx.cfg.seed, worker, n_existing))
    return study


# ---------------------------------------------------------------------------------- workers

def worker_id() -> str:
    import psutil

    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{psutil.Process(pid).create_time():.3f}"


def _owner_dead(owner: str | None) -> bool:
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


def _counted(t: optuna.trial.FrozenTrial) -> bool:
    return t.state in LIVE or (t.state == TrialState.FAIL and bool(t.user_attrs.get("recorded")))


def count_evaluated(study: optuna.Study) -> int:
    """Trials that hold (or will hold) rows: the number --trials counts."""
    return sum(1 for t in study.get_trials(deepcopy=False) if _counted(t))


def tell_scored(study: optuna.Study, trial: optuna.Trial, values: float | list[float],
                violation: list[float]) -> None:
    """Tell a scored trial, its hard rejections first as Optuna constraints (<= 0 passes) so TPE
    and NSGA-II rank a rejected trial below every passing one, by how far it is from passing.
    A trial another process already finished (a reconcile racing its owner) is left alone."""
    try:
        for key, v in zip(CONSTRAINTS, violation, strict=True):
            trial.set_constraint(key, v)
    except UpdateFinishedTrialError:
        return
    study.tell(trial, values, skip_if_finished=True)


def reconcile(study: optuna.Study, results_dir: Path) -> dict[str, int]:
    """Finish RUNNING trials left by dead workers: told from their rows, or failed."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    out = {"told": 0, "failed": 0}
    if not running:
        return out
    rows = {}
    if results.has_rows(results_dir, "trials"):
        df = results.query(results_dir, "SELECT trial, status, objective, worst_fold, "
                           "base_n_trades, base_annualized, stress_calmar FROM trials "
                           "WHERE study = ? AND command = 'run'", [study.study_name])
        rows = {int(r.trial): r for r in df.itertuples()}
    multi = len(study.directions) > 1
    for t in running:
        row = rows.get(t.number)
        if row is not None:
            if row.status == "failed" or math.isnan(row.objective):
                study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            else:
                tell_scored(study, optuna.Trial(study, t._trial_id),
                            [row.objective, row.worst_fold] if multi else row.objective,
                            violations(row.base_n_trades, row.base_annualized, row.stress_calmar))
            out["told"] += 1
        elif _owner_dead(t.user_attrs.get("worker")):
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            out["failed"] += 1
    return out


def _ask_owned(study: optuna.Study, distributions: dict, owner: str) -> optuna.Trial:
    """`study.ask(distributions)`, but the trial is created with its owner in the same storage
    write, so a crash can never leave a RUNNING trial nobody can attribute."""
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


def ask_batch(study: optuna.Study, ctx: Context, size: int, wid: str) -> list[optuna.Trial]:
    """Up to `size` new trials within the budget; surplus asks (races) are failed unevaluated."""
    target = ctx.cfg.trials
    if target is not None:
        size = min(size, target - count_evaluated(study))
    if size <= 0:
        return []
    asked: list[optuna.Trial] = []
    try:
        with _signals_deferred():
            asked = [_ask_owned(study, ctx.space.distributions, wid) for _ in range(size)]
    except BaseException:  # an interrupt held during the asks: fail them, never leave RUNNING
        for t in asked:
            study.tell(t, state=TrialState.FAIL, skip_if_finished=True)
        raise
    sync_journal(storage_url(ctx.cfg.storage, ctx.cfg.results, ctx.study_name))
    if target is None:
        return asked
    counted = sorted(t.number for t in study.get_trials(deepcopy=False) if _counted(t))
    rank = {n: i for i, n in enumerate(counted)}
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


@contextmanager
def _signals_deferred():
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


def run_batch(study: optuna.Study, ctx: Context, trials: list[optuna.Trial]) -> list[TrialResult]:
    """Evaluate, write the rows, then tell Optuna (the order durability rests on).

    Once evaluated, writing and telling finish before any signal is handled; an interrupt
    before that fails the batch in flight (worker_loop).
    """
    t0 = time.perf_counter()
    params = [ctx.space.params(t.params) for t in trials]
    outcomes = evaluate_params(ctx, params)
    dt = (time.perf_counter() - t0) / max(1, len(trials))
    batch = [TrialResult(ctx.study_name, t.number, asdict(p), ev, err, dt)
             for t, p, (ev, err) in zip(trials, params, outcomes, strict=True)]
    multi = len(study.directions) > 1
    with _signals_deferred():
        write_trials(ctx.cfg.results, batch, ctx.prov, "run", ctx.strategy.name)
        for t, r in zip(trials, batch, strict=True):
            if r.evaluation is None:
                t.set_user_attr("recorded", True)
                study.tell(t, state=TrialState.FAIL, skip_if_finished=True)
            else:
                tell_scored(study, t, [r.objective, r.worst_fold] if multi else r.objective,
                            r.violations)
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
        report({"type": "batch", "n": len(batch), "best": max(finite) if finite else None})
        if ok == 0:
            errors = sorted({r.error for r in batch if r.error})
            raise HarnessError(f"every trial of the first batch failed: {errors[0] if errors else '?'}")
    return done


def _share_cores(jobs: int) -> None:
    """J workers on C cores: C // J numba threads each, so kernels do not oversubscribe."""
    import numba

    numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS, (os.cpu_count() or 1) // jobs)))


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _worker_main(cfg: StudyConfig, strategy: RegisteredStrategy, run_id: str, worker: int, q: Any,
                 stop_ev: Any, deadline_s: float | None, parent: int) -> None:
    """Entry point of a `--jobs` worker process (spawned)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator stops workers with SIGTERM
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        _share_cores(cfg.jobs)
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


# ---------------------------------------------------------------------------------- the run

@dataclass
class Outcome:
    study: str
    run_id: str
    status: str  # finished | interrupted | failed
    done_before: int
    done_now: int
    seconds: float
    best_score: float
    market_label: str
    reconciled: dict[str, int]
    incumbent: dict[str, Any] | None  # best comparable trial outside this study, before it ran

    @property
    def trials_per_s(self) -> float:
        return self.done_now / self.seconds if self.seconds > 0 else 0.0


def _run_row(ctx: Context, status: str, started: Any, summary: dict, finished: bool) -> dict:
    cfg = ctx.cfg
    commit, dirty = results.git_state()
    return {
        **ctx.prov.row(), "command": "run", "strategy": ctx.strategy.name,
        "study": ctx.study_name, "sampler": cfg.sampler,
        "search_space": results.to_json(ctx.space.to_json()), "interval": cfg.interval,
        "data_label": ctx.market.label, "coins": ",".join(cfg.coins or ()), "mode": cfg.mode,
        "data_locator": ctx.locator,
        "n_coins": ctx.market.n_coins,
        "n_bars": ctx.market.n_bars, "folds": results.to_json(cfg.fold_spec.record(ctx.folds)),
        "detail": cfg.detail or "", "trials_target": cfg.trials, "jobs": cfg.jobs,
        "storage": redact(storage_url(cfg.storage, cfg.results, ctx.study_name)),
        "code_hash": code_hash(), "git_dirty": dirty, "argv": cfg.argv, "status": status,
        "owner": worker_id(),
        "summary": results.to_json(summary), "started_at": started,
        "finished_at": results.now() if finished else None, "updated_at": results.now(),
    }


def write_run(ctx: Context, status: str, started: Any, summary: dict | None = None,
              finished: bool = False) -> None:
    import pandas as pd

    row = _run_row(ctx, status, started, summary or {}, finished)
    results.write_batch(ctx.cfg.results, "runs", pd.DataFrame([row]))


def mark_killed_runs(results_dir: Path) -> int:
    """Runs still `running` whose process (on this host) is gone were killed: their latest row
    is written again with status `killed`, so `runs` does not show them running forever."""

    if not results.has_rows(results_dir, "runs"):
        return 0
    df = results.query(results_dir, "SELECT * FROM runs WHERE status = 'running'")
    if "owner" not in df.columns:
        return 0
    dead = df[[_owner_dead(o) for o in df["owner"]]]
    if len(dead):
        results.write_batch(results_dir, "runs", dead.drop(columns=["batch"]).assign(
            status="killed", updated_at=results.now()))
    return len(dead)


def best_score(results_dir: Path, study_name: str) -> float:
    if not results.has_rows(results_dir, "trials"):
        return -math.inf
    df = results.query(results_dir, "SELECT max(score) AS s FROM trials WHERE study = ? AND "
                       "status <> 'failed'", [study_name])
    s = df["s"].iloc[0]
    return -math.inf if s is None or (isinstance(s, float) and math.isnan(s)) else float(s)


def best_comparable(ctx: Context, exclude_study: str | None = None) -> dict[str, Any] | None:
    """The best scored trial of this strategy under the same harness, data and friction
    (results of other hashes, data or costs are not comparable), optionally outside a study."""
    return best_trial(ctx.cfg.results, ctx.strategy.name, ctx.prov.harness_hash,
                      ctx.prov.data_fingerprint, ctx.friction_version, exclude_study)


def best_trial(results_dir: Path, strategy: str, harness: str, data_fingerprint: str,
               friction_version: str, exclude_study: str | None = None) -> dict[str, Any] | None:
    """`best_comparable` by its keys: the row (study, trial, score, worst_fold, params) or None."""
    if not results.has_rows(results_dir, "trials"):
        return None
    df = results.query(
        results_dir,
        "SELECT study, trial, score, worst_fold, params FROM trials WHERE strategy = ? AND "
        "harness_hash = ? AND data_fingerprint = ? AND sim_model_version = ? AND "
        "status = 'complete' AND isfinite(score) AND study IS DISTINCT FROM ? "
        "ORDER BY score DESC, finished_at LIMIT 1",
        [strategy, harness, data_fingerprint, friction_version, exclude_study],
    )
    return df.iloc[0].to_dict() if len(df) else None


def run_study(cfg: StudyConfig, report: Report | None = None, market: Market | None = None,
              on_start: Callable[[Context, int], None] | None = None) -> Outcome:
    """Run (or resume) the study; `report` receives progress events, `on_start(ctx, done)` first."""
    report = report or (lambda e: None)
    run_id = results.new_id()
    ctx = prepare(cfg, run_id, market)
    study = open_study(ctx)
    mark_killed_runs(cfg.results)
    reconciled = reconcile(study, cfg.results)
    done_before = count_evaluated(study)
    before = best_comparable(ctx, exclude_study=ctx.study_name)
    started = results.now()
    write_run(ctx, "running", started)
    if on_start:
        on_start(ctx, done_before)
    t0 = time.monotonic()
    status = "finished"
    try:
        deadline = None if cfg.timeout is None else t0 + cfg.timeout
        if cfg.jobs == 1:
            worker_loop(ctx, study, report, lambda: False, deadline)
        else:
            _run_workers(ctx, study, report, deadline)
    except KeyboardInterrupt:
        status = "interrupted"
    except BaseException:
        write_run(ctx, "failed", started, {}, finished=True)
        raise
    seconds = time.monotonic() - t0
    best = best_score(cfg.results, ctx.study_name)
    done_now = count_evaluated(study) - done_before
    write_run(ctx, status, started, {"best_score": best, "trials_done": done_now,
                                     "seconds": round(seconds, 3)}, finished=True)
    return Outcome(ctx.study_name, run_id, status, done_before, done_now, seconds, best,
                   ctx.market.label, reconciled, before)


def _run_workers(ctx: Context, study: optuna.Study, report: Report, deadline: float | None) -> None:
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
    _share_cores(cfg.jobs)
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
