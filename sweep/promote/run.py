"""One promote run: eligible trials -> evidence -> gates -> lockbox -> the file and its rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from harness.folds import folds_from_record
from harness.friction import DEFAULT_FRICTION, get_friction
from harness.manifest import harness_hash
from harness.market import Market
from schemas.candidates import SCHEMA_VERSION, Candidates, Gates, write_candidates
from schemas.ledgers import ledger_paths
from sweep import results
from sweep.coverage import Coverage, require_complete
from sweep.promote import eligible as el
from sweep.promote.evidence import (
    BUCKET_KEY,
    TRADE_KEY,
    StudyEvidence,
    bucket_stats,
    by_exit,
    dedupe,
    exit_days,
    in_bucket,
    normalize_trades,
    study_evidence,
)
from sweep.promote.gates import BucketCase, check_gates, correct, first_failure, stress_gate
from sweep.promote.lockbox import Lockbox, verdict
from sweep.promote.rerun import StrategyRun
from sweep.promote.writer import KillSpec, append, candidate, promotion_row

Progress = Callable[[str, int], None]  # (what is being evaluated, evaluations done)


@dataclass(frozen=True)
class PromotionReport:
    promote_id: str
    candidates: Candidates
    buckets: tuple[BucketCase, ...]  # every bucket considered, in strategy then key order
    skipped: tuple[el.Skip, ...]
    studies: dict[str, StudyEvidence]
    out: Path
    lockbox_reads: int  # lockbox evaluations this run made (reused results not counted)
    coverage: tuple[Coverage, ...] = ()  # finished trials per study vs its rows here (all there)


def shadow_trades(results_dir: Path, friction: str) -> pd.DataFrame:
    """The paper ledgers' shadow trades under `friction`, normalized, one per strategy and
    TRADE_KEY (the first registered ledger's); empty when there are none."""
    from sweep.ledger_views import read_ledger_table

    frames = [f for f in (read_ledger_table(p, "shadow_trades") for p in ledger_paths(results_dir)) if f is not None]
    frames = [f[f["friction"] == friction] for f in frames]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    t = normalize_trades(pd.concat(frames, ignore_index=True))
    return t.drop_duplicates(subset=["strategy", *TRADE_KEY], keep="first").reset_index(drop=True)


def bucket_cases(reader: el.Reader, s: StrategyRun, shadow: pd.DataFrame) -> list[BucketCase]:
    """The buckets of the top trials' closed OOS trades (one per economic trade), with the paper
    shadow trades pooled into buckets the OOS trades made (same tags, same coins): they count
    in n, mean R, t, win rate, max drawdown and the kill criteria, never in the study level."""
    keys = pd.DataFrame([(r.study, r.trial) for r in s.rank], columns=["study", "trial"])
    raw = reader.df("SELECT t.* FROM trades t JOIN _top k ON t.study = k.study AND t.trial = k.trial",
                    _top=keys) if reader.has("trades") else pd.DataFrame()
    if raw.empty:
        return []
    trades = dedupe(normalize_trades(raw), s.rank)
    if len(shadow):  # this strategy's, not repeating an OOS trade
        shadow = shadow[shadow["strategy"] == s.name]
        oos = set(zip(*(trades[c] for c in TRADE_KEY), strict=True))
        shadow = shadow[[k not in oos for k in zip(*(shadow[c] for c in TRADE_KEY), strict=True)]]
    days = reader.df("SELECT DISTINCT r.study, r.trial, r.date FROM trial_returns r JOIN _top k "
                     "ON r.study = k.study AND r.trial = k.trial", _top=keys) \
        if reader.has("trial_returns") else pd.DataFrame(columns=["study", "trial", "date"])
    days["ref"] = [el.TrialRef(str(a), int(b)) for a, b in zip(days["study"], days["trial"], strict=True)]
    out = []
    for key, g in trades.groupby(list(BUCKET_KEY), sort=True):
        refs = tuple(sorted({el.TrialRef(str(a), int(b)) for a, b in zip(g["study"], g["trial"], strict=True)},
                            key=s.rank.__getitem__))
        oos_days = pd.DatetimeIndex(pd.to_datetime(days.loc[days["ref"].isin(refs), "date"]).unique())
        key = tuple(str(k) for k in key)
        coins = tuple(sorted(g["coin"].unique()))
        sh = in_bucket(shadow, key, coins) if len(shadow) else g.iloc[:0]
        if len(sh):
            g = by_exit(pd.concat([g, sh.assign(study=None, trial=None)], ignore_index=True))
        out.append(BucketCase(key, g, bucket_stats(g["r"].to_numpy(), exit_days(g), oos_days), coins,
                              refs, n_shadow=len(sh)))
    return out


def _study(reader: el.Reader, s: StrategyRun, ledger: pd.DataFrame, cur_hash: str) -> StudyEvidence:
    n_ledger = int(((ledger["strategy"] == s.name) & (ledger["harness_hash"] == cur_hash)).sum())
    returns = reader.df(
        "SELECT r.study, r.trial, r.date, r.ret FROM trial_returns r JOIN (SELECT DISTINCT "
        "study, trial FROM trials WHERE strategy = ?) t USING (study, trial) WHERE "
        "r.harness_hash = ? AND r.sim_model_version = ? AND r.data_fingerprint = ?",
        [s.name, cur_hash, s.friction.version, s.market.fingerprint]) if reader.has("trial_returns") \
        else pd.DataFrame(columns=["study", "trial", "date", "ret"])
    return study_evidence(returns, s.selected, n_ledger)


def run_promotion(results_dir: str | Path = results.DEFAULT_RESULTS, *, data: str | None = None,
                  out: str | Path = "live_candidates.json", strategy: str | None = None,
                  gates: Gates = Gates(), kill: KillSpec = KillSpec(), market: Market | None = None,
                  progress: Progress | None = None, now: datetime | None = None,
                  storage: str | None = None) -> PromotionReport:
    """Apply the gate to the results; write `out`, then the promotions rows.

    Each run's market is loaded from the data locator on its `runs` row (`data` replaces the
    source, e.g. when the data moved; `market` replaces loading, for tests and notebooks).
    Raises PromoteError (or another HarnessError) on errors, among them "every trial was
    skipped for configuration", which leaves `out` untouched; an empty candidate list from the
    gates is a result, and is written. Before any evidence, every study under the current
    harness must have all its finished trials (in its Optuna storage; `storage` replaces the
    one the runs recorded) as rows here, else CoverageError: N would count part of the search.
    """
    cur_hash = harness_hash()  # the freeze first: an edited harness refuses here
    check_gates(gates)
    if kill.window_trades < 1 or not 0.5 < kill.confidence < 1:
        raise el.PromoteError(f"--kill-window must be >= 1 and --kill-confidence in (0.5, 1) "
                              f"(got {kill.window_trades}, {kill.confidence})")
    results_dir, out = Path(results_dir), Path(out)
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    promote_id = results.new_id()
    friction = get_friction(DEFAULT_FRICTION)
    progress = progress or (lambda what, done: None)
    count = [0]

    def tick(what: str) -> None:
        progress(what, count[0])
        count[0] += 1

    reader = el.Reader(results_dir)
    try:
        shadow = shadow_trades(results_dir, friction.version)
        ledger = el.ledger(reader, strategy)
        tick("counting finished trials in the studies' Optuna storages")
        covered = require_complete(results_dir, ledger.loc[ledger["harness_hash"] == cur_hash, "study"],
                                   storage)
        chosen, skipped = el.eligible(ledger, el.runs(reader), cur_hash, friction.version,
                                      el.Markets(data, market, tick))
        el.refuse_if_misconfigured(chosen, skipped)
        runs_, studies, cases = {}, {}, []
        for name, e in sorted(chosen.items()):
            s = StrategyRun(name, e.trials.head(gates.top_k), e.market,
                            folds_from_record(json.loads(e.run["folds"])), friction,
                            str(e.run["code_hash"]), _detail(e.run, e.market, data))
            tick(f"study evidence {name}")
            runs_[name], studies[name] = s, _study(reader, s, ledger, cur_hash)
            cases += [(s, c) for c in bucket_cases(reader, s, shadow)]
        correct([c for _, c in cases], gates)
        for s, c in cases:
            if f := first_failure(c, studies[s.name], gates):
                c.fail(f)
        lockbox = Lockbox(reader, promote_id, friction.version)
        for s in runs_.values():
            mine = [c for t, c in cases if t is s]
            stress_gate(s, [c for c in mine if c.promoted], gates, tick)
            for c in (c for c in mine if c.promoted):  # one read per candidate (params)
                verdict(c, lockbox.outcome(s, c.trials[0], tick), gates)
    finally:
        reader.close()

    markets = {n: e.market for n, e in chosen.items()}
    cands = Candidates(
        schema_version=SCHEMA_VERSION, generated_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        harness_hash=cur_hash, friction_version=friction.version,
        data_fingerprint=",".join(sorted({m.fingerprint for m in markets.values()})) or "none",
        data_source="; ".join(sorted({m.label for m in markets.values()})) or "none",
        gates=gates,
        buckets=tuple(candidate(s, c, studies[s.name], gates.correction, kill)
                      for s, c in cases if c.promoted),
    )
    write_candidates(cands, out)
    if cases:
        append(results_dir, "promotions",
               [promotion_row(c, s, studies[s.name], gates.correction, now, out) for s, c in cases],
               promote_id, cur_hash, friction.version)
    return PromotionReport(promote_id, cands, tuple(c for _, c in cases),
                           tuple(skipped), studies, out, lockbox.n_reads, tuple(covered))


def _detail(run: dict, market: Market, data: str | None) -> Market | None:
    """The intrabar detail bars the run was scored with (None: it used adverse first)."""
    interval = run.get("detail")
    if not isinstance(interval, str) or not interval:
        return None
    from sweep.study import load_detail

    source = data if data is not None else json.loads(run["data_locator"])["source"]
    return load_detail(source, interval, market)
