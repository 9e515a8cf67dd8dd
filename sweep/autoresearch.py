"""The research loop's instruments: the incumbent, a one-at-a-time scan, the noise floor.

The incumbent is the best scored trial of a strategy under the current harness hash, on the
same data fingerprint and friction model (scores on other data or costs are not comparable),
else the strategy's defaults.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import ConfigError
from strategies.base import get_strategy, param_specs
from sweep import results
from sweep.causality import Verdict
from sweep.space import parse_value
from sweep.study import Context, StudyConfig, best_comparable, ensure_causal, prepare, write_run
from sweep.trial_rows import TrialResult, regime_models, write_trials
from sweep.workers import evaluate_params


@dataclass(frozen=True)
class Incumbent:
    params: Any  # a Params instance
    source: str  # "defaults" or "<study> #<trial>"
    score: float  # its recorded score (NaN for defaults)


def _typed(params_cls: type, raw: dict[str, Any]) -> tuple[Any, list[str]]:
    """Params from a recorded JSON dict; fields the code no longer has are dropped (and named)."""
    fields = {f.name: f for f in dataclasses.fields(params_cls)}
    specs = {s.name: s for s in param_specs(params_cls)}
    kept, dropped = {}, []
    for k, v in raw.items():
        if k not in fields:
            dropped.append(k)
            continue
        spec = specs.get(k)
        if spec is not None and spec.kind == "int":
            v = int(v)
        elif spec is not None and spec.kind in ("float", "logfloat"):
            v = float(v)
        kept[k] = v
    return params_cls(**kept), dropped


def incumbent(ctx: Context) -> Incumbent:
    return incumbent_of(ctx.strategy.params_cls, best_comparable(ctx))


def incumbent_of(params_cls: type, best: dict[str, Any] | None) -> Incumbent:
    """The Incumbent of a `best_comparable` / `best_trial` row (the defaults when None)."""
    if best is None:
        return Incumbent(params_cls(), "defaults", math.nan)
    params, _ = _typed(params_cls, json.loads(best["params"]))
    return Incumbent(params, f"{best['study']} #{int(best['trial'])}", float(best["score"]))


def _context(cfg: StudyConfig, label: str) -> tuple[Context, Verdict]:
    """The command's context and the causality verdict its first evaluation waits for."""
    run_id = results.new_id()
    ctx = prepare(cfg, run_id)
    verdict = ensure_causal(ctx)
    return dataclasses.replace(ctx, study_name=f"{label}:{ctx.strategy.name}:{run_id[:8]}"), verdict


@dataclass(frozen=True)
class ScanOutcome:
    param: str
    incumbent: Incumbent
    candidates: list[TrialResult]
    values: list[Any]
    kept_index: int
    study: str
    market_label: str
    causality: Verdict

    @property
    def kept(self) -> TrialResult:
        return self.candidates[self.kept_index]


def scan(cfg: StudyConfig, param: str, values: list[str]) -> ScanOutcome:
    """Evaluate each value of `param` with the others at the incumbent, in one kernel batch.

    The incumbent's own value is always evaluated too, so the comparison is like for like; the
    kept value is the best score, the incumbent's on a tie or when all are rejected.
    """
    strategy = get_strategy(cfg.strategy)  # the arguments first: a refusal writes nothing
    specs = {s.name: s for s in param_specs(strategy.params_cls)}
    if param not in specs:
        raise ConfigError(f"{strategy.name} has no parameter {param!r}; known: {', '.join(specs)}")
    if not values:
        raise ConfigError("--values needs at least one value, e.g. --values 10,20,30")
    cand = list(dict.fromkeys(parse_value(specs[param], v) for v in values))
    ctx, verdict = _context(cfg, "scan")
    started = results.now()
    inc = incumbent(ctx)
    current = getattr(inc.params, param)
    if current not in cand:
        cand.append(current)
    params = [dataclasses.replace(inc.params, **{param: v}) for v in cand]
    outcomes = evaluate_params(ctx, params)
    scores = np.array([e.score if e is not None else -np.inf for e, _ in outcomes])
    base = cand.index(current)
    best = int(np.argmax(scores))
    kept = best if scores[best] > scores[base] else base
    regimes = regime_models(params, [e is not None for e, _ in outcomes], ctx.market, ctx.folds)
    batch = [TrialResult(ctx.study_name, i, dataclasses.asdict(p), e, err, 0.0, kept=i == kept,
                         regime_model=rm)
             for i, (p, (e, err), rm) in enumerate(zip(params, outcomes, regimes, strict=True))]
    write_trials(cfg.results, batch, ctx.prov, "scan", ctx.strategy.name)
    summary = {"param": param, "kept": cand[kept], "kept_score": float(scores[kept]),
               "incumbent": current, "incumbent_score": float(scores[base]),
               "incumbent_source": inc.source, "values": cand}
    write_run(ctx, "scan", "finished", started, summary, finished=True, trials_target=len(cand))
    return ScanOutcome(param, inc, batch, cand, kept, ctx.study_name, ctx.market.label, verdict)


@dataclass(frozen=True)
class NoiseOutcome:
    incumbent: Incumbent
    rows: pd.DataFrame  # offset, seed, score, worst_fold, rejected
    std: float
    min: float
    max: float
    mean: float
    market_label: str
    causality: Verdict


def noise(cfg: StudyConfig, repeats: int = 8, step_bars: int | None = None) -> NoiseOutcome:
    """Re-run the incumbent under shifted fold boundaries (and seeds, when Params has `seed`).

    The spread of the score is the noise floor: a change that moves the score by less is noise.
    Offsets default to fractions of one test window, so every run keeps k full folds.
    """
    if repeats < 2:
        raise ConfigError(f"--repeats must be >= 2 to measure a spread, got {repeats}")
    ctx, verdict = _context(cfg, "noise")
    started = results.now()
    inc = incumbent(ctx)
    plan = ctx.folds.split(ctx.market.n_bars)
    test_len = plan.folds[0].test[1] - plan.folds[0].test[0]
    step = step_bars or max(1, test_len // repeats)
    has_seed = "seed" in {f.name for f in dataclasses.fields(inc.params)}
    rows = []
    for i in range(repeats):
        folds = dataclasses.replace(ctx.folds, offset_bars=i * step)
        params = dataclasses.replace(inc.params, seed=cfg.seed + i) if has_seed else inc.params
        run_ctx = dataclasses.replace(ctx, folds=folds)
        (ev, err), = evaluate_params(run_ctx, [params])
        rows.append({"offset_bars": i * step, "seed": cfg.seed + i if has_seed else None,
                     "score": ev.score if ev else math.nan,
                     "worst_fold": ev.worst_fold if ev else math.nan,
                     "trades": ev.base.n_trades if ev else 0,
                     "rejected": (ev.rejected if ev else err) or ""})
    df = pd.DataFrame(rows)
    finite = df["score"][np.isfinite(df["score"])]
    std = float(finite.std(ddof=1)) if len(finite) >= 2 else math.nan
    lo = float(finite.min()) if len(finite) else math.nan
    hi = float(finite.max()) if len(finite) else math.nan
    mean = float(finite.mean()) if len(finite) else math.nan
    summary = {"noise_std": std, "min": lo, "max": hi, "mean": mean, "repeats": repeats,
               "rejected": int(len(df) - len(finite)), "step_bars": step,
               "incumbent_source": inc.source, "params": dataclasses.asdict(inc.params)}
    write_run(ctx, "noise", "finished", started, summary, finished=True, trials_target=repeats)
    return NoiseOutcome(inc, df, std, lo, hi, mean, ctx.market.label, verdict)
