"""The gates, in order; a bucket's first failure is recorded with its number and threshold.

  n         closed OOS trades >= min_trades                                    (bucket)
  t         t-stat of per-trade R >= min_t (Harvey, Liu & Zhu)                 (bucket)
  p         one-sided p of mean R > 0, corrected over every bucket examined    (bucket)
            in the promote run (Holm: family-wise; BH: false discovery rate) <= alpha
  dsr       DSR of the selected trial, N = effective trials, >= min_dsr        (study)
  spa       Hansen's SPA p over every trial of the study <= spa_alpha          (study)
  oos_loss  P(OOS loss) of the in-sample best (CSCV) <= max_p_oos_loss         (study)
  stress    the contributing trials reproduce, and mean R > 0 with fees and
            slippage x stress_mult                                              (bucket)
  lockbox   see sweep.promote.lockbox                                           (candidate)

"Examined" means tested: every bucket with n >= min_trades (a smaller one cannot pass, and
leaving it out of m is the only choice that does not punish a study for its thin corners).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness import stats
from schemas.candidates import Gates, LockboxResult, StressResult
from sweep.promote.eligible import PromoteError, TrialRef
from sweep.promote.evidence import BucketStats, StudyEvidence, dedupe, in_bucket, normalize_trades
from sweep.promote.rerun import StrategyRun

CORRECTIONS = {"holm": stats.holm, "bh": stats.benjamini_hochberg}


@dataclass(frozen=True)
class Failure:
    gate: str
    value: float | None  # the number that failed (None: not a number, see text)
    threshold: float | None
    text: str  # why, with the numbers and by how much

    @classmethod
    def at_least(cls, gate: str, label: str, value: float, threshold: float, extra: str = "") -> Failure:
        by = f" (short by {fmt(threshold - value)})" if math.isfinite(value) else ""
        return cls(gate, value, threshold, f"{label} {fmt(value)} < {fmt(threshold)}{by}{extra}")

    @classmethod
    def at_most(cls, gate: str, label: str, value: float, threshold: float, extra: str = "") -> Failure:
        by = f" (over by {fmt(value - threshold)})" if math.isfinite(value) else ""
        return cls(gate, value, threshold, f"{label} {fmt(value)} > {fmt(threshold)}{by}{extra}")


@dataclass
class BucketCase:
    """A bucket on its way through the gates."""

    key: tuple[str, ...]
    trades: pd.DataFrame
    stats: BucketStats
    coins: tuple[str, ...]
    trials: tuple[TrialRef, ...]  # contributing top trials, best-ranked first
    n_shadow: int = 0
    p_corrected: float = math.nan
    m_tests: int = 0
    failed: Failure | None = None
    stress: StressResult | None = None
    lockbox: LockboxResult | None = None
    reason: str = ""

    def fail(self, f: Failure) -> None:
        self.failed, self.reason = f, f.text

    @property
    def promoted(self) -> bool:
        return self.failed is None

    @property
    def tested(self) -> bool:
        return math.isfinite(self.stats.p_value)


def check_gates(g: Gates) -> None:
    checks = [
        (g.top_k >= 1, f"--top must be >= 1 (got {g.top_k})"),
        (g.min_trades >= 2, f"--min-trades must be >= 2 (got {g.min_trades})"),
        (g.correction in CORRECTIONS, f"--correction must be one of {', '.join(CORRECTIONS)} "
                                      f"(got {g.correction!r})"),
        (0 < g.alpha < 1, f"--alpha must be in (0, 1) (got {g.alpha})"),
        (0 <= g.min_dsr <= 1, f"--min-dsr must be in [0, 1] (got {g.min_dsr})"),
        (0 < g.spa_alpha < 1, f"--spa-alpha must be in (0, 1) (got {g.spa_alpha})"),
        (0 <= g.max_p_oos_loss <= 1, f"--max-oos-loss must be in [0, 1] (got {g.max_p_oos_loss})"),
        (g.stress_mult >= 1, f"--stress-mult must be >= 1 (got {g.stress_mult})"),
        (0 < g.lockbox_alpha < 1, f"--lockbox-alpha must be in (0, 1) (got {g.lockbox_alpha})"),
    ]
    problems = [msg for ok, msg in checks if not ok]
    if problems:
        raise PromoteError("; ".join(problems))


def correct(cases: list[BucketCase], g: Gates) -> None:
    """Corrected p of every examined bucket (n >= min_trades), over all of them at once."""
    examined = [c for c in cases if c.stats.n >= g.min_trades and c.tested]
    adj = CORRECTIONS[g.correction](np.array([c.stats.p_value for c in examined]))
    for c, p in zip(examined, adj, strict=True):
        c.p_corrected, c.m_tests = float(p), len(examined)


def first_failure(c: BucketCase, study: StudyEvidence, g: Gates) -> Failure | None:
    """The first of the gates before fee stress that fails."""
    s = c.stats
    if not s.n >= g.min_trades:
        return Failure("n", s.n, g.min_trades, f"{s.n} trades < {g.min_trades} (short by {g.min_trades - s.n})")
    if not s.t_stat >= g.min_t:
        return Failure.at_least("t", "t", s.t_stat, g.min_t, f" (mean R {fmt(s.mean_r)})")
    if not c.p_corrected <= g.alpha:
        return Failure.at_most("p", f"{g.correction} p", c.p_corrected, g.alpha,
                               f" (raw p {fmt(s.p_value)}, m {c.m_tests})")
    if not study.dsr >= g.min_dsr:
        return Failure.at_least("dsr", "study DSR", study.dsr, g.min_dsr,
                                f" (N effective {study.n_effective:g}{'; ' + study.note if study.note else ''})")
    if not study.spa_p <= g.spa_alpha:
        return Failure.at_most("spa", "study SPA p", study.spa_p, g.spa_alpha)
    if not study.p_oos_loss <= g.max_p_oos_loss:
        return Failure.at_most("oos_loss", "P(OOS loss)", study.p_oos_loss, g.max_p_oos_loss,
                               f" (PBO {fmt(study.pbo)})")
    return None


def stress_gate(s: StrategyRun, alive: list[BucketCase], g: Gates, tick: Callable[[str], None]) -> None:
    refs = sorted({r for c in alive for r in c.trials}, key=s.rank.__getitem__)
    issues = {}
    for ref in refs:
        tick(f"re-run {s.name} {ref}")
        issues[ref] = s.reproduces(ref)
    for c in alive:
        bad = [issues[r] for r in c.trials if issues[r]]
        if bad:
            c.fail(Failure("stress", None, None, bad[0]))
            continue
        parts = []
        for ref in c.trials:
            tick(f"fee stress {s.name} {ref}")
            ev = s.evaluate(ref, "stress", g.stress_mult)
            if ev.trades is not None and len(ev.trades):
                parts.append(in_bucket(normalize_trades(ev.trades.assign(study=ref.study, trial=ref.trial)),
                                       c.key, c.coins))
        st = dedupe(pd.concat(parts, ignore_index=True), s.rank) if parts else pd.DataFrame({"r": []})
        c.stress = StressResult(g.stress_mult, len(st), float(st["r"].mean()) if len(st) else math.nan)
        if not c.stress.mean_r > 0:
            c.fail(Failure("stress", c.stress.mean_r, 0.0,
                           f"mean R with {g.stress_mult:g}x fees and slippage {fmt(c.stress.mean_r)} "
                           f"<= 0 ({c.stress.n} trades)"))


def fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.3g}"
