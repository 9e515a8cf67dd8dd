"""Small markets and signals for the hand-computed kernel tests."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from harness.friction import V2
from harness.market import Market
from harness.signals import Signals
from harness.simulate import SimConfig

FEE = V2.fee_bps * 1e-4  # 4.5 bps
SLIP = V2.slippage_bps * 1e-4  # 5 bps
FREE = replace(V2, fee_bps=0.0, slippage_bps=0.0, version="test_free")  # v2 timing, no costs
NO_RISK = SimConfig(daily_loss_halt=50.0, kill_drawdown=50.0)


def make_market(bars: dict[str, list[tuple[float, float, float, float]]], funding: float = 0.0,
                start: str = "2024-01-01") -> Market:
    coins = tuple(bars)
    arr = np.array([bars[c] for c in coins], dtype=np.float64).transpose(1, 0, 2)  # (n, k, 4)
    n, k = arr.shape[:2]
    nan = np.full((n, k), np.nan)
    return Market(
        index=pd.date_range(start, periods=n, freq="h", tz="UTC"), coins=coins, interval="1h",
        open=arr[:, :, 0].copy(), high=arr[:, :, 1].copy(), low=arr[:, :, 2].copy(),
        close=arr[:, :, 3].copy(), volume=np.ones((n, k)), funding=np.full((n, k), funding),
        premium=nan, open_interest=nan.copy(), listed=np.ones((n, k), dtype=bool), source="test",
    )


def flat(n: int, price: float = 100.0) -> list[tuple[float, float, float, float]]:
    return [(price, price, price, price)] * n


def signal(sig: Signals, t: int, side: int, stop: float, coin: int = 0, target: float = np.nan,
           score: float = 1.0, setup: int = 0, hold: int = 0, trail: float = np.nan) -> None:
    sig.direction[t, coin] = side
    sig.stop[t, coin] = stop
    sig.target[t, coin] = target
    sig.score[t, coin] = score
    sig.setup[t, coin] = setup
    sig.hold[t, coin] = hold
    sig.trail[t, coin] = trail
