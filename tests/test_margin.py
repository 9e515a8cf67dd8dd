"""Hyperliquid isolated margin: the max leverage table and the liquidation price."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.margin import DEFAULT_MAX_LEVERAGE, liquidation_price, maintenance_rate, max_leverage


def test_published_example_1_btc_long_10x_at_40x_max():
    assert liquidation_price(100_000.0, 1, 1.0, 10.0, 40.0) == pytest.approx(91_139.24, abs=0.005)


@pytest.mark.parametrize("side", [1, -1])
@pytest.mark.parametrize("lev,max_lev", [(10.0, 40.0), (5.0, 20.0), (3.0, 3.0)])
def test_liquidation_is_where_margin_plus_pnl_meets_maintenance(side, lev, max_lev):
    # Independent derivation: at the liquidation price L the isolated equity
    # margin + side * size * (L - entry) equals the maintenance margin l * size * L.
    entry, size = 2_500.0, 4.0
    margin, rate = entry * size / lev, 0.5 / max_lev
    expected = (margin - side * size * entry) / (rate * size - side * size)
    liq = liquidation_price(entry, side, size, lev, max_lev)
    assert liq == pytest.approx(expected, rel=1e-12)
    assert (liq < entry) if side > 0 else (liq > entry)
    assert liquidation_price(entry, side, 10 * size, lev, max_lev) == pytest.approx(liq, rel=1e-12)


def test_maintenance_rate_is_half_the_initial_rate_at_max_leverage():
    assert maintenance_rate(40.0) == pytest.approx(0.0125)
    assert maintenance_rate(20.0) == pytest.approx(0.025)
    assert maintenance_rate(3.0) == pytest.approx(1 / 6)


def test_max_leverage_table_from_hyperliquid_docs():
    got = max_leverage(["BTC", "ETH", "SOL", "XRP", "DOGE", "HYPE", "OP", "NOT_A_COIN"])
    np.testing.assert_array_equal(got, [40, 25, 20, 20, 10, 10, 10, DEFAULT_MAX_LEVERAGE])
    assert got.dtype == np.float64


def test_bad_inputs_are_refused():
    with pytest.raises(ConfigError, match="leverage"):
        liquidation_price(100.0, 1, 1.0, 50.0, 40.0)
    with pytest.raises(ConfigError, match="side"):
        liquidation_price(100.0, 0, 1.0, 10.0, 40.0)
    with pytest.raises(ConfigError, match="positive"):
        liquidation_price(-1.0, 1, 1.0, 10.0, 40.0)
