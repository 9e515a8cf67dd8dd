"""Walk-forward folds and the lockbox (DESIGN section 7), as bar ranges [start, stop).

Layout of n bars:  [ fold grid ............................ | unused offset | lockbox ]
The lockbox is the last `lockbox_frac` of the bars. Before it, k test windows of equal length sit
end to end, the last one ending at the lockbox (or `offset_bars` earlier). Each train window ends
`purge_bars` before its test window, so a label or holding period that straddles the boundary
cannot leak the test window into the fit. A train window that would start within `embargo_bars`
after an earlier test window ends starts after that embargo instead (Lopez de Prado's embargo;
in a forward-only walk the purge does the real work, and anchored windows, which contain whole
earlier test windows, are never cut).

`Folds` counts bars. `FoldSpec` is what a person types: each length a bar count ("24") or a
duration ("24h", "90d", "15m", "2w"), converted exactly to bars of the market's interval, so a
purge of 24h is 24 bars on 1h data, 96 on 15m and 1 on daily bars.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields

from harness.errors import ConfigError
from harness.market import interval_seconds

DURATION_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LENGTH = re.compile(r"^\s*(\d+)\s*([A-Za-z]*)\s*$")

Range = tuple[int, int]


@dataclass(frozen=True)
class Fold:
    train: Range
    test: Range


@dataclass(frozen=True)
class FoldPlan:
    n_bars: int
    folds: tuple[Fold, ...]
    lockbox: Range  # empty (n, n) when lockbox_frac is 0
    lockbox_train: Range  # what the model is fitted on before a lockbox evaluation

    @property
    def lockbox_start(self) -> int:
        return self.lockbox[0]

    @property
    def segments(self) -> tuple[Range, ...]:
        """The out-of-sample test windows, in order."""
        return tuple(f.test for f in self.folds)


@dataclass(frozen=True)
class Folds:
    """Walk-forward settings. None lengths: test = grid / (k + 1), the first block trains only.

    `offset_bars` moves every fold boundary that many bars earlier (a noise-floor run repeats an
    evaluation under several offsets); the bars between the last test window and the lockbox are
    then left out. Rolling windows have a fixed length (default: one test length minus purge and
    embargo); anchored windows start at bar 0.
    """

    k: int = 4
    train_bars: int | None = None
    test_bars: int | None = None
    purge_bars: int = 24
    embargo_bars: int = 24
    anchored: bool = False
    lockbox_frac: float = 0.15
    offset_bars: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or self.k < 1:
            raise ConfigError(f"Folds.k must be an integer >= 1, got {self.k!r}")
        for name in ("purge_bars", "embargo_bars", "offset_bars"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ConfigError(f"Folds.{name} must be an integer >= 0, got {v!r}")
        for name in ("train_bars", "test_bars"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ConfigError(f"Folds.{name} must be None or an integer >= 1, got {v!r}")
        if not 0.0 <= self.lockbox_frac < 1.0:
            raise ConfigError(f"Folds.lockbox_frac must be in [0, 1), got {self.lockbox_frac!r}")

    def lockbox_range(self, n_bars: int) -> Range:
        n_lock = int(round(n_bars * self.lockbox_frac))
        return (n_bars - n_lock, n_bars)

    def split(self, n_bars: int) -> FoldPlan:
        """Fold ranges for a market of `n_bars`; ConfigError naming the numbers when too short."""
        lock = self.lockbox_range(n_bars)
        pre = lock[0]
        end = pre - self.offset_bars
        what = (f"{n_bars} bars ({pre} before the {self.lockbox_frac:.0%} lockbox, offset "
                f"{self.offset_bars}, k={self.k}, purge {self.purge_bars}, embargo {self.embargo_bars})")
        test = self.test_bars if self.test_bars is not None else end // (self.k + 1)
        if test < 1 or end < 1:
            raise ConfigError(f"too little data for walk-forward: {what} leave no test window; "
                              "use more bars, fewer folds or a smaller offset")
        first_test = end - self.k * test
        if self.anchored:
            train_len = None
        elif self.train_bars is not None:
            train_len = self.train_bars
        else:
            train_len = test - self.purge_bars - self.embargo_bars
            if train_len < 1:
                raise ConfigError(
                    f"default rolling train length = test {test} - purge {self.purge_bars} - "
                    f"embargo {self.embargo_bars} = {train_len} bars for {what}: give a train "
                    "length (--train), fewer folds (--folds), more bars or a shorter purge and "
                    "embargo (--purge, --embargo, e.g. 24h)"
                )
        folds = []
        for j in range(self.k):
            t0 = first_test + j * test
            t1 = t0 + test
            stop = t0 - self.purge_bars
            start = 0 if train_len is None else stop - train_len
            for prev in folds:  # a window that would start inside an embargo zone
                p1 = prev.test[1]
                if p1 <= start < p1 + self.embargo_bars:
                    start = p1 + self.embargo_bars
            if start < 0 or stop - start < 1:
                need = (test * self.k + self.purge_bars + (train_len or 1) + self.offset_bars)
                raise ConfigError(
                    f"too little data for walk-forward: fold {j} would train on bars "
                    f"[{start}, {stop}) and test on [{t0}, {t1}); {what}; the grid needs about "
                    f"{need} bars before the lockbox: use more bars, fewer folds (--folds) or "
                    "shorter ones (--train, --test)"
                )
            folds.append(Fold((start, stop), (t0, t1)))
        lb_stop = pre - self.purge_bars
        lb_start = 0 if train_len is None else max(0, lb_stop - train_len)
        return FoldPlan(n_bars, tuple(folds), lock, (lb_start, max(lb_start, lb_stop)))


def to_bars(length: str | int, interval: str, what: str = "length") -> int:
    """A bar count ("24", 24) or a duration ("24h", "90d", "15m", "2w") as bars of `interval`.

    A duration must be a whole number of bars; anything else is a ConfigError naming `what`.
    """
    if isinstance(length, bool):
        raise ConfigError(f"{what} {length!r}: give a bar count (24) or a duration (24h, 90d)")
    if isinstance(length, int):
        if length < 0:
            raise ConfigError(f"{what} {length}: must be >= 0")
        return length
    m = _LENGTH.match(str(length))
    if m is None:
        raise ConfigError(f"{what} {length!r}: give a bar count (24) or a whole-number duration "
                          f"with a unit of {', '.join(DURATION_UNITS)} (24h, 90d, 15m, 2w)")
    n, unit = int(m.group(1)), m.group(2)
    if not unit:
        return n
    if unit not in DURATION_UNITS:
        raise ConfigError(f"{what} {length!r}: unknown unit {unit!r}; use a bar count (24) or "
                          f"one of {', '.join(DURATION_UNITS)} (24h, 90d, 15m, 2w)")
    seconds, bar = n * DURATION_UNITS[unit], interval_seconds(interval)
    if seconds % bar:
        raise ConfigError(f"{what} {length}: not a whole number of {interval} bars; use a "
                          f"multiple of {interval} or a bar count")
    return seconds // bar


@dataclass(frozen=True)
class FoldSpec:
    """Walk-forward lengths as given (bar counts or durations); `folds(interval)` makes bars.

    None train/test keep Folds' data-derived defaults; purge and embargo default to 24 hours
    (24 bars on hourly data, as before; one bar on daily data).
    """

    k: int = 4
    train: str | None = None
    test: str | None = None
    purge: str = "24h"
    embargo: str = "24h"

    def folds(self, interval: str) -> Folds:
        def bars(value: str | None, what: str) -> int | None:
            return None if value is None else to_bars(value, interval, what)

        return Folds(k=self.k, train_bars=bars(self.train, "train"), test_bars=bars(self.test, "test"),
                     purge_bars=bars(self.purge, "purge"), embargo_bars=bars(self.embargo, "embargo"))

    def record(self, folds: Folds) -> dict:
        """What `runs.folds` holds: the Folds in bars plus `given`, the lengths as typed."""
        return {**asdict(folds), "given": {"train": self.train, "test": self.test,
                                           "purge": self.purge, "embargo": self.embargo}}


def folds_from_record(record: dict) -> Folds:
    """The Folds of a `runs.folds` record (older records hold the bars only)."""
    names = {f.name for f in fields(Folds)}
    return Folds(**{k: v for k, v in record.items() if k in names})
