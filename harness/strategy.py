"""What the harness needs from a strategy. The registry and the strategies live in strategies/."""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

from harness.market import Market
from harness.signals import Signals

Mode = Literal["live", "shadow"]


@runtime_checkable
class Strategy(Protocol):
    name: str
    interval: str  # the bar interval the strategy is designed for ("1h", "1d", ...)
    params_cls: type  # a frozen dataclass of parameters

    def fit(self, market: Market, params: Any) -> Any:
        """Fit whatever the strategy estimates; the harness passes the TRAIN window only.

        Return None when nothing is fitted.
        """

    def generate(self, market: Market, params: Any, mode: Mode = "live", fitted: Any = None) -> Signals:
        """Signals for every bar of `market`, causal: bar t uses data up to and including t."""
