"""Hyperliquid isolated margin: the per-coin max leverage table and the liquidation price.

Max leverage is the first (smallest-notional) tier of Hyperliquid's mainnet margin tables
(docs: trading/margin-tiers). A research account never reaches the next tier (BTC 150M, ETH
100M, the 10x group 20M or 3M notional), so one number per coin is enough here.
Coins not in the table get DEFAULT_MAX_LEVERAGE (5x, the usual cap of smaller perps); pass
`max_leverage_by_coin` to `simulate` to override.

Maintenance margin rate = half the initial margin rate at max leverage (1.25% at 40x).
Isolated liquidation price (HYPERLIQUID.md):
    liq = entry - side * margin_available / size / (1 - l * side)
with margin_available = margin - l * notional, margin = notional / leverage.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

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


def maintenance_rate(max_lev: float | np.ndarray) -> float | np.ndarray:
    """Half the initial margin rate at max leverage."""
    return 0.5 / max_lev


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
    notional = entry * size
    rate = maintenance_rate(max_leverage)
    margin_available = notional / leverage - rate * notional
    return entry - side * margin_available / size / (1.0 - rate * side)
