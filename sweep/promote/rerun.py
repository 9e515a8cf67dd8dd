"""One strategy's top trials and the re-runs the gate makes of them (reproduction, fee stress).

The trades table holds base-friction trades only, so fee stress is re-evaluated; before that,
each contributing trial is re-run at base friction and must reproduce its recorded score, trade
count and final equity, so a strategy edited since the sweep cannot borrow the old code's
evidence. The lockbox is never evaluated here (sweep.promote.lockbox owns that read).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from harness.evaluate import Evaluation, evaluate
from harness.folds import Folds
from harness.friction import Friction
from harness.market import Market
from strategies.base import get_strategy, make_params
from sweep import results
from sweep.promote.eligible import REPRO_FIELDS, TrialRef

REPRO_RTOL = 1e-9


@dataclass
class StrategyRun:
    name: str
    top: pd.DataFrame  # best first
    market: Market
    folds: Folds
    friction: Friction
    run_code: str
    detail: Market | None = None  # the run's intrabar detail bars (its `detail` column)
    evals: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rows = {TrialRef(str(t["study"]), int(t["trial"])): t for t in self.top.to_dict("records")}
        self.rank = {ref: i for i, ref in enumerate(self.rows)}

    @property
    def selected(self) -> TrialRef:
        return next(iter(self.rows))

    def params(self, ref: TrialRef) -> dict[str, Any]:
        return json.loads(self.rows[ref]["params"])

    def params_hash(self, ref: TrialRef) -> str:
        return hashlib.sha256(results.to_json(self.params(ref)).encode()).hexdigest()[:16]

    def evaluate(self, ref: TrialRef, kind: str, stress_mult: float = 1.0) -> Evaluation:
        """`base` or `stress` over the OOS folds; once per trial and kind."""
        if kind not in ("base", "stress"):
            raise ValueError(kind)
        if (ref, kind) not in self.evals:
            strat = get_strategy(self.name)
            fr = self.friction.stressed(stress_mult) if kind == "stress" else self.friction
            self.evals[(ref, kind)] = evaluate(
                strat, make_params(strat.params_cls, self.params(ref)), self.market, friction=fr,
                folds=self.folds, record_trades=kind == "stress", detail=self.detail)
        return self.evals[(ref, kind)]

    def reproduces(self, ref: TrialRef) -> str | None:
        """None when a base re-run gives the recorded results, else why not."""
        from sweep.study_identity import code_hash

        ev, row = self.evaluate(ref, "base"), self.rows[ref]
        got = {"score": ev.score, "base_n_trades": ev.base.n_trades,
               "base_final_equity": ev.base.final_equity}
        for f in REPRO_FIELDS:
            if f in row and pd.notna(row[f]) and not math.isclose(
                    float(row[f]), float(got[f]), rel_tol=REPRO_RTOL, abs_tol=1e-12):
                now = code_hash()
                code = (f"; strategies code changed since the run ({self.run_code} -> {now})"
                        if self.run_code != now else "")
                return (f"trial {ref} does not reproduce: re-run {f} {got[f]:.10g} != recorded "
                        f"{float(row[f]):.10g}{code}")
        return None
