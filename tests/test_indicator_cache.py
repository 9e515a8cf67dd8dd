"""The shared indicator cache (strategies/indicator_cache.py) changes no result: a cached
indicator equals the uncached one bit for bit, it never serves one market's values to another,
and a batch of trials in one kernel call gives the same rows as one trial per call."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from _strategy_markets import default_market

from harness.evaluate import evaluate_batch
from harness.folds import Folds
from strategies import indicators as ind
from strategies.base import get_strategy
from strategies.common import columnar
from strategies.indicator_cache import CACHE
from sweep.trial_rows import Provenance, TrialResult, returns_table, trades_table, trial_row


@pytest.fixture(scope="module")
def market():
    return default_market().slice(0, 3000)


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


def _uncached(monkeypatch, fn):
    monkeypatch.setattr(CACHE, "max_bytes", 0)
    try:
        return fn()
    finally:
        monkeypatch.undo()


def _indicators(m):
    c, h, lo = m.close, m.high, m.low
    fast, slow = ind.ema(c, 8), ind.ema(c, 21)
    return [fast, slow, ind.crossed(fast, slow), ind.rsi(c, 14), ind.atr((h, lo, c), 14),
            ind.adx(h, lo, c, 14), ind.lag(ind.rolling_max(h, 20), 1), *ind.bollinger(c, 20, 2.0),
            ind.rolling_z(c, 30), ind.trend_efficiency(c, 20)]


def test_cached_indicators_equal_uncached_bit_for_bit(market, monkeypatch):
    m = columnar(market)
    CACHE.clear()
    first = _indicators(m)
    hits = CACHE.hits
    again = _indicators(m)
    assert CACHE.hits > hits, "the second pass must be served from the cache"
    plain = _uncached(monkeypatch, lambda: _indicators(m))
    for a, b, c in zip(first, again, plain, strict=True):
        assert a is b  # the same shared, read-only array
        assert not a.flags.writeable and c.flags.writeable
        assert _bits(a) == _bits(c)


def test_cached_signals_equal_uncached(market, monkeypatch):
    mom = get_strategy("momentum")
    p = mom.params_cls()
    CACHE.clear()
    cached = [mom.generate(market, p) for _ in range(2)]
    plain = _uncached(monkeypatch, lambda: mom.generate(market, p))
    for name in plain.array_names():
        for s in cached:
            assert _bits(getattr(s, name)) == _bits(getattr(plain, name)), name


def test_cache_never_crosses_markets(market):
    other = dataclasses.replace(market, close=market.close * 1.01, _fingerprint=[])
    assert other.fingerprint != market.fingerprint
    a, b = columnar(market), columnar(other)
    CACHE.clear()
    ema_a, ema_b = ind.ema(a.close, 21), ind.ema(b.close, 21)
    assert ema_a is not ema_b and _bits(ema_b) != _bits(ema_a)
    assert _bits(ema_b) == _bits(ind.ema(np.array(b.close), 21))  # b's own values
    n = CACHE.stats()["entries"]
    del b, other, ema_b
    import gc

    gc.collect()
    assert CACHE.stats()["entries"] < n, "entries die with their market's arrays"
    assert ind.ema(a.close, 21) is ema_a


def test_writeable_inputs_are_not_cached(market):
    x = np.array(market.close)  # writeable: it could change under the key
    CACHE.clear()
    first = ind.ema(x, 10)
    x[:] = 1.0
    assert _bits(ind.ema(x, 10)) != _bits(first)
    assert CACHE.stats()["entries"] == 0


def _rows(batch: list[TrialResult]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    prov = Provenance("r", "h", "f", "v", "c", 0)
    trials = pd.DataFrame([trial_row(r, prov, "run", "momentum") for r in batch])
    return (trials.drop(columns=["finished_at", "duration_s"]), trades_table(batch, prov),
            returns_table(batch, prov))


def test_a_batch_in_one_kernel_call_gives_the_rows_of_one_trial_per_call(market):
    mom = get_strategy("momentum")
    params = [mom.params_cls(ema_fast=f, breakout=b, use_ma_gate=False)
              for f, b in ((5, 10), (8, 20), (12, 15))]
    folds = Folds(k=2)
    together = evaluate_batch(mom, params, market, folds=folds, mode="shadow")
    alone = [evaluate_batch(mom, [p], market, folds=folds, mode="shadow")[0] for p in params]

    def results(evs):
        return [TrialResult("s", i, dataclasses.asdict(p), ev) for i, (p, ev) in
                enumerate(zip(params, evs, strict=True))]

    a, b = _rows(results(together)), _rows(results(alone))
    assert len(a[1]) > 0, "the case must trade"
    for x, y in zip(a, b, strict=True):
        pd.testing.assert_frame_equal(x, y)
