"""Hyperliquid isolated margin: the per-coin max leverage table and the liquidation price.

Max leverage is the first (smallest-notional) tier of Hyperliquid's mainnet margin tables
(docs: trading/margin-tiers). A research account never reaches the next tier (BTC 150M, ETH
100M, the 10x group 20M or 3M notional), so one number per coin is enough here.
Coins not in the table get DEFAULT_MAX_LEVERAGE (5x, the usual cap of smaller perps); pass
`max_leverage_by_coin` to `simulate` to override.

Maintenance margin rate = half the initial margin rate at max leverage (1.25% at 40x).
Isolated liquidation price (HYPERLIQUID.md):
    liq = entry - side * margin_available / size / (1 - l * side)
with margin_available = margin - l * notional, margin = notional / leverage. Rearranged, it is the
price p where the position's equity (margin + side * size * (p - entry)) equals l x its notional
at p: p = (entry - side * margin / size) / (1 - side * l). The backstop price is the same with
2/3 of l (the backstop liquidator takes over below 2/3 of the maintenance margin). The kernel
and Python both use `threshold_price`, so the formula has one home.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numba import njit

from harness.errors import ConfigError

DEFAULT_MAX_LEVERAGE = 5.0

_TIERS: dict[float, tuple[str, ...]] = {
    40.0: ("BTC",),
    25.0: ("ETH",),
    20.0: ("SOL", "XRP"),
    10.0: (
        "DOGE", "kPEPE", "SUI", "WLD", "TRUMP", "LTC", "ENA", "POPCAT", "WIF", "AAVE", "kBONK",
        "LINK", "CRV", "AVAX", "ADA", "UNI", "NEAR", "TIA", "APT", "BCH", "HYPE", "FARTCOIN",
        "OP", "ARB", "LDO", "TON", "MKR", "ONDO", "JUP", "INJ", "kSHIB", "SEI", "TRX", "BNB", "DOT",
    ),
}
MAX_LEVERAGE: dict[str, float] = {coin: lev for lev, coins in _TIERS.items() for coin in coins}


def max_leverage(coins: Iterable[str]) -> np.ndarray:
    """Max leverage of each coin (float64), DEFAULT_MAX_LEVERAGE where the table is silent."""
    return np.array([MAX_LEVERAGE.get(c, DEFAULT_MAX_LEVERAGE) for c in coins], dtype=np.float64)


BACKSTOP_SHARE = 2.0 / 3.0  # of the maintenance margin: below it the backstop takes the margin


def maintenance_rate(max_lev: float | np.ndarray) -> float | np.ndarray:
    """Half the initial margin rate at max leverage."""
    return 0.5 / max_lev


@njit(cache=True, inline="always")
def threshold_price(entry: float, side: int, margin_per_size: float, rate: float) -> float:
    """Price at which the isolated equity equals `rate` x the notional (liquidation: rate = l)."""
    return (entry - side * margin_per_size) / (1.0 - side * rate)


def liquidation_price(entry: float, side: int, size: float, leverage: float, max_leverage: float) -> float:
    """Isolated-margin liquidation price of a position opened at `entry` (side +1 long, -1 short).

    `leverage` is the position's isolated leverage; it cannot exceed the coin's max leverage.
    """
    if side not in (1, -1):
        raise ConfigError(f"side must be +1 (long) or -1 (short), got {side}")
    if not (entry > 0 and size > 0):
        raise ConfigError(f"entry and size must be positive, got entry={entry}, size={size}")
    if not (0 < leverage <= max_leverage):
        raise ConfigError(
            f"leverage {leverage} must be in (0, max_leverage={max_leverage}]: lower it to the coin's cap"
        )
    return threshold_price(entry, side, entry / leverage, maintenance_rate(max_leverage))


def backstop_price(entry: float, side: int, size: float, leverage: float, max_leverage: float) -> float:
    """Price beyond which a bar's open hands the position (and its margin) to the backstop."""
    liquidation_price(entry, side, size, leverage, max_leverage)  # the same input checks
    return threshold_price(entry, side, entry / leverage, BACKSTOP_SHARE * maintenance_rate(max_leverage))
