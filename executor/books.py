"""live_candidates.json as the executor trades it: validated, and grouped into books.

A book is one (strategy, interval, params): one `generate` call per closed candle serves every
bucket promoted with those params. The file is read with schemas.candidates (its JSON Schema and
typed dataclasses) and refused, with a one-line reason, when it is invalid, comes from another
harness, was measured under another friction model than the one the executor trades (the
harness default, friction v5), or holds params outside a strategy's `Params` types and ranges.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, HarnessError
from harness.friction import DEFAULT_FRICTION, get_friction
from harness.manifest import harness_hash
from harness.market import INTERVALS
from schemas.candidates import Bucket, Candidates, load_candidates
from strategies.base import RegisteredStrategy, check_params, get_strategy

TRADED_FRICTION = get_friction(DEFAULT_FRICTION)  # what the kernel mirrors: one home


@dataclass(frozen=True)
class Book:
    id: str  # short hash of strategy, interval and params
    strategy: RegisteredStrategy
    interval: str
    params: Any  # the strategy's Params
    params_json: str
    buckets: tuple[Bucket, ...]

    @property
    def name(self) -> str:
        return self.strategy.name

    def match(self, coin: str, side: str, session: str, regime: str, vol_bucket: str) -> Bucket | None:
        for b in self.buckets:
            if b.matches(self.name, coin, side, session, regime, vol_bucket):
                return b
        return None


@dataclass(frozen=True)
class Loaded:
    path: Path
    sha: str  # of the file's bytes: recorded on every processed bar
    candidates: Candidates
    interval: str
    books: tuple[Book, ...]

    @property
    def coins(self) -> tuple[str, ...]:
        return tuple(sorted({c for b in self.books for k in b.buckets for c in k.coins}))

    @property
    def n_buckets(self) -> int:
        return sum(len(b.buckets) for b in self.books)


def bucket_key(b: Bucket) -> str:
    return "/".join(b.key)


def book_id(strategy: str, interval: str, params_json: str) -> str:
    return hashlib.sha256(f"{strategy}|{interval}|{params_json}".encode()).hexdigest()[:10]


def load_books(path: str | Path, interval: str | None = None,
               expected_hash: str | None = None) -> Loaded:
    """Read, validate and group the candidates file; HarnessError with a one-line reason."""
    path = Path(path)
    cands = load_candidates(path)
    want = expected_hash or harness_hash()
    if cands.harness_hash != want:
        raise ConfigError(f"{path} was produced by harness {cands.harness_hash}, this harness is "
                          f"{want}: re-run `python -m sweep promote` under this harness")
    if cands.friction_version != TRADED_FRICTION.version:
        raise ConfigError(f"{path} holds evidence under {cands.friction_version}; the executor "
                          f"trades {TRADED_FRICTION.version}: re-promote with that friction model")
    if interval is not None and interval not in INTERVALS:
        raise ConfigError(f"unknown interval {interval!r}: use one of {', '.join(INTERVALS)}")
    intervals = sorted({b.interval for b in cands.buckets})
    if interval is None:
        if len(intervals) > 1:
            raise ConfigError(f"{path} mixes intervals {', '.join(intervals)}: run one executor "
                              "per interval with --interval")
        interval = intervals[0] if intervals else "1h"
    groups: dict[tuple[str, str], list[Bucket]] = {}
    for b in cands.buckets:
        if b.interval == interval:
            key = (b.strategy, json.dumps(dict(b.params), sort_keys=True))
            groups.setdefault(key, []).append(b)
    books = []
    for (name, params_json), buckets in sorted(groups.items()):
        try:
            strat = get_strategy(name)
            params = check_params(strat.params_cls, json.loads(params_json))
        except HarnessError as exc:
            raise ConfigError(f"{path}: bucket {bucket_key(buckets[0])}: {exc}; re-promote with "
                              "`python -m sweep promote`") from None
        except TypeError as exc:
            raise ConfigError(f"{path}: bucket {bucket_key(buckets[0])}: bad params ({exc})") from None
        books.append(Book(book_id(name, interval, params_json), strat, interval, params,
                          params_json, tuple(buckets)))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return Loaded(path=path, sha=sha, candidates=cands, interval=interval, books=tuple(books))
