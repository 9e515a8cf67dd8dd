"""What a regime fit saw, and where its checkpoint lives (no torch here: importing is cheap).

A CDE checkpoint is keyed by the fingerprint of the exact market it was trained on, so
`RegimeModel.fit(train)` finds the checkpoint made for that train window and no other.
Files are written with harness.atomic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.market import Market

DEFAULT_RESULTS_DIR = Path("results") / "regime"


@dataclass(frozen=True)
class TrainSpan:
    """The bars a model was fitted on: first/last bar-open time, count and data fingerprint."""

    first: str
    last: str
    n_bars: int
    fingerprint: str
    coins: tuple[str, ...]

    @classmethod
    def of(cls, market: Market) -> TrainSpan:
        if market.n_bars == 0:
            return cls("", "", 0, market.fingerprint, tuple(market.coins))
        return cls(market.index[0].isoformat(), market.index[-1].isoformat(), market.n_bars,
                   market.fingerprint, tuple(market.coins))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["coins"] = list(self.coins)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainSpan:
        return cls(d["first"], d["last"], int(d["n_bars"]), d["fingerprint"], tuple(d["coins"]))


def checkpoint_paths(results_dir: str | Path, fingerprint: str) -> tuple[Path, Path]:
    """(weights .pt, metadata .json) of the CDE trained on the market with this fingerprint."""
    base = Path(results_dir) / f"cde_{fingerprint}"
    return base.with_suffix(".pt"), base.with_suffix(".json")
