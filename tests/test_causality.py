"""THE CAUSALITY GATE: no signal or tag at or before bar t may depend on data after t.

For every registered strategy (iterating the registry, so a strategy added later is covered
without editing this file), in live and shadow mode, signals computed on the full market must
equal, at every bar <= t, the signals computed
  (a) on the market cut after bar t, and
  (b) on the market whose bars after t are replaced by random prices (valid OHLC), random
      volume, funding, premium, open interest and book imbalance,
for every Signals array (direction, stop, target, exit, score, session, regime, vol_bucket,
setup, hold, trail), compared exactly (NaN equal to NaN).

Cut bars: half of them on bars where the full run signals (the bar most likely to peek at t+1),
the rest uniform; seeded. A strategy with a `fit` is fitted once on a train window that ends
before the earliest cut, and that fitted state is used in all three runs.

Markets carry recorded-like snapshots (open interest straddling the $10M gate, book imbalance,
each missing on some bars) so the gates that read them decide something; strategies whose
defaults leave such an input off run once more with it on (VARIANTS).

Markets: the embedded default (harness.sources "embedded"; a seeded synthetic market when that is
unavailable) with 20 cuts, and a subset of ../shared/data (12 coins incl. BTC, the last 2,000
hourly bars) with 8 cuts to keep the gate under a minute (skipped when the folder is absent).
Daily strategies ("1d") run on the default resampled to days and on the 2022 bear basket.
Strategies on bars shorter than the default's hour ("15m") run on the default's hourly bars as
they are (their code does not depend on the bar length) and on the last 2,000 bars of the real
15m file.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from _strategy_markets import default_market, real_daily_market, real_market

from harness.market import Market, interval_seconds
from harness.resample import resample
from harness.signals import Signals
from strategies.base import RegisteredStrategy, registry

MODES = ("live", "shadow")
N_CUTS_DEFAULT = 20
N_CUTS_REAL = 8
TRAIN_FRAC = 0.3  # fitted strategies: train on the first 30% of bars, cut only after it

STRATEGIES = sorted(registry().items())
# parameters that switch on an input the defaults leave off
VARIANTS = {"zscore_reversion": {"obi_gate": True}}


# ---------------------------------------------------------------- markets


_CACHE: dict[str, Market | None] = {}


def with_snapshots(market: Market | None, seed: int = 11) -> Market | None:
    """The market with recorded-like open interest (USD value around the $10M gate, in coins)
    and book imbalance, each unknown (NaN) on a random fifth of the bars."""
    if market is None:
        return None
    rng = np.random.default_rng(seed)
    shape = market.close.shape
    usd = np.exp(rng.normal(np.log(10e6), 1.0, shape))
    with np.errstate(invalid="ignore"):
        oi = np.where(rng.random(shape) < 0.2, np.nan, usd / market.close)
    obi = np.where(rng.random(shape) < 0.2, np.nan, rng.uniform(-1, 1, shape))
    return dataclasses.replace(market, open_interest=oi, book_imbalance=obi, _fingerprint=[])


def market_for(strategy: RegisteredStrategy, source: str) -> Market | None:
    key = f"{source}:{strategy.interval}"
    if key not in _CACHE:
        if source == "default":
            m = default_market()
            finer = interval_seconds(strategy.interval) <= m.bar_seconds
            _CACHE[key] = m if finer else resample(m, strategy.interval)
        elif strategy.interval == "1d":
            _CACHE[key] = real_daily_market()
        elif strategy.interval == "15m":
            _CACHE[key] = real_market(interval="15m")
        else:
            m = real_market()
            _CACHE[key] = None if m is None else (
                m if strategy.interval == m.interval else resample(m, strategy.interval))
        _CACHE[key] = with_snapshots(_CACHE[key])
    return _CACHE[key]


def perturb_after(market: Market, t: int, rng: np.random.Generator) -> Market:
    """Same market up to bar t; after it random valid OHLC (a random walk from the last
    close), volume, funding, premium, open interest and book imbalance, on the same listed bars."""
    n, k = market.n_bars - t - 1, market.n_coins
    if n <= 0:
        return market
    last = np.nan_to_num(market.close[t], nan=1.0)
    last = np.where(last > 0, last, 1.0)
    close = last * np.exp(np.cumsum(rng.normal(0, 0.03, (n, k)), axis=0))
    opn = np.vstack([last, close[:-1]]) * np.exp(rng.normal(0, 0.01, (n, k)))
    high = np.maximum(opn, close) * (1 + rng.uniform(0, 0.03, (n, k)))
    low = np.minimum(opn, close) * (1 - rng.uniform(0, 0.03, (n, k)))
    listed = market.listed[t + 1:]
    new = {}
    for name, tail in (("open", opn), ("high", high), ("low", low), ("close", close),
                       ("volume", rng.lognormal(12, 2, (n, k)))):
        arr = getattr(market, name).copy()
        arr[t + 1:] = np.where(listed, tail, np.nan)
        new[name] = arr
    for name, tail in (("funding", np.where(listed, rng.normal(0, 2e-4, (n, k)), 0.0)),
                       ("premium", rng.normal(0, 1e-3, (n, k))),
                       ("open_interest", rng.lognormal(15, 2, (n, k))),
                       ("book_imbalance", rng.uniform(-1, 1, (n, k)))):
        arr = getattr(market, name).copy()
        arr[t + 1:] = tail
        new[name] = arr
    return dataclasses.replace(market, _fingerprint=[], **new)


def pick_cuts(full: dict[str, Signals], lo: int, hi: int, n: int, rng: np.random.Generator) -> list[int]:
    """n distinct cut bars in [lo, hi): up to half on bars where some mode signals."""
    fired = np.zeros(hi, dtype=bool)
    for sig in full.values():
        fired |= (sig.direction[:hi] != 0).any(axis=1)
    fired[:lo] = False
    on_signal = np.flatnonzero(fired)
    cuts = set(rng.choice(on_signal, min(n // 2, on_signal.size), replace=False).tolist())
    rest = np.setdiff1d(np.arange(lo, hi), list(cuts))
    cuts |= set(rng.choice(rest, n - len(cuts), replace=False).tolist())
    return sorted(cuts)


def assert_same_prefix(full: Signals, other: Signals, t: int, what: str) -> None:
    for name in full.array_names():
        a, b = getattr(full, name)[: t + 1], getattr(other, name)[: t + 1]
        diff = (~((a == b) | (np.isnan(a) & np.isnan(b)))) if a.dtype.kind == "f" else a != b
        if diff.any():
            bad = np.argwhere(diff)
            bar, coin = bad[0]
            raise AssertionError(
                f"{full.strategy}: {name} at bar {bar} coin {coin} differs {what} at bar {t} "
                f"(full: {a[bar, coin]!r}, other: {b[bar, coin]!r}): the strategy looks ahead")


def run_gate(strategy: RegisteredStrategy, market: Market, n_cuts: int, seed: int,
             params=None) -> int:
    """Check every cut; returns the number of signals checked at or before the cuts."""
    rng = np.random.default_rng(seed)
    params = strategy.default_params() if params is None else params
    lo = max(int(market.n_bars * TRAIN_FRAC), 1)
    fitted = strategy.fit(market.slice(0, lo), params)
    full = {mode: strategy.generate(market, params, mode, fitted) for mode in MODES}
    checked = sum(int((s.direction != 0).sum()) for s in full.values())
    for t in pick_cuts(full, lo, market.n_bars - 1, n_cuts, rng):
        cut = market.slice(0, t + 1)
        noisy = perturb_after(market, t, rng)
        for mode in MODES:
            assert_same_prefix(full[mode], strategy.generate(cut, params, mode, fitted), t, f"({mode}) when cut")
            assert_same_prefix(full[mode], strategy.generate(noisy, params, mode, fitted), t,
                               f"({mode}) when the bars after it are randomized")
    return checked


@pytest.mark.parametrize("name,strategy", STRATEGIES, ids=[n for n, _ in STRATEGIES])
def test_causal_on_embedded_default(name, strategy):
    market = market_for(strategy, "default")
    checked = run_gate(strategy, market, N_CUTS_DEFAULT, seed=sum(map(ord, name)))
    assert checked > 0, (f"{name} produced no signal on the default market in either mode: the "
                         "causality gate would check only tags; make it trade there")


@pytest.mark.parametrize("name,strategy", STRATEGIES, ids=[n for n, _ in STRATEGIES])
def test_causal_on_real_data(name, strategy):
    market = market_for(strategy, "real")
    if market is None:
        pytest.skip("../shared/data not found (set HLQ_SHARED_DATA): real-data causality skipped")
    run_gate(strategy, market, N_CUTS_REAL, seed=1 + sum(map(ord, name)))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_causal_with_inputs_switched_on(name):
    strategy = registry()[name]
    params = dataclasses.replace(strategy.default_params(), **VARIANTS[name])
    market = market_for(strategy, "default")
    checked = run_gate(strategy, market, N_CUTS_DEFAULT, seed=2 + sum(map(ord, name)), params=params)
    assert checked > 0
    real = market_for(strategy, "real")
    if real is not None:
        run_gate(strategy, real, N_CUTS_REAL, seed=3 + sum(map(ord, name)), params=params)


# ---------------------------------------------------------------- the gate itself must bite


def _peeking(market: Market, params, mode, fitted) -> Signals:
    """A deliberately broken strategy: goes long when the NEXT close is higher."""
    from strategies.common import FAMILY_TREND, finish

    nxt = np.vstack([market.close[1:], np.full((1, market.n_coins), np.nan)])
    with np.errstate(invalid="ignore"):
        d = (nxt > market.close).astype(np.int8)
    return finish(market, "peeking", mode, d, 0.01 * market.close, 2.0, 1.0, FAMILY_TREND)


def test_gate_catches_a_peeking_strategy():
    from strategies.momentum import Params

    cheat = RegisteredStrategy("peeking", Params, _peeking)
    with pytest.raises(AssertionError, match="looks ahead"):
        run_gate(cheat, market_for(registry()["momentum"], "default"), 4, seed=3)


def _peeking_book(market: Market, params, mode, fitted) -> Signals:
    """Broken the subtle way: reads the NEXT bar's recorded book."""
    from strategies.common import FAMILY_TREND, finish

    nxt = np.vstack([market.book_imbalance[1:], np.full((1, market.n_coins), np.nan)])
    with np.errstate(invalid="ignore"):
        d = (nxt > 0.5).astype(np.int8)
    return finish(market, "peeking_book", mode, d, 0.01 * market.close, 2.0, 1.0, FAMILY_TREND)


def test_gate_catches_a_strategy_peeking_at_the_next_book():
    from strategies.momentum import Params

    cheat = RegisteredStrategy("peeking_book", Params, _peeking_book)
    with pytest.raises(AssertionError, match="looks ahead"):
        run_gate(cheat, market_for(registry()["momentum"], "default"), 4, seed=3)
