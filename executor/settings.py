"""What a ledger was started with (its `settings` meta row), and the bar geometry it fixes.

A restart must agree with the settings, or its past would not replay: `check_restart` refuses
(one line) another interval, SimConfig, feed, harness, friction model, detail interval, kill-
switch file, or (for a replay) another first bar. The kill-switch file is part of them, so a
restart with another `--kill-file` cannot trade past a kill file that still exists.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from executor.books import TRADED_FRICTION, Loaded
from executor.ledger import LedgerError, iso, parse
from harness.errors import ConfigError
from harness.manifest import harness_hash
from harness.market import interval_seconds
from harness.simulate import SimConfig


@dataclass(frozen=True)
class Settings:
    """What a ledger was started with; a restart must agree with it."""

    interval: str
    coins: tuple[str, ...]  # the universe, sorted (bar and coin indices never shift)
    market_start: pd.Timestamp  # first warm-up bar
    first_bar: pd.Timestamp  # first bar traded
    sim: SimConfig
    feed: str
    source: str
    synthetic: bool
    harness: str
    friction: str = TRADED_FRICTION.version
    detail: str | None = None  # intrabar detail interval of a replay
    kill_file: str = ""  # absolute path of the kill-switch file ("": a ledger from before it was kept)

    def to_json(self) -> str:
        d = asdict(self)
        d["market_start"], d["first_bar"] = iso(self.market_start), iso(self.first_bar)
        d["coins"] = list(self.coins)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str = "the ledger") -> Settings:
        """Parse the settings row; LedgerError (one line) when it is not this executor's."""
        try:
            d = json.loads(text)
            unknown = set(d) - {f.name for f in fields(cls)}
            if unknown:
                raise ValueError(f"unknown keys {', '.join(sorted(unknown))}")
            return cls(**dict(d, coins=tuple(d["coins"]), market_start=parse(d["market_start"]),
                              first_bar=parse(d["first_bar"]), sim=SimConfig(**d["sim"])))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise LedgerError(f"the settings of {where} are unreadable ({type(exc).__name__}: {exc}): "
                              "it was not written by this executor; pass a new --ledger") from None

    # ---- geometry: bar indices from the first warm-up bar ---------------------------------
    @property
    def step(self) -> pd.Timedelta:
        return pd.Timedelta(seconds=interval_seconds(self.interval))

    def row(self, ts: pd.Timestamp) -> int:
        return int((ts - self.market_start) // self.step)

    def bar_ts(self, row: int) -> pd.Timestamp:
        return self.market_start + row * self.step

    def cells(self, ts: pd.Series, coins: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """(bar, coin) indices of ledger rows (ISO times and coin names)."""
        ns = pd.DatetimeIndex(pd.to_datetime(ts, utc=True)).as_unit("ns").asi8
        rows = (ns - self.market_start.as_unit("ns").value) // self.step.value
        index = {c: i for i, c in enumerate(self.coins)}
        return rows.astype(np.int64), np.array([index[x] for x in coins], dtype=np.int64)


def check_universe(loaded: Loaded, settings: Settings) -> None:
    """Candidates must trade the ledger's interval and coins (its bar and coin indices)."""
    if loaded.interval != settings.interval:
        raise ConfigError(f"candidates trade {loaded.interval} bars; this ledger runs "
                          f"{settings.interval}: use a new --ledger")
    outside = sorted(set(loaded.coins) - set(settings.coins))
    if outside:
        raise ConfigError(f"candidates trade {', '.join(outside)}, outside this ledger's coins "
                          f"({', '.join(settings.coins)}): use a new --ledger for a new universe")


RESTART_KEYS = ("interval", "sim", "feed", "harness", "friction", "detail", "kill_file")


def check_restart(path: Path, old: Settings, new: Settings) -> None:
    """Refuse a restart whose settings differ from the ledger's (its past would not replay)."""
    keys = RESTART_KEYS + (("market_start", "first_bar") if new.feed == "replay" else ())
    diffs = [k for k in keys if getattr(old, k) != getattr(new, k)
             and not (k == "kill_file" and not old.kill_file)]
    if not diffs:
        return
    k = diffs[0]
    fix = {"harness": "its past would not replay under this harness: use a new --ledger",
           "friction": "its past would not replay under this harness: use a new --ledger",
           "kill_file": "pass the same --kill-file (or none): while the ledger's kill file exists "
                        "no new entry is taken"}.get(k, "pass the same options or use a new --ledger")
    raise LedgerError(f"{path} was started with {k}={_show(getattr(old, k))}, now "
                      f"{_show(getattr(new, k))}: {fix}")


def _show(v: Any) -> str:
    if isinstance(v, pd.Timestamp):
        return iso(v)
    if isinstance(v, tuple):
        return ",".join(map(str, v))
    return str(v)


def settings_for(loaded: Loaded, extra_coins: tuple[str, ...], market_start: pd.Timestamp,
                 first_bar: pd.Timestamp, sim: SimConfig, feed: str, source: str,
                 synthetic: bool, detail: str | None = None, kill_file: Path | None = None) -> Settings:
    coins = tuple(sorted(set(loaded.coins) | set(extra_coins) | {"BTC"}))
    return Settings(interval=loaded.interval, coins=coins, market_start=market_start,
                    first_bar=first_bar, sim=sim, feed=feed, source=source, synthetic=synthetic,
                    harness=harness_hash(), detail=detail,
                    kill_file=str(Path(kill_file).resolve()) if kill_file else "")


def default_kill_file(ledger: Path) -> Path:
    return ledger.with_name(ledger.name + ".KILL")
