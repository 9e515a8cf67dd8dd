"""TEMPORARY stand-in for the helper's module (same interface); replaced at merge."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CostModel:
    window_days: int = 30
    impact_k: float = 1.0
    floor_bps: float = 1.0
    cap_bps: float = 200.0
    fallback_bps: float = 5.0
    min_days: int = 20
    estimator: str = "abdi_ranaldo"


@dataclass(frozen=True)
class CoinCosts:
    half_spread: np.ndarray
    impact_coef: np.ndarray
    sigma_d: np.ndarray
    adv: np.ndarray


def coin_costs(market, model: CostModel = CostModel()) -> CoinCosts:
    nan = np.full((market.n_bars, market.n_coins), np.nan)
    return CoinCosts(nan, nan, nan, nan)
