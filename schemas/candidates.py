"""live_candidates.json: the promoted buckets the paper executor may trade (DESIGN section 9).

The file is the contract between `sweep promote` and `executor`: it is validated against
schemas/live_candidates.schema.json on every write (before the rename) and every read, and
written atomically (temp file, fsync, rename) so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema

from harness.atomic import atomic_write
from harness.errors import HarnessError
from harness.friction import FEE_STRESS

SCHEMA_VERSION = 2
SCHEMA_PATH = Path(__file__).resolve().parent / "live_candidates.schema.json"
EXAMPLE_PATH = SCHEMA_PATH.with_name("live_candidates.example.json")


class CandidatesError(HarnessError):
    """A candidates file that cannot be read or written as it is."""


@dataclass(frozen=True)
class Gates:
    """Promotion thresholds (DESIGN section 9 defaults); recorded in the file they produced."""

    top_k: int = 5  # top trials per strategy whose OOS trades form the buckets
    min_trades: int = 30
    min_t: float = 3.0  # Harvey, Liu & Zhu hurdle on the bucket's t-stat
    correction: str = "holm"  # "holm" (family-wise) or "bh" (false discovery rate)
    alpha: float = 0.05  # level of the corrected bucket p-values (0.10 is usual with "bh")
    min_dsr: float = 0.95
    spa_alpha: float = 0.05
    max_p_oos_loss: float = 0.25
    stress_mult: float = FEE_STRESS
    lockbox_alpha: float = 0.05


@dataclass(frozen=True)
class StressResult:
    fee_mult: float
    n: int
    mean_r: float


@dataclass(frozen=True)
class LockboxResult:
    n: int  # the bucket's own lockbox trades
    mean_r: float | None  # their mean R; None without a trade
    t_stat: float | None  # t of that mean; None with fewer than 2 trades or no dispersion
    p_negative: float | None  # one-sided p of "mean R < 0"
    mde: float | None  # smallest negative mean R the test would catch (80% power); None: n < 2
    side_n: int  # the candidate's lockbox trades on the bucket's side (every coin)
    side_mean_r: float | None
    passed: bool


@dataclass(frozen=True)
class Evidence:
    n: int
    mean_r: float
    t_stat: float
    p_value: float  # one-sided t-test of mean R > 0
    p_corrected: float  # after the correction over every bucket examined in the promote run
    correction: str
    m_tests: int  # buckets examined (the m of the correction)
    win_rate: float
    sharpe: float  # the bucket's daily R, annualized by sqrt(365)
    max_dd_r: float
    trial_sharpe: float  # the selected trial's daily OOS returns, annualized
    dsr: float  # of the selected trial, N = effective trials
    spa_p: float  # Hansen's SPA over every trial of the study
    p_oos_loss: float  # CSCV: share of splits where the in-sample best loses out of sample
    pbo: float
    n_trials: int
    n_trials_effective: float
    pooled_trials: int
    stress: StressResult
    lockbox: LockboxResult


@dataclass(frozen=True)
class KillCriteria:
    max_drawdown_r: float
    window_trades: int
    min_win_rate: float
    expected_r_low: float
    expected_r_high: float


@dataclass(frozen=True)
class Bucket:
    strategy: str
    interval: str
    params: Mapping[str, Any]  # read-only view; build Params with strategies.base.make_params
    run_id: str
    trial: int
    coins: tuple[str, ...]
    side: str  # "long" | "short"
    session: str
    regime: str
    vol_bucket: str
    evidence: Evidence
    kill: KillCriteria

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.strategy, self.side, self.session, self.regime, self.vol_bucket)

    def matches(self, strategy: str, coin: str, side: str, session: str, regime: str,
                vol_bucket: str) -> bool:
        """Does a signal with these tags fall in this bucket (and on one of its coins)?"""
        return coin in self.coins and self.key == (strategy, side, session, regime, vol_bucket)


@dataclass(frozen=True)
class Candidates:
    schema_version: int
    generated_at: str
    harness_hash: str
    friction_version: str
    data_fingerprint: str
    data_source: str
    gates: Gates
    buckets: tuple[Bucket, ...]

    def for_strategy(self, strategy: str) -> tuple[Bucket, ...]:
        return tuple(b for b in self.buckets if b.strategy == strategy)

    def find(self, strategy: str, coin: str, side: str, session: str, regime: str,
             vol_bucket: str) -> Bucket | None:
        """The bucket a signal belongs to, or None: the executor trades only these."""
        for b in self.buckets:
            if b.matches(strategy, coin, side, session, regime, vol_bucket):
                return b
        return None


@cache
def load_schema() -> dict:
    try:
        return json.loads(SCHEMA_PATH.read_text())
    except (OSError, ValueError) as exc:
        raise CandidatesError(f"cannot read the JSON Schema {SCHEMA_PATH}: {exc}") from None


def validate_document(doc: Any, what: str = "live_candidates") -> None:
    """Raise CandidatesError naming the first schema violation and where it is."""
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise CandidatesError(f"{what} does not match {SCHEMA_PATH.name} at {where}: {err.message}{more}")


def to_document(c: Candidates) -> dict:
    doc = asdict(replace(c, buckets=()))
    doc["buckets"] = [dict(asdict(replace(b, params=dict(b.params))), coins=list(b.coins))
                      for b in c.buckets]
    return doc


def from_document(doc: Any, what: str = "live_candidates") -> Candidates:
    validate_document(doc, what)
    buckets = []
    for b in doc["buckets"]:
        ev = dict(b["evidence"])
        ev["stress"] = StressResult(**ev["stress"])
        ev["lockbox"] = LockboxResult(**ev["lockbox"])
        buckets.append(Bucket(**dict(
            b, params=MappingProxyType(dict(b["params"])), coins=tuple(b["coins"]),
            evidence=Evidence(**ev), kill=KillCriteria(**b["kill"]),
        )))
    return Candidates(**dict(doc, gates=Gates(**doc["gates"]), buckets=tuple(buckets)))


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON: evidence that holds them measured nothing."""
    raise ValueError(f"{name} is not a JSON number")


def load_candidates(path: str | os.PathLike) -> Candidates:
    """Read and validate a candidates file; CandidatesError with a one-line reason otherwise."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise CandidatesError(f"cannot read candidates file {path}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        raise CandidatesError(f"{path} is not valid JSON ({exc}): regenerate it with `python -m sweep promote`") from None
    return from_document(doc, what=str(path))


def load_example(harness_hash: str | None = None) -> Candidates:
    """The one-bucket example beside the schema; with `harness_hash`, re-stamped for a demo
    on that harness (the example's own hash is of the harness it was written against)."""
    c = load_candidates(EXAMPLE_PATH)
    return c if harness_hash is None else replace(c, harness_hash=harness_hash)


def dumps(c: Candidates) -> str:
    try:
        return json.dumps(to_document(c), indent=2, allow_nan=False) + "\n"
    except ValueError as exc:  # NaN or inf slipped into a number
        raise CandidatesError(f"candidates hold a non-finite number: {exc}") from None


def write_candidates(c: Candidates, path: str | os.PathLike) -> Path:
    """Validate, then write atomically: temp file in the same folder, fsync, rename, fsync dir.

    Nothing is left at `path` (or beside it) unless the whole valid file is there.
    """
    path = Path(path)
    doc = to_document(c)
    validate_document(doc)
    text = dumps(c)
    validate_document(json.loads(text))  # what lands on disk is what was validated
    try:
        atomic_write(path, text)
    except OSError as exc:
        raise CandidatesError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
