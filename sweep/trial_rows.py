"""Evaluations -> rows of the trials, trial_returns and trades tables (schemas in sweep.results).

One batch of trials is written as three files sharing a batch id, `trials` last: a reader sees
a batch whole or not at all, and a killed writer loses at most that batch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.evaluate import Evaluation
from harness.folds import Folds
from harness.market import Market
from harness.metrics import MAX_LOSS_ANNUALIZED, MIN_TRADES, raw_score
from strategies.regime.gate import models_used
from sweep import results


@dataclass(frozen=True)
class Provenance:
    """The columns every results row carries."""

    run_id: str
    harness_hash: str
    data_fingerprint: str
    sim_model_version: str
    git_commit: str
    seed: int

    def row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrialResult:
    """One evaluated (or failed) parameter set, ready to become rows."""

    study: str
    trial: int
    params: dict[str, Any]
    evaluation: Evaluation | None
    error: str | None = None
    duration_s: float = 0.0
    kept: bool = False
    regime_model: str = ""  # the per-coin regime model(s) behind a regime gate; '' without one

    @property
    def status(self) -> str:
        if self.evaluation is None:
            return "failed"
        return "rejected" if self.evaluation.rejected else "complete"

    @property
    def score(self) -> float:
        return math.nan if self.evaluation is None else float(self.evaluation.score)

    @property
    def worst_fold(self) -> float:
        return math.nan if self.evaluation is None else float(self.evaluation.worst_fold)

    @property
    def objective(self) -> float:
        """What the sampler is told: the score, or for a rejected trial its unrejected score
        (the sampler's constraints rank it below every trial that passes)."""
        ev = self.evaluation
        if ev is None:
            return math.nan
        if math.isfinite(ev.score):
            return float(ev.score)
        raw = raw_score(ev.base)
        return float(raw) if math.isfinite(raw) else -1.0

    @property
    def violations(self) -> list[float] | None:
        ev = self.evaluation
        if ev is None:
            return None
        return violations(ev.base.n_trades, ev.base.annualized, ev.stress.calmar)


def regime_models(params: list[Any], evaluated: list[bool], market: Market, folds: Folds) -> list[str]:
    """Per parameter set, the regime model(s) its regime gate used on the folds' train windows
    ('' without a gate or an evaluation); the fits are cached, so this refits nothing."""
    gates = [getattr(p, "regime_gate", "off") if ok else "off" for p, ok in zip(params, evaluated, strict=True)]
    if all(g == "off" for g in gates):
        return [""] * len(params)
    plan = folds.split(market.n_bars)
    view = market.slice(0, plan.lockbox_start)
    windows = [view.slice(*f.train) for f in plan.folds]
    return [models_used(g, windows) for g in gates]


CONSTRAINTS = ("min_trades", "max_loss", "stress_calmar")  # the order of violations()


def violations(n_trades: float, annualized: float, stress_calmar: float) -> list[float]:
    """The hard rejections as sampler constraints (<= 0 passes), each scaled to about one unit,
    so a sampler learns how far a rejected trial is from passing instead of seeing -inf."""
    calmar = -stress_calmar if math.isfinite(stress_calmar) else (0.0 if stress_calmar > 0 else 1.0)
    ann = MAX_LOSS_ANNUALIZED - annualized if math.isfinite(annualized) else 1.0
    return [float((MIN_TRADES - n_trades) / MIN_TRADES), float(ann), float(calmar)]


def _metrics(prefix: str, m: Any) -> dict[str, Any]:
    return {f"{prefix}_{k}": v for k, v in dataclasses.asdict(m).items()}


def trial_row(r: TrialResult, prov: Provenance, command: str, strategy: str) -> dict[str, Any]:
    ev = r.evaluation
    row: dict[str, Any] = {
        **prov.row(),
        "command": command,
        "strategy": strategy,
        "study": r.study,
        "trial": r.trial,
        "status": r.status,
        "rejected": r.error if ev is None else ev.rejected,
        "score": r.score,
        "objective": r.objective,
        "worst_fold": r.worst_fold,
        "fold_scores": results.to_json(list(ev.fold_scores) if ev else []),
        "folds": results.to_json([dataclasses.asdict(m) for m in ev.folds] if ev else []),
        "params": results.to_json(r.params),
        "kept": r.kept,
        "min_trades": MIN_TRADES,
        "regime_model": r.regime_model,
        "duration_s": r.duration_s,
        "finished_at": results.now(),
    }
    row.update({f"p_{k}": v for k, v in r.params.items()})
    if ev is not None:
        row.update(_metrics("base", ev.base))
        row.update(_metrics("stress", ev.stress))
    return row


def _with_head(frames: list[pd.DataFrame], batch: list[TrialResult], prov: Provenance,
               drop: tuple[str, ...] = ()) -> pd.DataFrame:
    """The frames of a batch's trials as one table, led by the provenance, study and trial
    columns: one concat per batch, not one per trial."""
    lens = [len(f) for f in frames]
    body = pd.concat(frames, ignore_index=True)
    body = body.drop(columns=[c for c in drop + tuple(prov.row()) if c in body.columns])
    head = pd.DataFrame({**prov.row(), "study": np.repeat([r.study for r in batch], lens),
                         "trial": np.repeat(np.array([r.trial for r in batch], dtype=np.int64), lens)},
                        index=body.index)
    return pd.concat([head, body], axis=1)


def trades_table(batch: list[TrialResult], prov: Provenance) -> pd.DataFrame:
    """Every trade of the batch (the harness names its friction tag `friction`; the tables call
    it sim_model_version, which the provenance carries)."""
    keep = [r for r in batch if r.evaluation is not None and r.evaluation.trades is not None
            and len(r.evaluation.trades)]
    if not keep:
        return pd.DataFrame()
    return _with_head([r.evaluation.trades for r in keep], keep, prov,
                      drop=("friction", "study", "trial"))


def returns_table(batch: list[TrialResult], prov: Provenance) -> pd.DataFrame:
    """The daily out-of-sample returns of every trial of the batch."""
    keep = [r for r in batch if r.evaluation is not None and r.evaluation.daily_returns is not None
            and len(r.evaluation.daily_returns)]
    if not keep:
        return pd.DataFrame()
    frames = []
    for r in keep:
        s = r.evaluation.daily_returns
        idx = pd.DatetimeIndex(s.index)
        if idx.tz is not None:
            idx = idx.tz_convert("UTC").tz_localize(None)
        frames.append(pd.DataFrame({"date": idx.normalize().date,
                                    "ret": np.asarray(s.to_numpy(), dtype=np.float64)}))
    return _with_head(frames, keep, prov)


def write_trials(results_dir: Path, batch: list[TrialResult], prov: Provenance, command: str,
                 strategy: str) -> str | None:
    """Write one batch (trades, trial_returns, then trials); returns the batch id."""
    if not batch:
        return None
    batch_id = results.new_id()
    trades, rets = trades_table(batch, prov), returns_table(batch, prov)
    if len(trades):
        results.write_batch(results_dir, "trades", trades, batch_id)
    if len(rets):
        results.write_batch(results_dir, "trial_returns", rets, batch_id)
    rows = pd.DataFrame([trial_row(r, prov, command, strategy) for r in batch])
    results.write_batch(results_dir, "trials", rows, batch_id)
    return batch_id
