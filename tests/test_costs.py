"""harness.costs (friction v5 slippage) and `python -m sweep data costs`.

Expected values come from the papers' formulas evaluated here in plain Python (math, one day
at a time), from closed forms (a planted spread with no volatility), or from published facts
about the real data; never from the module's own output.
"""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from _data_frames import need_shared
from typer.testing import CliRunner

from harness.costs import BPS, CoinCosts, CostModel, coin_costs, slippage, tick_half_spread
from harness.errors import ConfigError
from harness.market import Market
from harness.resample import resample
from harness.sources import load_market
from sweep import data_cli

ROOT = Path(__file__).resolve().parents[1]
FREQ = {"15m": "15min", "1h": "h", "4h": "4h", "1d": "D"}


def make_market(high, low, close, volume=None, interval="1d", start="2024-01-01") -> Market:
    close = np.asarray(close, dtype=float).reshape(len(close), -1)
    shape = close.shape
    high = np.asarray(high, dtype=float).reshape(shape)
    low = np.asarray(low, dtype=float).reshape(shape)
    volume = (np.full(shape, 1.0) if volume is None
              else np.asarray(volume, dtype=float).reshape(shape))
    opn = np.clip(np.vstack([close[:1], close[:-1]]), low, high)
    return Market(index=pd.date_range(start, periods=shape[0], freq=FREQ[interval], tz="UTC"),
                  coins=tuple(f"C{i}" for i in range(shape[1])), interval=interval, open=opn,
                  high=high, low=low, close=close, volume=volume, funding=np.zeros(shape),
                  premium=np.full(shape, np.nan), open_interest=np.full(shape, np.nan),
                  listed=np.isfinite(close), source="test arrays")


def random_market(interval: str, days: int, coins: int = 2, seed: int = 0) -> Market:
    per_day = 86400 // {"15m": 900, "1h": 3600, "4h": 14400, "1d": 86400}[interval]
    n = days * per_day
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.004, (n, coins)), axis=0))
    opn = np.vstack([close[:1], close[:-1]])
    high = np.maximum(opn, close) * (1 + rng.uniform(0, 0.003, (n, coins)))
    low = np.minimum(opn, close) * (1 - rng.uniform(0, 0.003, (n, coins)))
    m = make_market(high, low, close, rng.uniform(1e3, 1e4, (n, coins)), interval)
    return Market(**{**m.__dict__, "open": opn, "_fingerprint": []})


# --- the paper's formulas, one day at a time --------------------------------------------------

def ar_pair(h0, l0, c0, h1, l1) -> float:
    """Abdi-Ranaldo: 4 (c_t - eta_t)(c_t - eta_{t+1}), eta = mean of log high and log low."""
    eta0 = (math.log(h0) + math.log(l0)) / 2
    eta1 = (math.log(h1) + math.log(l1)) / 2
    c = math.log(c0)
    return 4 * (c - eta0) * (c - eta1)


def cs_pair(h0, l0, c0, h1, l1) -> float:
    """Corwin-Schultz two-day spread, day t+1 shifted by the overnight gap, negative -> 0."""
    if l1 > c0:  # rose overnight: move day t+1 down by the gap
        h1, l1 = h1 - (l1 - c0), c0
    elif h1 < c0:  # fell overnight: move it up
        h1, l1 = c0, l1 + (c0 - h1)
    beta = math.log(h0 / l0) ** 2 + math.log(h1 / l1) ** 2
    gamma = math.log(max(h0, h1) / min(l0, l1)) ** 2
    k = 3 - 2 * math.sqrt(2)
    alpha = (math.sqrt(2 * beta) - math.sqrt(beta)) / k - math.sqrt(gamma / k)
    return max(2 * (math.exp(alpha) - 1) / (1 + math.exp(alpha)), 0.0)


def reference(days, window: int, min_obs: int, estimator: str = "abdi_ranaldo"):
    """Per day (h, l, c, v) or None: (half spread, sigma_d, adv) with the module doc's rules."""
    out = []
    for t in range(len(days)):
        pairs, rets, dvs = [], [], []
        for d in range(max(0, t - window + 1), t + 1):
            if days[d] is None:
                continue
            h, lo, c, v = days[d]
            dvs.append(c * v)
            if d >= 1 and days[d - 1] is not None:
                h0, l0, c0, _ = days[d - 1]
                pair = ar_pair if estimator == "abdi_ranaldo" else cs_pair
                pairs.append(pair(h0, l0, c0, h, lo))
                rets.append(math.log(c / c0))
        if len(pairs) >= min_obs:
            mean = sum(pairs) / len(pairs)
            spread = math.sqrt(max(mean, 0.0)) if estimator == "abdi_ranaldo" else mean
            half = spread / 2
        else:
            half = math.nan
        sigma = statistics.stdev(rets) if len(rets) >= min_obs else math.nan
        adv = sum(dvs) / len(dvs) if len(dvs) >= min_obs else math.nan
        out.append((half, sigma, adv))
    return np.array(out)


DAYS = [  # (high, low, close, volume)
    (101.0, 99.0, 100.5, 10.0),
    (103.0, 100.5, 101.0, 20.0),
    (102.5, 100.0, 102.0, 30.0),
    (104.0, 101.0, 101.5, 40.0),
    (103.0, 101.5, 103.0, 50.0),
    (105.5, 102.0, 104.0, 60.0),
    (104.5, 100.5, 101.0, 70.0),
    (103.5, 102.5, 103.5, 80.0),  # opens above the previous close: an overnight gap up
]


def daily(days) -> Market:
    cols = [[np.nan if d is None else d[i] for d in days] for i in range(4)]
    return make_market(*cols)


def as_array(costs: CoinCosts, coin: int = 0) -> np.ndarray:
    return np.stack([costs.half_spread[:, coin], costs.sigma_d[:, coin], costs.adv[:, coin]], 1)


@pytest.mark.parametrize("estimator", ["abdi_ranaldo", "corwin_schultz"])
def test_estimators_match_the_papers_formulas_by_hand(estimator):
    model = CostModel(window_days=3, min_days=2, estimator=estimator)
    want = reference(DAYS, 3, 2, estimator)
    got = coin_costs(daily(DAYS), model)
    np.testing.assert_allclose(as_array(got), want, rtol=1e-12, equal_nan=True)
    assert np.isnan(want[:2, 0]).all() and np.isfinite(want[2:, 0]).all()  # history first
    if estimator == "abdi_ranaldo":  # the days exercise both a positive and a negative mean
        means = [np.mean([ar_pair(*DAYS[d - 1][:3], *DAYS[d][:2]) for d in (t - 1, t)])
                 for t in range(2, len(DAYS))]
        assert min(means) < 0 < max(means)
    np.testing.assert_allclose(got.impact_coef[:, 0], want[:, 1] / np.sqrt(want[:, 2]),
                               rtol=1e-12, equal_nan=True)


def test_a_planted_spread_without_volatility_is_recovered():
    """Efficient price constant, every day trades the ask (high) and the bid (low), the close
    alternating between them: AR gives S = ln(ask/bid) (c - eta = +-S/2, eta constant) and CS
    gives alpha = ln(ask/bid), so S = 2(ask - bid)/(ask + bid), the spread over the mid."""
    ask, bid, n = 100.10, 99.90, 40
    close = [ask if i % 2 else bid for i in range(n)]
    market = make_market([ask] * n, [bid] * n, close)
    ar = coin_costs(market, CostModel(estimator="abdi_ranaldo")).half_spread[-1, 0]
    cs = coin_costs(market, CostModel(estimator="corwin_schultz")).half_spread[-1, 0]
    assert 2 * ar == pytest.approx(math.log(ask / bid), rel=1e-12)
    assert 2 * cs == pytest.approx(2 * (ask - bid) / (ask + bid), rel=1e-12)


def test_a_day_missing_a_bar_is_unknown_for_that_coin():
    hourly = random_market("1h", days=12, coins=2, seed=3)
    close = hourly.close.copy()
    close[5 * 24 + 7, 0] = np.nan  # coin 0 misses one hour of day 5
    arrays = {f: getattr(hourly, f).copy() for f in ("open", "high", "low", "volume")}
    for a in arrays.values():
        a[5 * 24 + 7, 0] = np.nan
    hole = Market(**{**hourly.__dict__, **arrays, "close": close, "listed": np.isfinite(close),
                     "_fingerprint": []})
    bars = hourly.close.shape[0]
    days = []
    for d in range(bars // 24):
        rows = slice(d * 24, d * 24 + 24)
        days.append(None if d == 5 else (hole.high[rows, 0].max(), hole.low[rows, 0].min(),
                                          hole.close[d * 24 + 23, 0], hole.volume[rows, 0].sum()))
    want = reference(days, 4, 3)
    got = as_array(coin_costs(hole, CostModel(window_days=4, min_days=3, estimator="abdi_ranaldo")))
    np.testing.assert_allclose(got[23::24], want, rtol=1e-12, equal_nan=True)
    # a pair needs both of its days: windows ending on days 6-8 hold only 2 known pairs
    assert np.isnan(want[6:9, 0]).all() and np.isfinite(want[[5, 9], 0]).all()


def test_rows_depend_only_on_days_closed_by_the_bar():
    market = random_market("1h", days=30, coins=2, seed=1)
    model = CostModel(window_days=10, min_days=5, estimator="abdi_ranaldo")
    ref = coin_costs(market, model)
    names = ("half_spread", "impact_coef", "sigma_d", "adv")
    rng = np.random.default_rng(9)
    for t in (14 * 24 + 22, 14 * 24 + 23, 15 * 24, 20 * 24 + 5):
        scale = np.ones(market.close.shape)
        scale[t + 1:] = rng.uniform(0.5, 1.5, scale[t + 1:].shape)
        moved = Market(**{**market.__dict__, "_fingerprint": [],
                          **{f: getattr(market, f) * scale for f in
                             ("open", "high", "low", "close", "volume")}})
        got = coin_costs(moved, model)
        for name in names:
            np.testing.assert_array_equal(getattr(got, name)[:t + 1], getattr(ref, name)[:t + 1])
        assert not np.array_equal(got.adv[t + 1:], ref.adv[t + 1:], equal_nan=True)
    # The last bar of a UTC day (23:00, closing at 00:00) is the first row to see that day;
    # the next day's first bar sees nothing new.
    day, hour_in_day = 14, 12
    bumped = market.volume.copy()
    bumped[day * 24 + hour_in_day] *= 3
    got = coin_costs(Market(**{**market.__dict__, "volume": bumped, "_fingerprint": []}), model)
    last, first_next = day * 24 + 23, day * 24 + 24
    np.testing.assert_array_equal(got.adv[:last], ref.adv[:last])
    assert (got.adv[last] > ref.adv[last]).all()
    np.testing.assert_array_equal(ref.adv[first_next], ref.adv[last])


def test_every_interval_gives_the_same_costs_at_each_day_close():
    base = random_market("15m", days=25, coins=3, seed=2)
    model = CostModel(window_days=7, min_days=4)
    per_day = {"15m": 96, "1h": 24, "4h": 6, "1d": 1}
    want = as_array(coin_costs(resample(base, "1d"), model), 2)
    assert np.isfinite(want[-10:]).all()
    for interval, k in per_day.items():
        got = as_array(coin_costs(resample(base, interval), model), 2)
        np.testing.assert_allclose(got[k - 1::k], want, rtol=1e-12, equal_nan=True)


def test_floor_cap_and_fallback():
    def costs(half, coef):
        a = np.array([[half]]), np.array([[coef]])
        return CoinCosts(half_spread=a[0], impact_coef=a[1], sigma_d=a[1], adv=a[1])

    m = CostModel()
    # 3 bps half spread + 0.5 bps per sqrt($): at $10k that is 3 + 0.5 * 100 = 53 bps
    assert slippage(costs(3 * BPS, 0.5 * BPS), 0, 0, 10_000, m, 5) == pytest.approx(53 * BPS)
    assert slippage(costs(3 * BPS, 0.5 * BPS), 0, 0, -10_000, m, 5) == pytest.approx(53 * BPS)
    assert slippage(costs(0.0, 0.0), 0, 0, 10_000, m, 5) == pytest.approx(1 * BPS)  # floor
    assert slippage(costs(3 * BPS, 1.0), 0, 0, 10_000, m, 5) == pytest.approx(200 * BPS)  # cap
    assert slippage(costs(3 * BPS, math.inf), 0, 0, 10_000, m, 5) == pytest.approx(200 * BPS)
    assert slippage(costs(3 * BPS, math.inf), 0, 0, 0.0, m, 5) == pytest.approx(3 * BPS)
    for half, coef in ((math.nan, 0.0), (0.0, math.nan)):
        assert slippage(costs(half, coef), 0, 0, 10_000, m, 5) == pytest.approx(5 * BPS)
    tight = CostModel(floor_bps=2, cap_bps=50)
    assert slippage(costs(0.0, 0.0), 0, 0, 1e4, tight, 7) == pytest.approx(2 * BPS)
    assert slippage(costs(0.0, 1.0), 0, 0, 1e4, tight, 7) == pytest.approx(50 * BPS)
    assert slippage(costs(math.nan, 1.0), 0, 0, 1e4, tight, 7) == pytest.approx(7 * BPS)
    # zero volume for a whole window: ADV 0, impact infinite, the fill pays the cap
    closes = [100.0, 100.5] * 20
    flat = make_market([101.0] * 40, [99.0] * 40, closes, [0.0] * 40)
    c = coin_costs(flat)
    assert c.adv[-1, 0] == 0 and slippage(c, 39, 0, 1e4, m, 5) == pytest.approx(200 * BPS)


def test_bad_models_are_refused():
    for kwargs in ({"estimator": "roll"}, {"min_days": 1}, {"min_days": 31},
                   {"floor_bps": 5, "cap_bps": 1}, {"impact_k": -1}):
        with pytest.raises(ConfigError):
            CostModel(**kwargs)


def test_real_btc_costs_less_than_a_tail_coin():
    """BTC against REQ, the full-span coin with the lowest median ADV (~$60k a day).

    Plausible ranges, from facts independent of this code: BTC's daily volatility in
    2024-09..2025-03 was 1% to 6% and its Hyperliquid volume $0.5B to $10B a day, so the
    square-root impact of $10k is between 1% x sqrt(1e4/1e10) = 0.1 bps and
    6% x sqrt(1e4/5e8) = 8.5 bps. Its book quotes one $1 tick at $55k-$110k (0.1-0.2 bps),
    so the typical all-in cost of $10k is at most a few bps: the median over the span must lie
    between the 1 bp floor and v4's flat 5 bps (which DESIGN calls too punitive on majors).
    REQ trades ~1e-5 of BTC's volume: its impact alone is ~100x BTC's.
    """
    shared = need_shared()
    market = load_market(shared, interval="1h", coins=["BTC", "REQ"])
    model = CostModel()
    costs = coin_costs(market, model)
    rows = np.flatnonzero(costs.known.all(axis=1))
    assert rows.size > 4000
    slip = np.array([[slippage(costs, t, c, 10_000, model, 5) for c in (0, 1)] for t in rows]) / BPS
    impact = costs.impact_coef[rows, 0] * 100 / BPS
    assert 0.1 <= np.median(impact) <= 8.5
    assert 1.0 <= np.median(slip[:, 0]) <= 5.0
    assert np.median(slip[:, 1]) > 10 * np.median(slip[:, 0])
    assert np.mean(slip[:, 0] < slip[:, 1]) > 0.9


def test_costs_command_table_and_bad_input():
    app = typer.Typer()
    data_cli.register(app)

    @app.callback()
    def _root() -> None:
        pass

    result = CliRunner().invoke(app, ["data", "costs", "--data", "embedded", "--coins",
                                      "BTC,ETH", "--notional", "5000", "--notional", "250000"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for text in ("slippage @ $5k bps", "slippage @ $250k bps", "ADV", "sigma_d", "BTC", "ETH",
                 "half a price tick"):
        assert text in result.output
    proc = subprocess.run([sys.executable, "-m", "sweep", "data", "costs", "--data", "embedded",
                           "--at", "1990-01-01"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and "before the first bar" in lines[0]


def test_tick_half_spread_from_five_significant_figures():
    # 83,456 is quoted in $1 ticks, 0.012345 in 1e-6 ticks, 9.9999 in 1e-4 ticks
    closes = np.array([[83_456.0, 0.012345, 9.9999]])
    want = [0.5 / 83_456.0, 0.5e-6 / 0.012345, 0.5e-4 / 9.9999]
    np.testing.assert_allclose(tick_half_spread(closes)[0], want, rtol=1e-12)
