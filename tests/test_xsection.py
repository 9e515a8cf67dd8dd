"""xsection_rank: the composite ranking against a plain pandas computation, the gates, cadence."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from _market_from_arrays import market_from_arrays

from strategies import xsection_rank as xr
from strategies.base import get_strategy
from strategies.filters import efficiency_gate, ma_gate

N_BARS, N_COINS = 900, 16


def make_market(open_interest=None):
    rng = np.random.default_rng(9)
    drift = rng.normal(0, 0.0015, N_COINS)
    vol = rng.uniform(0.003, 0.02, N_COINS)
    r = drift + rng.standard_normal((N_BARS, N_COINS)) * vol
    close = 10 * np.exp(np.cumsum(r, axis=0))
    f = np.zeros((N_BARS, N_COINS))
    for t in range(1, N_BARS):
        f[t] = 0.9 * f[t - 1] + 0.1 * 1.25e-5 + rng.normal(0, rng.uniform(2e-6, 3e-5), N_COINS)
    coins = tuple(f"K{i:02d}" for i in range(N_COINS))
    return market_from_arrays(close, funding=f, open_interest=open_interest, coins=coins)


@pytest.fixture(scope="module")
def market():
    return make_market()


def pandas_composite(m, p: xr.Params) -> pd.DataFrame:
    c = pd.DataFrame(m.close)
    f = pd.DataFrame(m.funding)
    mom = c / c.shift(p.mom_lookback) - 1
    inv_vol = 1 / np.log(c / c.shift(1)).rolling(p.vol_window).std(ddof=0)
    fr = f.rolling(p.fz_window)
    fz = (f - fr.mean()) / fr.std(ddof=0)
    hours = pd.Series(m.index.hour + 24 * ((m.index - pd.Timestamp("1970-01-01", tz="UTC")).days))
    rows = (hours % p.rebalance == 0).to_numpy()
    known = mom.notna() & inv_vol.notna() & fz.notna()
    comp = (0.40 * mom.abs().where(known).rank(axis=1, pct=True)
            + 0.30 * inv_vol.where(known).rank(axis=1, pct=True)
            + 0.30 * fz.abs().where(known).rank(axis=1, pct=True))
    return comp[rows], mom


def test_pct_rank_matches_pandas():
    x = np.array([[3.0, np.nan, 1.0, 3.0, -2.0], [np.nan] * 5, [0.5, 0.5, np.inf, 7.0, np.nan]])
    want = pd.DataFrame(np.where(np.isfinite(x), x, np.nan)).rank(axis=1, pct=True).to_numpy()
    np.testing.assert_allclose(xr.pct_rank(x), want, equal_nan=True)


def test_composite_and_top_n_match_pandas(market):
    p = xr.Params()
    rk = xr.ranking(market, p)
    comp, _ = pandas_composite(market, p)
    rows = comp.index.to_numpy()
    assert rk.rebalance.sum() == len(rows) and (np.flatnonzero(rk.rebalance) == rows).all()
    np.testing.assert_allclose(rk.composite[rows], comp.to_numpy(), rtol=1e-9, equal_nan=True)
    assert np.isnan(rk.composite[~rk.rebalance]).all()
    top = xr.top_n_mask(rk.composite, p.top_n)
    filled = comp.dropna(how="all")
    assert len(filled) > 20
    for t, row in filled.iterrows():
        assert set(np.flatnonzero(top[t])) == set(row.nlargest(p.top_n).index)


@pytest.mark.parametrize("mode", ["live", "shadow"])
def test_signals_are_the_gated_top_n(market, mode):
    p = xr.Params()
    th = xr.LIVE if mode == "live" else xr.SHADOW
    sig = get_strategy("xsection_rank").generate(market, p, mode)
    comp, mom = pandas_composite(market, p)
    side = np.sign(mom.to_numpy())
    want = np.zeros(market.close.shape, dtype=np.int8)
    for t, row in comp.dropna(how="all").iterrows():
        for c in row.nlargest(p.top_n).index:
            want[t, c] = side[t, c]
    allowed, boost = efficiency_gate(market.close, p.eff_window, reject=th.eff_reject)
    if th.use_ma_gate:
        allowed &= ma_gate(market.close, want)
    want = np.where(allowed, want, 0)
    assert (want != 0).sum() > 50 and (want == 1).sum() > 10 and (want == -1).sum() > 10
    np.testing.assert_array_equal(sig.direction, want)
    assert ((sig.direction != 0).sum(axis=1) <= p.top_n).all()
    on = sig.direction != 0
    rk = xr.ranking(market, p)
    np.testing.assert_allclose(sig.score[on], (rk.composite * boost)[on])
    # dropped coins exit at the rebalance bar; nothing happens between rebalances
    assert (sig.exit[rk.rebalance] == (sig.direction[rk.rebalance] == 0)).all()
    assert not sig.exit[~rk.rebalance].any() and not on[~rk.rebalance].any()


def test_open_interest_gate_only_where_known(market):
    p = xr.Params()
    s = get_strategy("xsection_rank")
    base = s.generate(market, p, "shadow").direction
    t, c = np.argwhere(base != 0)[-1]
    oi = np.full(market.close.shape, np.nan)
    oi[t, c] = 0.5 * p.min_oi_usd / market.close[t, c]  # $5M: too thin
    t2, c2 = np.argwhere(base != 0)[-2]
    oi[t2, c2] = 2.0 * p.min_oi_usd / market.close[t2, c2]  # $20M: fine
    gated = s.generate(make_market(open_interest=oi), p, "shadow").direction
    assert gated[t, c] == 0 and gated[t2, c2] == base[t2, c2]
    base[t, c] = 0
    np.testing.assert_array_equal(gated, base)


def test_rebalance_bars_are_fixed_by_time(market):
    p = dataclasses.replace(xr.Params(), rebalance=6)
    full = xr.rebalance_bars(market, p.rebalance)
    part = xr.rebalance_bars(market.slice(5, 300), p.rebalance)
    np.testing.assert_array_equal(part, full[5:300])
    assert (market.index[full].hour % 6 == 0).all()
