"""THE CAUSALITY GATE (sweep/causality.py holds it; `sweep run` and `sweep check` run the same
code): no signal or tag at or before bar t may depend on data after t.

For every registered strategy (iterating the registry, so a strategy added later is covered
without editing this file), in live and shadow mode, for the default parameters and sets sampled
from the search space: the signals on the full market must equal, at every bar <= t, those on the
market cut after bar t and on the market whose bars after t are randomized, for every Signals
array, exactly. Cut bars: half of them on bars that signal, seeded.

Markets: the embedded default (a seeded synthetic market) with 20 cuts, and a subset of
../shared/data (12 coins incl. BTC, the last 2,000 hourly bars) with 8 cuts to keep the gate under
a minute (skipped when the folder is absent). Daily strategies ("1d") run on the default resampled
to days and on the 2022 bear basket. Strategies on bars shorter than the default's hour ("15m")
run on the default's hourly bars as they are (their code does not depend on the bar length) and
on the last 2,000 bars of the real 15m file.

A strategy with a `regime_gate` parameter is checked once more with the gate on (its per-coin
regime model fitted on the train window, then generate), on the default market with fewer cuts.

Markets carry recorded-like snapshots (open interest straddling the $10M gate, book imbalance,
each missing on some bars) so the gates that read them decide something; strategies whose
defaults leave such an input off run once more with it on (VARIANTS).
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
from sweep.causality import SAMPLED_SETS, check, seed_of

N_CUTS_DEFAULT = 20
N_CUTS_REAL = 8

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


@pytest.mark.parametrize("name,strategy", STRATEGIES, ids=[n for n, _ in STRATEGIES])
def test_causal_on_embedded_default(name, strategy):
    out = check(strategy, market_for(strategy, "default"), cuts=N_CUTS_DEFAULT)
    assert out.failure is None, out.failure
    assert out.signals > 0, (f"{name} produced no signal on the default market in either mode: "
                             "the causality gate would check only tags; make it trade there")
    assert out.param_sets == 1 + SAMPLED_SETS and out.cuts >= N_CUTS_DEFAULT


@pytest.mark.parametrize("name,strategy", STRATEGIES, ids=[n for n, _ in STRATEGIES])
def test_causal_on_real_data(name, strategy):
    market = market_for(strategy, "real")
    if market is None:
        pytest.skip("../shared/data not found (set HLQ_SHARED_DATA): real-data causality skipped")
    out = check(strategy, market, cuts=N_CUTS_REAL, seed=1 + seed_of(name))
    assert out.failure is None, out.failure


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_causal_with_inputs_switched_on(name):
    strategy = registry()[name]
    params = dataclasses.replace(strategy.default_params(), **VARIANTS[name])
    out = check(strategy, market_for(strategy, "default"), cuts=N_CUTS_DEFAULT, sampled=0,
                seed=2 + seed_of(name), base=params)
    assert out.failure is None, out.failure
    assert out.signals > 0
    real = market_for(strategy, "real")
    if real is not None:
        out = check(strategy, real, cuts=N_CUTS_REAL, sampled=0, seed=3 + seed_of(name), base=params)
        assert out.failure is None, out.failure


N_CUTS_REGIME = 8
REGIME_GATED = [(n, s) for n, s in STRATEGIES
                if "regime_gate" in {f.name for f in dataclasses.fields(s.params_cls)}]


@pytest.mark.parametrize("name,strategy", REGIME_GATED, ids=[n for n, _ in REGIME_GATED])
def test_causal_with_the_regime_gate_on(name, strategy):
    from strategies.regime.gate import GATES

    choices = [c for c in strategy.params_cls.__dataclass_fields__["regime_gate"].metadata["choices"]
               if GATES[c] is not None]
    params = dataclasses.replace(strategy.default_params(), regime_gate=max(choices, key=lambda c: len(GATES[c])))
    out = check(strategy, market_for(strategy, "default"), cuts=N_CUTS_REGIME, sampled=0,
                seed=2 + seed_of(name), base=params)
    assert out.failure is None, out.failure
    assert out.signals > 0, f"{name} with the regime gate on produced no signal on the default market"


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
    out = check(cheat, market_for(registry()["momentum"], "default"), cuts=4, sampled=0)
    assert out.failure is not None and out.failure.startswith("peeking looks ahead: Signals.")
    assert "cut bar" in out.failure and "\n" not in out.failure


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
    out = check(cheat, market_for(registry()["momentum"], "default"), cuts=4, sampled=0)
    assert out.failure is not None and out.failure.startswith("peeking_book looks ahead: Signals.")


class _PeekingRegime:
    """A broken regime input: calls bar t a trend when the NEXT close is higher."""

    def codes(self, market: Market) -> np.ndarray:
        nxt = np.vstack([market.close[1:], np.full((1, market.n_coins), np.nan)])
        with np.errstate(invalid="ignore"):
            return np.where(nxt > market.close, 1, 0).astype(np.int8)


def test_gate_catches_a_peeking_regime_input():
    import strategies.momentum as mom

    cheat = RegisteredStrategy("momentum_peeking_regime", mom.Params, mom.generate,
                               lambda train, params: _PeekingRegime())
    params = dataclasses.replace(mom.Params(), regime_gate="trend")
    out = check(cheat, market_for(registry()["momentum"], "default"), cuts=4, sampled=0, seed=5,
                base=params)
    assert out.failure is not None and out.failure.startswith("momentum_peeking_regime looks ahead")
