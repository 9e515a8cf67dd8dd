"""zscore_reversion against a plain pandas rolling z-score; the order-book gate."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest
from _market_from_arrays import market_from_arrays

from harness.market import Market
from strategies import filters
from strategies import zscore_reversion as zr
from strategies.base import get_strategy


@pytest.fixture(scope="module")
def market() -> Market:
    rng = np.random.default_rng(21)
    n, k = 1200, 4
    # mean-reverting log prices so the bands are crossed often in both directions
    x = np.zeros((n, k))
    for t in range(1, n):
        x[t] = 0.97 * x[t - 1] + rng.normal(0, 0.01, k)
    return market_from_arrays(np.exp(x + np.log([100.0, 5.0, 0.3, 2000.0])), coins=("A", "B", "C", "D"))


def pandas_z(close: np.ndarray, w: int) -> np.ndarray:
    df = pd.DataFrame(close)
    r = df.rolling(w)
    return ((df - r.mean()) / r.std(ddof=0)).to_numpy()


@pytest.mark.parametrize("mode", ["live", "shadow"])
def test_entries_exits_stops_against_pandas(market, mode):
    p = zr.Params()
    sig = get_strategy("zscore_reversion").generate(market, p, mode)
    z = pandas_z(market.close, p.window)
    th = zr.LIVE if mode == "live" else zr.SHADOW
    with np.errstate(invalid="ignore"):
        want = np.where(z > th.z_entry, -1, np.where(z < -th.z_entry, 1, 0))
        exits = np.abs(z) < p.z_exit
    assert (want != 0).sum() > 100 and (want == 1).sum() > 30 and (want == -1).sum() > 30
    np.testing.assert_array_equal(sig.direction, want)
    np.testing.assert_array_equal(sig.exit, exits)
    on = sig.direction != 0
    np.testing.assert_allclose(sig.stop[on], 0.01 * market.close[on], rtol=1e-12)
    assert (sig.hold[on] == p.max_hold).all()
    np.testing.assert_allclose(sig.score[on], np.abs(z[on]) / th.z_entry, rtol=1e-9)
    assert np.isnan(sig.target[on]).all()


def test_shadow_is_a_wider_net(market):
    s = get_strategy("zscore_reversion")
    live, shadow = (s.generate(market, zr.Params(), m).direction for m in ("live", "shadow"))
    assert ((live != 0) <= (shadow != 0)).all() and (shadow != 0).sum() > (live != 0).sum()


def test_obi_gate_without_book_data_passes_and_warns(market):
    s = get_strategy("zscore_reversion")
    off = s.generate(market, zr.Params())
    with pytest.warns(zr.BookDataMissing, match="no recorded book imbalance"):
        on = s.generate(market, dataclasses.replace(zr.Params(), obi_gate=True))
    np.testing.assert_array_equal(on.direction, off.direction)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # with the gate off nothing is said
        s.generate(market, zr.Params())


def test_obi_gate_blocks_exactly_where_the_recorded_book_disagrees(market):
    """Books recorded on part of the bars: a signal is dropped exactly where its bar has a book
    leaning against it, kept everywhere else; the tally counts both kinds (hand-computed)."""
    rng = np.random.default_rng(3)
    obi = rng.uniform(-1, 1, market.close.shape)
    obi[: market.n_bars // 2] = np.nan  # recording began half-way through
    obi[::7] = np.nan
    bm = dataclasses.replace(market, book_imbalance=obi, _fingerprint=[])
    s = get_strategy("zscore_reversion")
    base = s.generate(bm, zr.Params()).direction
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # some book recorded: no warning, the tally says it
        with filters.recording() as verdicts:
            gated = s.generate(bm, dataclasses.replace(zr.Params(), obi_gate=True)).direction
    with np.errstate(invalid="ignore"):
        blocked = ((base > 0) & (obi < zr.LIVE.obi_min)) | ((base < 0) & (obi > -zr.LIVE.obi_min))
    assert blocked.sum() > 20
    np.testing.assert_array_equal(gated, np.where(blocked, 0, base))
    tally = filters.gate_tally(verdicts, "obi")
    signals = base != 0
    assert tally.judged == signals.sum() and tally.blocked == blocked.sum()
    assert tally.unknown == (signals & np.isnan(obi)).sum() > 50
    assert tally.passed == (signals & ~blocked & np.isfinite(obi)).sum()
