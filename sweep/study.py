"""An Optuna study over a strategy's Params, scored by the frozen harness (`sweep run`).

Durability rests on one ordering: a batch's rows are written to the results tables BEFORE its
trials are told to Optuna. So a trial Optuna calls finished always has its rows, and a crash
leaves only RUNNING trials, which the next start reconciles (rows found: told with the recorded
score; owner process dead and no rows: failed). `--trials N` is the number of evaluated trials
the study holds; every asked trial is ranked among the study's live trials and one beyond N is
failed unevaluated, so several workers (or machines) never overshoot.

This module holds the configuration, the context every worker builds identically, and the run;
what makes two runs one study is sweep/study_identity.py, the Optuna side
sweep/optuna_trials.py, the workers and their batches sweep/workers.py.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.folds import Folds, FoldSpec
from harness.friction import DEFAULT_FRICTION, get_friction
from harness.manifest import harness_hash
from harness.market import Market
from strategies.base import RegisteredStrategy, get_strategy
from sweep import causality, results, results_schema
from sweep.causality import Verdict
from sweep.optuna_trials import (
    SAMPLERS,
    count_evaluated,
    finished_numbers,
    open_study,
    owner_dead,
    reconcile,
    worker_id,
)
from sweep.space import SearchSpace, search_space
from sweep.storage import DEFAULT_TIMEOUT, check_storage_url, recorded_storage, storage_url
from sweep.study_identity import code_hash, default_study_name
from sweep.trial_rows import Provenance
from sweep.workers import Report, run_workers, worker_loop

DEFAULT_TRIALS = 1000  # `sweep run` with no flags: about 3 minutes on the embedded default (2 cores)
BATCH = {"random": 32, "tpe": 16, "cmaes": 8, "nsga2": 16}  # trials per kernel call
STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,120}$")

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
        if self.storage is not None:
            check_storage_url(self.storage)  # before the causality gate writes its verdict

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


def load_data(data: str | None, interval: str, coins: tuple[str, ...] | None) -> Market:
    from harness.sources import load_market

    return load_market(data, interval=interval, coins=list(coins) if coins else None)


def prepare(cfg: StudyConfig, run_id: str, market: Market | None = None,
            strategy: RegisteredStrategy | None = None) -> Context:
    """Load and check everything once; `strategy` (else looked up by name) travels to workers
    by reference, so a strategy registered outside strategies/ works with --jobs too."""
    harness_hash()  # the freeze first: an edited harness refuses before anything is loaded or written
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


def ensure_causal(ctx: Context) -> Verdict:
    """The causality verdict on this strategy code and data (sweep.causality): cached, else run
    on a sample of the study's data before its first trial; CausalityError when it looks ahead."""
    return causality.ensure(ctx.strategy, ctx.market, ctx.code_hash, ctx.cfg.results, ctx.prov.run_id)


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
    causality: Verdict  # the gate's verdict on this strategy code and data
    results_dir: Path  # where this run's rows went (absolute)
    storage: str  # the study's Optuna storage, as recorded (password masked)
    finished: int  # trials the study now holds, finished by every worker on every machine
    rows_here: int  # of those, the trials with rows in results_dir

    @property
    def trials_per_s(self) -> float:
        return self.done_now / self.seconds if self.seconds > 0 else 0.0


def run_row(ctx: Context, command: str, status: str, started: Any, summary: dict,
            finished: bool, trials_target: int | None = None) -> dict:
    """The `runs` row of a command on `ctx`: a study (`run`) records its sampler, space, budget,
    workers and storage; `scan` and `noise` their name and `trials_target` candidates."""
    cfg = ctx.cfg
    study = command == "run"
    _, dirty = results.git_state()
    return {
        **ctx.prov.row(), "command": command, "strategy": ctx.strategy.name,
        "study": ctx.study_name, "sampler": cfg.sampler if study else command,
        "search_space": results.to_json(ctx.space.to_json() if study else {}),
        "interval": cfg.interval, "data_label": ctx.market.label,
        "coins": ",".join(cfg.coins or ()), "data_locator": ctx.locator, "mode": cfg.mode,
        "n_coins": ctx.market.n_coins,
        "n_bars": ctx.market.n_bars, "folds": results.to_json(cfg.fold_spec.record(ctx.folds)),
        "detail": cfg.detail or "", "trials_target": cfg.trials if study else trials_target,
        "jobs": cfg.jobs if study else 1,
        "storage": recorded_storage(storage_url(cfg.storage, cfg.results, ctx.study_name)) if study else None,
        "code_hash": code_hash(), "git_dirty": dirty, "argv": cfg.argv, "status": status,
        "owner": worker_id(),
        "summary": results.to_json(summary), "started_at": started,
        "finished_at": results.now() if finished else None, "updated_at": results.now(),
    }


def write_run(ctx: Context, command: str, status: str, started: Any, summary: dict | None = None,
              finished: bool = False, trials_target: int | None = None) -> None:
    import pandas as pd

    row = run_row(ctx, command, status, started, summary or {}, finished, trials_target)
    results.write_batch(ctx.cfg.results, "runs", pd.DataFrame([row]))


def mark_killed_runs(results_dir: Path) -> int:
    """Runs still `running` whose process (on this host) is gone were killed: their latest row
    is written again with status `killed`, so `runs` does not show them running forever."""

    if not results.has_rows(results_dir, "runs"):
        return 0
    df = results.query(results_dir, "SELECT * FROM runs WHERE status = 'running'")
    if "owner" not in df.columns:
        return 0
    dead = df[[owner_dead(o) for o in df["owner"]]]
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
    """The best scored trial of this strategy under the same harness, friction, data and folds
    (results_schema.COMPARABLE: other groups are not comparable), optionally outside a study."""
    return best_trial(ctx.cfg.results, ctx.strategy.name, ctx.prov.harness_hash,
                      ctx.prov.data_fingerprint, ctx.friction_version, ctx.folds, exclude_study)


def best_trial(results_dir: Path, strategy: str, harness: str, data_fingerprint: str,
               friction_version: str, folds: Folds, exclude_study: str | None = None
               ) -> dict[str, Any] | None:
    """`best_comparable` by its keys: the row (study, trial, score, worst_fold, params) or None."""
    if not results.has_rows(results_dir, "trials"):
        return None
    df = results.query(
        results_dir,
        f"SELECT study, trial, score, worst_fold, params FROM ({results_schema.comparable_trials_sql()}) "
        "WHERE strategy = ? AND harness_hash = ? AND data_fingerprint = ? AND "
        f"sim_model_version = ? AND fold_layout = (SELECT {results_schema.fold_layout_sql('j')} FROM "
        "(SELECT CAST(? AS VARCHAR) AS j)) "
        "AND status = 'complete' AND isfinite(score) AND study IS DISTINCT FROM ? "
        "ORDER BY score DESC, finished_at LIMIT 1",
        [strategy, harness, data_fingerprint, friction_version, results.to_json(asdict(folds)),
         exclude_study],
    )
    return df.iloc[0].to_dict() if len(df) else None


def _largest(caches: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The indicator cache of the worker holding the most (memory is per process)."""
    return max(caches.values(), key=lambda c: c["mb"], default={})


def run_study(cfg: StudyConfig, report: Report | None = None, market: Market | None = None,
              on_start: Callable[[Context, int], None] | None = None) -> Outcome:
    """Run (or resume) the study; `report` receives progress events, `on_start(ctx, done)` first."""
    user_report = report or (lambda e: None)
    caches: dict[int, dict[str, Any]] = {}  # per worker process: its indicator cache, last seen

    def report(event: dict[str, Any]) -> None:
        if "indicator_cache" in event:
            caches[event["pid"]] = event["indicator_cache"]
        user_report(event)

    run_id = results.new_id()
    ctx = prepare(cfg, run_id, market)
    verdict = ensure_causal(ctx)  # refuses a strategy that looks ahead before anything is written
    study = open_study(ctx)
    mark_killed_runs(cfg.results)
    reconciled = reconcile(study, cfg.results)
    done_before = count_evaluated(study)
    before = best_comparable(ctx, exclude_study=ctx.study_name)
    started = results.now()
    write_run(ctx, "run", "running", started)
    if on_start:
        on_start(ctx, done_before)
    t0 = time.monotonic()
    status = "finished"
    try:
        deadline = None if cfg.timeout is None else t0 + cfg.timeout
        if cfg.jobs == 1:
            worker_loop(ctx, study, report, lambda: False, deadline)
        else:
            run_workers(ctx, study, report, deadline)
    except KeyboardInterrupt:
        status = "interrupted"
    except BaseException:
        write_run(ctx, "run", "failed", started, {}, finished=True)
        raise
    seconds = time.monotonic() - t0
    best = best_score(cfg.results, ctx.study_name)
    done_now = count_evaluated(study) - done_before
    write_run(ctx, "run", status, started, {"best_score": best, "trials_done": done_now,
                                            "seconds": round(seconds, 3),
                                            "indicator_cache": _largest(caches),
                                            "causality": "cached" if verdict.cached else "checked"},
              finished=True)
    finished = finished_numbers(study)
    return Outcome(ctx.study_name, run_id, status, done_before, done_now, seconds, best,
                   ctx.market.label, reconciled, before, verdict, cfg.results.resolve(),
                   recorded_storage(storage_url(cfg.storage, cfg.results, ctx.study_name)),
                   len(finished), len(finished & trial_numbers(cfg.results, ctx.study_name)))


def trial_numbers(results_dir: Path, study_name: str) -> set[int]:
    """The trials of a study with rows in this results folder."""
    if not results.has_rows(results_dir, "trials"):
        return set()
    df = results.query(results_dir, "SELECT DISTINCT trial FROM trials WHERE study = ? AND "
                       "command = 'run'", [study_name])
    return {int(t) for t in df["trial"]}
