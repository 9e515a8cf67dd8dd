"""The strategy -> harness contract (DESIGN section 4) and the tag vocabularies.

A signal at bar t is decided at the CLOSE of bar t from data up to and including bar t; the
harness fills it at the open of t+1. Tag codes are small ints so kernels and tables stay flat;
the names below are the one home of their meaning.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from harness.errors import SignalsError
from harness.market import Market

SESSIONS = ("ASIA", "EU_OPEN", "US_MAIN", "LATE")
SESSION_START_HOURS = (0, 7, 13, 21)  # UTC hour of the decision bar's CLOSE
REGIMES = ("NEUTRAL", "LONG", "SHORT")  # codes 0, 1, 2 (BTC regime)
VOL_BUCKETS = ("low", "mid", "high")  # ATR(14)/ATR(100): < 0.6, 0.6-1.4, > 1.4
VOL_BUCKET_EDGES = (0.6, 1.4)
SIDES = {1: "long", -1: "short"}


def session_codes(index: pd.DatetimeIndex, bar_seconds: int) -> np.ndarray:
    """Session of each bar by the UTC hour of its close (bar open + one interval)."""
    close_hour = ((index.as_unit("ns").asi8 // 1_000_000_000 + bar_seconds) // 3600) % 24
    return (np.searchsorted(SESSION_START_HOURS, close_hour, side="right") - 1).astype(np.int8)


def vol_bucket_codes(atr_ratio: np.ndarray) -> np.ndarray:
    """Bucket codes from ATR(14)/ATR(100); NaN (warm-up) falls in `mid`."""
    r = np.where(np.isfinite(atr_ratio), atr_ratio, 1.0)
    return (np.searchsorted(VOL_BUCKET_EDGES, r, side="right")).astype(np.int8)


def setup_key(bar: np.ndarray, coin: np.ndarray, direction: np.ndarray, family: int) -> np.ndarray:
    """One economic setup -> one int64: (origin bar, coin, direction, setup family).

    v3 de-duplication trades a setup key once per coin, so a setup that keeps firing after its
    trade closed, or that several strategies fire, is one trade.
    """
    bar = np.asarray(bar, dtype=np.int64)
    coin = np.asarray(coin, dtype=np.int64)
    side = (np.asarray(direction, dtype=np.int64) > 0).astype(np.int64)
    return ((bar * 4096 + coin) * 2 + side) * 256 + (family & 0xFF)


@dataclass(frozen=True, eq=False)
class Signals:
    """Arrays of shape (n_bars, n_coins), aligned with the Market they came from."""

    strategy: str
    direction: np.ndarray  # int8: +1 long, -1 short, 0 nothing
    stop: np.ndarray  # float64: stop distance in price units (1R); > 0 where direction != 0
    target: np.ndarray  # float64: take-profit as an R multiple, NaN for none
    exit: np.ndarray  # bool: close any open position at the next open
    score: np.ndarray  # float64: confidence; highest wins among competing signals
    session: np.ndarray  # int8 code into SESSIONS
    regime: np.ndarray  # int8 code into REGIMES
    vol_bucket: np.ndarray  # int8 code into VOL_BUCKETS
    setup: np.ndarray  # int64 setup key (see setup_key)
    hold: np.ndarray  # int32: time stop in bars after entry, 0 for none
    trail: np.ndarray  # float64: trailing distance in R, NaN for the friction default

    DTYPES = {
        "direction": np.int8, "stop": np.float64, "target": np.float64, "exit": np.bool_,
        "score": np.float64, "session": np.int8, "regime": np.int8, "vol_bucket": np.int8,
        "setup": np.int64, "hold": np.int32, "trail": np.float64,
    }

    @classmethod
    def empty(cls, market: Market, strategy: str) -> Signals:
        """All-zero signals with the session tags filled in; strategies fill the rest."""
        shape = (market.n_bars, market.n_coins)
        arrays = {name: np.zeros(shape, dtype=dt) for name, dt in cls.DTYPES.items()}
        arrays["target"][:] = np.nan
        arrays["trail"][:] = np.nan
        arrays["vol_bucket"][:] = 1
        arrays["session"][:] = session_codes(market.index, market.bar_seconds)[:, None]
        return cls(strategy=strategy, **arrays)

    def array_names(self) -> list[str]:
        return [f.name for f in fields(self) if f.name != "strategy"]

    def slice(self, start: int, stop: int) -> Signals:
        return Signals(self.strategy, **{n: getattr(self, n)[start:stop] for n in self.array_names()})

    def validate(self, market: Market) -> Signals:
        """Raise SignalsError naming strategy, coin and bar for the first breach of the contract:
        every array's type, shape and dtype, then CELL_RULES on every cell that signals."""
        shape = (market.n_bars, market.n_coins)
        for name in self.array_names():
            check_array(self.strategy, name, getattr(self, name), shape)
        rows, cols = np.nonzero(self.direction)
        cells = {name: getattr(self, name)[rows, cols] for name in RULE_FIELDS}
        cells["listed"] = market.listed[rows, cols]
        hit = first_breach(cells)
        if hit is not None:
            i, what = hit
            raise SignalsError(breach(self.strategy, what, market, int(rows[i]), int(cols[i])))
        return self


# The contract on the cells that signal (direction != 0), in one home: `Signals.validate` applies
# it to every such cell, `harness.simulate` to the event cells it gathers for the kernel (the same
# cells, read sparsely, which is what keeps a batch of many sets cheap). `cells` maps each field
# of RULE_FIELDS, plus `listed` (the market's mask), to its values at those cells.
CellRule = tuple[Callable[[Mapping[str, np.ndarray]], np.ndarray], str]


def _code_rule(name: str, names: tuple[str, ...]) -> CellRule:
    return (lambda c: (c[name] < 0) | (c[name] >= len(names)), f"{name} code outside 0..{len(names) - 1}")


CELL_RULES: tuple[CellRule, ...] = (
    (lambda c: np.abs(c["direction"].astype(np.int16)) != 1, "direction must be -1, 0 or +1"),
    (lambda c: ~(np.isfinite(c["stop"]) & (c["stop"] > 0)),
     "stop must be a positive finite price distance where direction != 0"),
    (lambda c: ~np.isfinite(c["score"]), "score must be finite where direction != 0"),
    (lambda c: ~(np.isnan(c["target"]) | (c["target"] > 0)), "target must be NaN or a positive R multiple"),
    (lambda c: ~(np.isnan(c["trail"]) | (c["trail"] > 0)), "trail must be NaN or a positive R distance"),
    (lambda c: c["hold"] < 0, "hold must be >= 0 bars"),
    (lambda c: ~c["listed"], "signal on a bar where the coin is not listed"),
    _code_rule("session", SESSIONS), _code_rule("regime", REGIMES), _code_rule("vol_bucket", VOL_BUCKETS),
)
RULE_FIELDS = ("direction", "stop", "score", "target", "trail", "hold", "session", "regime", "vol_bucket")


def first_breach(cells: Mapping[str, np.ndarray]) -> tuple[int, str] | None:
    """(index into the cells, what is wrong) of the first rule any cell breaks, else None."""
    for rule, what in CELL_RULES:
        bad = rule(cells)
        if bad.any():
            return int(np.argmax(bad)), what
    return None


def breach(strategy: str, what: str, market: Market, bar: int, coin: int) -> str:
    return f"{strategy}: {what} at coin {market.coins[coin]} bar {bar} ({market.index[bar].isoformat()})"


def check_array(strategy: str, name: str, arr: object, shape: tuple[int, int]) -> None:
    """One Signals array must be a numpy array of the market's shape and the field's dtype."""
    dtype = np.dtype(Signals.DTYPES[name])
    if isinstance(arr, np.ndarray) and arr.shape == shape and arr.dtype == dtype:
        return
    got = f"{arr.shape} {arr.dtype}" if isinstance(arr, np.ndarray) else type(arr).__name__
    raise SignalsError(f"{strategy}: Signals.{name} is {got}, expected {shape} {dtype} "
                       "(n_bars, n_coins): build signals from the same Market you evaluate")
